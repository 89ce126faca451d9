"""Built-in task definitions (YAML) and their data files; installed as ``harness.builtin_tasks``."""
