"""lm-evaluation-harness interop: a harness task as an lm-eval task, and lm-eval's samples back
as the harness's sample records.

:func:`export_task` writes, for one task, conjugate and scoring mode, an lm-eval task YAML and
its data (JSON Lines of the rendered prompts) into a folder that ``lm_eval --include_path DIR
--tasks NAME`` runs (lm-eval finds tasks by folder; it has no plugin entry points):

- ``loglikelihood`` becomes ``output_type: multiple_choice`` over the example's two answer
  roles (context vs memorised answer, target vs alternative, ICL vs instruction), the first
  the right one: lm-eval's ``acc`` is then the harness's ``ll_context_win_rate`` /
  ``ll_accuracy`` / ``ll_icl_win_rate``. Each choice is written as the harness scores it, its
  leading space included (:func:`harness.tasks.prompts.continuation_for`), with
  ``target_delimiter: ""``, so both harnesses score the same strings.
- ``generate`` becomes ``output_type: generate_until`` (greedy, the task's stop strings and
  token budget) with lm-eval's ``exact_match`` on the headline answer; the harness's own
  matching is applied when the samples are read back.

:func:`read_samples` reads the file lm-eval writes with ``--log_samples``
(``samples_<task>_<date>.jsonl``: ``doc``, ``arguments``, ``resps``, ``filtered_resps``,
``target``, metrics) for such a task into :class:`SampleRecord` objects scored by the
harness's scoring, so ``harness.load_samples``-style comparisons line up item by item. lm-eval
logs no token counts, so the per-token log-likelihood scores are left out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from harness.backends.api import ContinuationScore
from harness.conjugates import ENGLISH
from harness.errors import TaskError
from harness.examples import CONTEXT, ICL, TARGET
from harness.io import atomic_write_text, check_output_folder
from harness.results.rows import SampleRecord
from harness.scoring import GENERATE, LOGLIKELIHOOD, score_generation, score_loglikelihood
from harness.tasks import Task
from harness.tasks.prompts import apply_format, continuation_for, loglikelihood_roles, render

#: Instruction formats an export can bake into its prompts (``chat`` is lm-eval's own
#: ``--apply_chat_template``).
EXPORT_FORMATS = ("plain", "alpaca", "tulu")
_HEADLINE_ROLES = (CONTEXT, TARGET, ICL)


def lm_eval_name(task: Task, conjugate: str, mode: str) -> str:
    """The lm-eval task name of an export: ``harness_<task>_<conjugate>_<ll|gen>``."""
    return f"harness_{task.name}_{conjugate}_{'ll' if mode == LOGLIKELIHOOD else 'gen'}"


def _doc(task: Task, example: Any, conjugate: str, fmt: str, mode: str) -> dict[str, Any]:
    rendered = render(task, example, conjugate)
    prompt = apply_format(rendered.prompt, fmt)
    answers = {role: list(spellings) for role, spellings in rendered.answers.items()}
    doc: dict[str, Any] = {"id": example.id, "condition": example.condition, "conjugate": conjugate,
                           "prompt": prompt, "answers": answers}
    if mode == LOGLIKELIHOOD:
        roles = loglikelihood_roles(answers)
        if len(roles) != 2:
            raise TaskError(f"{task.path or task.name}: example {example.id!r}: a log-likelihood export compares two "
                            f"answers, and it has {len(roles)} ({', '.join(roles)})")
        doc.update(roles=list(roles), choices=[continuation_for(prompt, answers[r][0]) for r in roles], target=0)
    else:
        role = next(r for r in _HEADLINE_ROLES if r in answers)
        doc.update(target=answers[role][0])
    return doc


def export_task(task: Task, folder: str | Path, *, conjugate: str = ENGLISH, mode: str = LOGLIKELIHOOD,
                fmt: str = "plain") -> Path:
    """Write ``<name>.yaml`` and ``<name>.jsonl`` for lm-eval into ``folder`` (module docstring);
    returns the YAML's path. Every example of the task is exported, in the conjugate's
    rendering and the instruction format ``fmt``."""
    if mode not in (GENERATE, LOGLIKELIHOOD):
        raise TaskError(f"lm-eval export: unknown mode {mode!r} (expected {GENERATE} or {LOGLIKELIHOOD})")
    check_output_folder(folder, TaskError, what="the lm-eval task")
    if conjugate not in task.config.conjugates:
        raise TaskError(f"lm-eval export: task {task.name!r} has no conjugate {conjugate!r} "
                        f"(it has: {', '.join(task.config.conjugates)})")
    if fmt not in EXPORT_FORMATS:
        raise TaskError(f"lm-eval export: format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)} "
                        "(for chat, export plain and run lm-eval with --apply_chat_template)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = lm_eval_name(task, conjugate, mode)
    scoring = task.config.scoring
    docs = [_doc(task, example, conjugate, fmt, mode) for example in task.examples
            if example.conjugate in (None, conjugate)]
    for doc in docs:
        doc["scoring"] = {"match": scoring.match, "case_sensitive": scoring.case_sensitive}
    data = folder / f"{name}.jsonl"
    atomic_write_text(data, "".join(json.dumps(doc, ensure_ascii=False) + "\n" for doc in docs))
    config: dict[str, Any] = {
        "task": name,
        # lm-eval resolves data_files from the directory it runs in: the path is absolute.
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
        "test_split": "test",
        "doc_to_text": "prompt",
        "doc_to_target": "target",
    }
    if mode == LOGLIKELIHOOD:
        config.update(output_type="multiple_choice", doc_to_choice="choices", target_delimiter="",
                      metric_list=[{"metric": "acc", "aggregation": "mean", "higher_is_better": True}])
    else:
        config.update(output_type="generate_until",
                      generation_kwargs={"until": list(scoring.stop), "max_gen_toks": scoring.max_new_tokens,
                                         "do_sample": False, "temperature": 0.0},
                      metric_list=[{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                                    "ignore_case": True, "ignore_punctuation": True}])
    config["metadata"] = {"version": task.config.version, "harness_task": task.name,
                          "harness_task_hash": task.content_hash(), "format": fmt}
    path = folder / f"{name}.yaml"
    atomic_write_text(path, f"# Exported by ift-harness from task {task.name!r} ({conjugate}, {mode}).\n"
                            + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value) == "True"


def _sample(line: dict[str, Any], where: str) -> SampleRecord:
    doc = line.get("doc")
    if not isinstance(doc, dict) or not {"id", "answers", "prompt"} <= set(doc):
        raise TaskError(f"{where}: field 'doc': not a document exported by ift-harness (needs id, prompt, answers)")
    answers = {role: list(spellings) for role, spellings in doc["answers"].items()}
    record = SampleRecord(id=str(doc["id"]), condition=str(doc.get("condition", "default")),
                          conjugate=str(doc.get("conjugate", ENGLISH)), prompt=str(doc["prompt"]), answers=answers,
                          meta={"lm_eval_doc_id": line.get("doc_id")})
    responses = line.get("filtered_resps", line.get("resps"))
    if not isinstance(responses, list) or not responses:
        raise TaskError(f"{where}: field 'filtered_resps': missing or empty")
    if "choices" in doc:   # multiple_choice: one [loglikelihood, is_greedy] a choice
        pairs = [r[0] if isinstance(r, list) and r and isinstance(r[0], list) else r for r in responses]
        if len(pairs) != len(doc["roles"]):
            raise TaskError(f"{where}: field 'filtered_resps': {len(pairs)} responses for {len(doc['roles'])} choices")
        scores = {role: ContinuationScore(float(pair[0]), 1, _flag(pair[1])) for role, pair in zip(doc["roles"], pairs)}
        record.loglikelihoods = {role: {"logprob": s.logprob, "is_greedy": s.is_greedy} for role, s in scores.items()}
        record.scores = {key: value for key, value in score_loglikelihood(answers, scores).items()
                         if not key.endswith("_per_token")}
    else:
        output = responses[0][0] if isinstance(responses[0], list) else responses[0]
        record.output = str(output)
        scoring = doc.get("scoring", {})
        record.scores = score_generation(answers, record.output, match=scoring.get("match", "contains"),
                                         case_sensitive=bool(scoring.get("case_sensitive", False)))
    return record


def read_samples(path: str | Path) -> list[SampleRecord]:
    """The samples of one lm-eval ``--log_samples`` file of an exported task, scored by the
    harness (module docstring); errors name the file, the line and the field."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"{path}: no such lm-eval samples file")
    records = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError as error:
            raise TaskError(f"{path}: line {number}: not JSON: {error}") from None
        records.append(_sample(line, f"{path}: line {number}"))
    return records

