"""Tasks: YAML definitions validated into dataclasses, their data sources, and the registry.

- :mod:`harness.tasks.config`: the schema of a task file and its validation;
- :mod:`harness.tasks.templates`: plain ``{field}`` prompt templates;
- :mod:`harness.tasks.records`: users' data files and their record layouts;
- :mod:`harness.tasks.registry`: :class:`Task` and :class:`TaskRegistry`.

Files are read with ``yaml.safe_load``; nothing in a task file is ever evaluated.
"""

from harness.errors import TaskError
from harness.tasks.config import FAMILIES, HFSource, Prompt, Scoring, Source, TaskConfig, Templates, parse_task
from harness.tasks.records import DATA_SUFFIXES, RECORD_FORMATS, detect_format, examples_from_records, read_records
from harness.tasks.registry import (
    Task,
    TaskRegistry,
    builtin_task_dir,
    check_examples,
    load_examples,
    load_task_file,
    task_from_data_file,
)
from harness.tasks.templates import placeholders, render_template

__all__ = [
    "DATA_SUFFIXES", "FAMILIES", "HFSource", "Prompt", "RECORD_FORMATS", "Scoring", "Source", "Task", "TaskConfig",
    "TaskError", "TaskRegistry", "Templates", "builtin_task_dir", "check_examples", "detect_format",
    "examples_from_records", "load_examples", "load_task_file", "parse_task", "placeholders", "read_records",
    "render_template", "task_from_data_file",
]
