"""Results folders written by hand, the way the runner writes them, for report and analysis tests.

Each run holds per-example sample lines whose scores give rates we choose, and summary rows
computed from them with :func:`harness.scoring.aggregate` (grouped as
:func:`harness.sweep.sweep.summary_rows` groups them), so summary and samples agree.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

from harness.results import RUN_JSON, RunDirectory, RunRecord, SampleRecord, SummaryRow
from harness.scoring import GENERATE, LOGLIKELIHOOD, aggregate, metric_names

N = 200
RESAMPLES = 200  # summary CIs only; fewer resamples keep the tests fast


def conflict(n_context: int, n: int = N, *, ll_wins: int | None = None) -> list[dict]:
    """Scores of ``n`` conflicting-context examples, the first ``n_context`` answered from context;
    with ``ll_wins``, log-likelihood scores too, the context answer likelier in the first ``ll_wins``."""
    scores = [{"hit_context": i < n_context, "hit_parametric": i >= n_context,
               "outcome": "context" if i < n_context else "parametric"} for i in range(n)]
    if ll_wins is not None:
        for i, score in enumerate(scores):
            margin = 1.0 if i < ll_wins else -1.0
            score.update(ll_margin=margin, ll_margin_per_token=margin, ll_context_wins=margin > 0,
                         ll_context_wins_per_token=margin > 0)
    return scores


def correct(n_correct: int, n: int = N) -> list[dict]:
    return [{"correct": i < n_correct} for i in range(n)]


def icl(n_icl: int, n: int = N) -> list[dict]:
    return [{"hit_icl": i < n_icl, "hit_instruction": i >= n_icl} for i in range(n)]


ROLES = {"hit_context": ("context", "parametric"), "correct": ("target",), "hit_icl": ("icl", "instruction")}


def _progress_entry(state: dict) -> dict:
    """The training progress the harness records in run.json from a checkpoint's trainer state."""
    return {"epoch": state.get("epoch"), "tokens": state.get("num_input_tokens_seen") or None}


def write_run(path: Path, checkpoints: list[tuple[str, int | None, dict]], *, hashes: dict[str, str] | None = None,
              progress: dict[str, dict] | None = None) -> Path:
    """A results folder: ``checkpoints`` are (label, step, {(task, condition, conjugate): scores}).

    ``progress`` maps a label to the trainer_state.json written into that checkpoint's folder.
    """
    run = RunDirectory(path)
    rows, entries, tasks = [], [], {}
    for label, step, scored in checkpoints:
        folder = path.parent / f"{path.name}-models" / label
        folder.mkdir(parents=True, exist_ok=True)
        if progress and label in progress:
            (folder / "trainer_state.json").write_text(json.dumps(progress[label]))
        entries.append({"label": label, "step": step, "model": str(folder), "revision": None, "adapter": None,
                        **_progress_entry((progress or {}).get(label, {}))})
        by_task = defaultdict(list)
        for (task, condition, conjugate), scores in scored.items():
            tasks[task] = (hashes or {}).get(task, "hash-" + task)
            roles = next(roles for key, roles in ROLES.items() if key in scores[0])
            by_task[task] += [{"id": f"ex{i}", "condition": condition, "conjugate": conjugate, "prompt": "p",
                               "answers": {role: ["a"] for role in roles}, "output": "o", "scores": s}
                              for i, s in enumerate(scores)]
            modes = [GENERATE] + [LOGLIKELIHOOD] * any(key.startswith("ll_") for key in scores[0])
            for mode in modes:
                for metric in metric_names(mode, roles):
                    value = aggregate(metric, scores, n_resamples=RESAMPLES)
                    rows.append({"checkpoint": label, "step": step, "task": task, "task_version": 1,
                                 "task_hash": tasks[task], "condition": condition, "conjugate": conjugate,
                                 "mode": mode, "metric": metric, "value": value.value, "ci_low": value.ci_low,
                                 "ci_high": value.ci_high, "n": value.n})
        for task, samples in by_task.items():
            run.append_samples(label, task, [SampleRecord.from_dict(sample) for sample in samples])
    run.write_summary([SummaryRow.from_dict(row) for row in rows])
    run.write_record(RunRecord.from_dict({"config": {"model": "tiny"}, "task_hashes": tasks, "checkpoints": entries,
                                          "skipped_checkpoints": {}}))
    return path


def run_json(folder: str | Path) -> dict:
    """A results folder's run.json as the JSON object on disk (what a user's own tool reads)."""
    return json.loads((Path(folder) / RUN_JSON).read_text(encoding="utf-8"))


def context_run(path: Path, context_counts: list[int], steps: list[int | None] | None = None, **options) -> Path:
    """One task, ``capitals``, with these numbers of context answers at successive checkpoints."""
    steps = steps or [10 * (i + 1) for i in range(len(context_counts))]
    return write_run(path, [(f"checkpoint-{step}" if step is not None else f"model-{i}", step,
                             {("capitals", "conflicting", "en"): conflict(count)})
                            for i, (step, count) in enumerate(zip(steps, context_counts))], **options)


def assert_self_contained(text: str) -> None:
    """Nothing in the page is fetched: images are data URIs, links go to local files only."""
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", text)
    assert all(ref.startswith(("data:", "#")) or ("://" not in ref and not ref.startswith("//"))
               for ref in references), references
    assert all(ref.startswith("data:") for ref in re.findall(r"""src\s*=\s*["']([^"']*)""", text))
    # Base64 image data may contain any four letters; everything else must not name a web address.
    assert "http" not in re.sub(r"data:[^\"']*", "", text)
    assert "url(" not in text and "@import" not in text


def rich_run(path: Path, steps=(10, 20, 30)) -> Path:
    """Knowledge conflict with controls and a conjugate, an ICL probe, and a fact-recall task."""
    checkpoints = []
    for i, step in enumerate(steps):
        rise_fall = [20, 120, 40][i % 3]
        checkpoints.append((f"checkpoint-{step}" if step is not None else "model", step, {
            ("capitals", "conflicting", "en"): conflict(rise_fall, ll_wins=rise_fall + 20),
            ("capitals", "conflicting", "fr"): conflict(rise_fall // 2),
            ("capitals", "closed_book", "en"): correct(150),
            ("capitals", "agreeing", "en"): correct(180 - 10 * i),
            ("icl_vs_if", "repeat_arithmetic", "en"): icl(100 - 30 * i),
            ("icl_vs_if", "capitalize_fill_blank", "en"): icl(60 - 10 * i),
            ("closed_book", "closed_book", "en"): correct(100 + 10 * i),
        }))
    return write_run(path, checkpoints)
