"""Sweep benchmark: one reused vLLM engine vs a fresh process + engine per checkpoint.

What it times, in one run (see bench/README.md):

full checkpoints (K tiny Llama checkpoints in HF-Trainer layout, one run folder)
  (a) ``harness.sweep.evaluate.evaluate`` over the run folder with ``backend="vllm"``: one engine,
      weights reloaded in place (each reload verified by the canary check), engine closed;
  (b) the same evaluation as K fresh processes, ``python -m harness.cli evaluate
      --checkpoints <checkpoint-N>``: each pays process start, imports, engine start and
      engine shutdown — what a one-model-per-run harness costs when run K times;
  ratio (b)/(a).
LoRA (K adapters over one base model)
  (c) ``evaluate`` over the adapter run folder: one engine with ``enable_lora``;
  (d) a fresh process + engine per adapter.

Also measured:
  * harness overhead over raw vLLM: on the last checkpoint, still loaded in the engine of
    (a)/(c), the generation requests the harness sent for that checkpoint are timed through
    ``VLLMBackend.generate`` and through raw ``LLM.generate`` (same text prompts, greedy,
    same max tokens and stop strings), interleaved, prefix cache reset before every call;
    engine start is excluded from both. overhead = harness/raw - 1.
  * memory: RSS of the engine processes (the EngineCore children of the process that owns
    the engine; ``/proc/<pid>/status`` VmRSS and VmHWM) at the end of every checkpoint in
    (a)/(c), plus a 0.5 s sampler for peaks; in (b)/(d) the sampled peak of each process tree.
  * agreement: generated texts and log-likelihoods of (a) vs (b) and (c) vs (d).

Run:  python bench/sweep.py --quick         (K=3, limit 2: a smoke test, ~8 min)
      python bench/sweep.py                 (K=8, limit 5: ~20-25 min on a 2-core CPU)
      python bench/sweep.py --json out.json --phases full   (only the full-checkpoint part)

vLLM spawns its engine processes: everything runs under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from proc_memory import Sampler, memory_snapshot

REPO = Path(__file__).resolve().parents[1]

# Read when vLLM is imported (here and in every subprocess, which inherit them); the harness
# sets its own defaults (KV cache size, cache folders) in set_environment_defaults.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TASKS = ["capitals", "proverbs"]
CONJUGATES = ["en"]
MODES = ["generate", "loglikelihood"]
ENGINE_OPTIONS = {"dtype": "float32", "max_model_len": 256}

log = logging.getLogger("bench.sweep")


# --------------------------------------------------------------------------- fixtures


def build_fixtures(workdir: Path, k: int) -> dict[str, Path]:
    """K full checkpoints (``full-run/checkpoint-10..``) and K LoRA adapters over one base
    (``lora-run/checkpoint-10..``), with the test suite's builders; reused when present."""
    import harness.testing as c

    steps = [10 * (i + 1) for i in range(k)]
    tok = workdir / "tokenizer"
    if not (tok / "tokenizer.json").exists():
        c.build_tiny_tokenizer(tok)
    full, lora, base = workdir / "full-run", workdir / "lora-run", workdir / "lora-base"
    for i, step in enumerate(steps):
        folder = full / f"checkpoint-{step}"
        if not (folder / "trainer_state.json").exists():
            c.build_tiny_model(folder, tok, seed=i)
            c.write_trainer_state(folder, step, max(steps))
    if not (base / "config.json").exists():
        c.build_tiny_model(base, tok, seed=1000)
    for i, step in enumerate(steps):
        folder = lora / f"checkpoint-{step}"
        if not (folder / "trainer_state.json").exists():
            c.build_lora_adapter(folder, base, r=8, alpha=16, seed=100 + i)
            c.write_trainer_state(folder, step, max(steps))
    return {"full": full, "lora": lora, "base": base}


# --------------------------------------------------------------------------- instrumented backend


class Instrumented:
    """Wraps the sweep's backend: per checkpoint, the time in ``load`` (reload + canary, or
    engine start), ``generate`` and ``loglikelihood``, the whole checkpoint's wall time (load
    to the next load: includes scoring, sample writing and the summary), the generation
    requests sent, and a memory snapshot when the checkpoint is done."""

    def __init__(self, inner: Any, owner: int):
        self.inner, self.owner = inner, owner
        self.checkpoints: list[dict[str, Any]] = []
        self.requests: dict[str, list] = {}
        self._current: dict[str, Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def load(self, checkpoint: Any) -> None:
        self.end_checkpoint()
        start = time.perf_counter()
        self.inner.load(checkpoint)
        self._current = {"label": checkpoint.label, "t_start": start,
                         "load_s": time.perf_counter() - start, "generate_s": 0.0, "loglikelihood_s": 0.0,
                         "generate_requests": 0, "loglikelihood_requests": 0}
        self.requests[checkpoint.label] = []

    def generate(self, requests: Sequence[Any]) -> list:
        start = time.perf_counter()
        out = self.inner.generate(requests)
        self._current["generate_s"] += time.perf_counter() - start
        self._current["generate_requests"] += len(requests)
        self.requests[self._current["label"]].extend(requests)
        return out

    def loglikelihood(self, requests: Sequence[Any]) -> list:
        start = time.perf_counter()
        out = self.inner.loglikelihood(requests)
        self._current["loglikelihood_s"] += time.perf_counter() - start
        self._current["loglikelihood_requests"] += len(requests)
        return out

    def end_checkpoint(self) -> None:
        if self._current is None:
            return
        current, self._current = self._current, None
        current["t_end"] = time.perf_counter()
        current["wall_s"] = current["t_end"] - current["t_start"]
        current["other_s"] = current["wall_s"] - current["load_s"] - current["generate_s"] - current["loglikelihood_s"]
        current["memory"] = memory_snapshot(self.owner)
        for key in ("load_s", "generate_s", "loglikelihood_s", "wall_s", "other_s"):
            current[key] = round(current[key], 3)
        self.checkpoints.append(current)


# --------------------------------------------------------------------------- phases


def run_config(checkpoints: Path, output: Path, limit: int, base_model: Path | None = None):
    from harness.sweep.config import RunConfig

    return RunConfig(output=str(output), checkpoints=str(checkpoints), base_model=str(base_model) if base_model else None,
                     backend="vllm", tasks=list(TASKS), conjugates=list(CONJUGATES), modes=list(MODES),
                     limit=limit, backend_options=dict(ENGINE_OPTIONS))


def generation_overhead(backend: Any, requests: Sequence[Any], repeats: int) -> dict[str, Any]:
    """The same generation requests through ``backend.generate`` (the harness: its own
    tokenisation, TokensPrompt, per-request SamplingParams, stop-string cutting) and through
    raw ``LLM.generate`` on text prompts, on the same warm engine and checkpoint. Calls are
    interleaved (order alternating) and the prefix cache is reset before each one."""
    from vllm import SamplingParams

    from harness.backends.tokens import cut_at_stop

    llm = backend.llm
    lora = backend._lora_request  # the adapter being served (None for full checkpoints)
    prompts = [r.prompt for r in requests]
    params = [SamplingParams(max_tokens=r.max_new_tokens, temperature=0.0, stop=[s for s in r.stop if s] or None,
                             skip_special_tokens=True) for r in requests]

    def harness_call() -> tuple[float, list[str]]:
        llm.reset_prefix_cache()
        start = time.perf_counter()
        texts = [g.text for g in backend.generate(requests)]
        return time.perf_counter() - start, texts

    def raw_call() -> tuple[float, list[str]]:
        llm.reset_prefix_cache()
        start = time.perf_counter()
        outputs = llm.generate(prompts, params, use_tqdm=False, lora_request=lora)
        seconds = time.perf_counter() - start
        return seconds, [cut_at_stop(o.outputs[0].text, r.stop) for o, r in zip(outputs, requests)]

    harness_s, raw_s = [], []
    harness_texts = raw_texts = None
    for i in range(repeats):
        order = (harness_call, raw_call) if i % 2 == 0 else (raw_call, harness_call)
        for call in order:
            seconds, texts = call()
            if call is harness_call:
                harness_s.append(seconds)
                harness_texts = texts
            else:
                raw_s.append(seconds)
                raw_texts = texts
    h, r = statistics.median(harness_s), statistics.median(raw_s)
    paired = statistics.median(a / b for a, b in zip(harness_s, raw_s))
    return {
        "requests": len(requests),
        "max_new_tokens": sorted({q.max_new_tokens for q in requests}),
        "repeats": repeats,
        "harness_s": [round(x, 4) for x in harness_s],
        "raw_s": [round(x, 4) for x in raw_s],
        "harness_median_s": round(h, 4),
        "raw_median_s": round(r, 4),
        "overhead": round(h / r - 1, 4),
        "overhead_min": round(min(harness_s) / min(raw_s) - 1, 4),
        "overhead_paired_median": round(paired - 1, 4),
        "outputs_equal": sum(a == b for a, b in zip(harness_texts, raw_texts)),
    }


def phase_one_engine(name: str, checkpoints: Path, output: Path, limit: int, repeats: int,
                     base_model: Path | None = None) -> dict[str, Any]:
    """(a)/(c): the harness's sweep on one engine; then the overhead measurement on the last
    checkpoint (not timed as part of the sweep); then the engine is closed (timed)."""
    from harness.backends import make_backend
    from harness.sweep.evaluate import evaluate

    owner = os.getpid()
    config = run_config(checkpoints, output, limit, base_model)
    sampler = Sampler(owner)
    sampler.start()
    start = time.perf_counter()
    backend = Instrumented(make_backend(config.backend, **config.backend_options), owner)
    try:
        evaluate(config, backend=backend, progress=False, command_line=["bench/sweep.py", name])
        backend.end_checkpoint()
        sweep_s = time.perf_counter() - start
        last = backend.checkpoints[-1]["label"]
        print(f"[{name}] sweep done in {sweep_s:.1f} s; measuring generation overhead on {last}", flush=True)
        overhead = generation_overhead(backend.inner, backend.requests[last], repeats)
        overhead["checkpoint"] = last
        overhead["in_sweep_harness_generate_s"] = next(c["generate_s"] for c in backend.checkpoints if c["label"] == last)
    finally:
        close_start = time.perf_counter()
        backend.inner.close()
        close_s = time.perf_counter() - close_start
        sampler.stop()
    after_close = memory_snapshot(owner)
    for ckpt in backend.checkpoints:
        ckpt["memory"].update(sampler.peak(ckpt.pop("t_start"), ckpt.pop("t_end")))
    stats = backend.inner.stats
    canary_s = [c["seconds"] for c in stats["canary"]]
    total = sweep_s + close_s
    print(f"[{name}] total {total:.1f} s (sweep {sweep_s:.1f} s + close {close_s:.1f} s)", flush=True)
    return {
        "total_s": round(total, 2), "sweep_s": round(sweep_s, 2), "close_s": round(close_s, 2),
        "engine_starts": stats["engine_starts"], "engine_start_s": stats["engine_start_s"],
        "reloads": stats["reloads"], "reload_s": stats["reload_s"], "fallbacks": stats["fallbacks"],
        "canary_checks": len(canary_s), "canary_s": canary_s,
        "canary_all_ok": all(c["ok"] for c in stats["canary"]),
        "canary_max_abs_diff": max((c["max_abs_diff"] for c in stats["canary"]), default=None),
        "checkpoints": backend.checkpoints,
        "overhead": overhead,
        "memory_after_close": {k: after_close[k] for k in ("engine_processes", "engine_rss_mib", "driver_rss_mib")},
        "output": str(output),
    }


def phase_fresh_engines(name: str, checkpoints: Path, output: Path, limit: int,
                        base_model: Path | None = None) -> dict[str, Any]:
    """(b)/(d): one ``python -m harness.cli evaluate`` process per checkpoint (engine start,
    evaluation, engine shutdown, exit), one after the other; wall time of the whole loop."""
    folders = sorted((p for p in checkpoints.iterdir() if p.name.startswith("checkpoint-")),
                     key=lambda p: int(p.name.split("-")[1]))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    runs = []
    start = time.perf_counter()
    for index, folder in enumerate(folders, 1):
        cmd = [sys.executable, "-m", "harness.cli", "evaluate", "--checkpoints", str(folder), "--backend", "vllm",
               "--tasks", ",".join(TASKS), "--conjugates", ",".join(CONJUGATES), "--modes", ",".join(MODES),
               "--limit", str(limit), "--dtype", ENGINE_OPTIONS["dtype"],
               "--max-model-len", str(ENGINE_OPTIONS["max_model_len"]),
               "--output", str(output / folder.name), "--no-report"]
        if base_model is not None:
            cmd += ["--base-model", str(base_model)]
        log_path = output / f"{folder.name}.log"
        output.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(log_path, "w") as log_file:
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT)
            sampler = Sampler(proc.pid)
            sampler.start()
            rc = proc.wait()
            sampler.stop()
        seconds = time.perf_counter() - t0
        text = log_path.read_text(errors="replace")
        if rc != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited with {rc}; see {log_path}:\n{text[-3000:]}")
        engine = [float(x) for x in re.findall(r"engine started in ([\d.]+) s", text)]
        peak = sampler.peak()
        run = {"label": folder.name, "wall_s": round(seconds, 2), "engine_start_s": engine,
               "engine_peak_rss_mib": peak["engine_peak_rss_mib"],
               "processes_seen": len(sampler.hwm),
               "engine_peak_hwm_sum_mib": round(sum(sampler.hwm.values()), 1),
               "driver_peak_rss_mib": peak["driver_peak_rss_mib"], "log": str(log_path)}
        runs.append(run)
        print(f"[{name}] {index}/{len(folders)} {folder.name}: {seconds:.1f} s"
              f" (engine start {', '.join(f'{e:.1f}' for e in engine) or '?'} s)", flush=True)
    total = time.perf_counter() - start
    print(f"[{name}] total {total:.1f} s", flush=True)
    return {"total_s": round(total, 2), "runs": runs, "output": str(output)}


def compare_results(one: Path, fresh: Path) -> dict[str, Any]:
    """Generated texts and log-likelihoods of the one-engine run vs the fresh-engine runs."""
    from harness.results import RunDirectory

    one_run = RunDirectory(one)
    texts_equal = texts = 0
    ll_diff = 0.0
    for folder in sorted(p for p in fresh.iterdir() if p.is_dir()):
        fresh_run = RunDirectory(folder)
        for task in TASKS:
            a = {s.key: s for s in one_run.read_samples(folder.name, task)}
            b = {s.key: s for s in fresh_run.read_samples(folder.name, task)}
            for key in set(a) | set(b):
                sa, sb = a.get(key), b.get(key)
                texts += 1
                if sa is None or sb is None:
                    continue
                texts_equal += sa.output == sb.output
                for role, score in (sa.loglikelihoods or {}).items():
                    other = (sb.loglikelihoods or {}).get(role)
                    if other is not None:
                        ll_diff = max(ll_diff, abs(score["logprob"] - other["logprob"]))
    return {"samples": texts, "outputs_equal": texts_equal, "loglikelihood_max_abs_diff": ll_diff}


# --------------------------------------------------------------------------- report


def _fmt(x: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "-" if x is None else f"{x:{spec}}{suffix}"


def summarize_kind(one: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    ckpts = one["checkpoints"]
    first, last = ckpts[0], ckpts[-1]
    later = [c["wall_s"] for c in ckpts[1:]]
    fresh_starts = [s for r in fresh["runs"] for s in r["engine_start_s"]]
    mem_first, mem_last = first["memory"], last["memory"]
    growth = (mem_last["engine_rss_mib"] - mem_first["engine_rss_mib"])
    return {
        "ratio": round(fresh["total_s"] / one["total_s"], 2),
        "one_engine_total_s": one["total_s"],
        "fresh_total_s": fresh["total_s"],
        "one_engine_start_s": one["engine_start_s"],
        "one_engine_first_checkpoint_s": first["wall_s"],
        "one_engine_later_checkpoint_mean_s": round(statistics.mean(later), 2) if later else None,
        "fresh_per_checkpoint_mean_s": round(statistics.mean(r["wall_s"] for r in fresh["runs"]), 2),
        "fresh_engine_start_mean_s": round(statistics.mean(fresh_starts), 2) if fresh_starts else None,
        "overhead": one["overhead"]["overhead"],
        "engine_rss_first_mib": mem_first["engine_rss_mib"],
        "engine_rss_last_mib": mem_last["engine_rss_mib"],
        "engine_rss_growth_mib": round(growth, 1),
        "engine_rss_growth_frac": round(growth / mem_first["engine_rss_mib"], 4) if mem_first["engine_rss_mib"] else None,
        "engine_hwm_first_mib": mem_first["engine_hwm_mib"],
        "engine_hwm_last_mib": mem_last["engine_hwm_mib"],
        "engine_peak_first_mib": mem_first["engine_peak_rss_mib"],
        "engine_peak_last_mib": mem_last["engine_peak_rss_mib"],
        "driver_rss_first_mib": mem_first["driver_rss_mib"],
        "driver_rss_last_mib": mem_last["driver_rss_mib"],
        "fresh_engine_peak_first_mib": fresh["runs"][0]["engine_peak_rss_mib"],
        "fresh_engine_peak_last_mib": fresh["runs"][-1]["engine_peak_rss_mib"],
    }


def table(result: dict[str, Any]) -> str:
    kinds = [k for k in ("full", "lora") if k in result["summary"]]
    heads = {"full": "full ckpts", "lora": "LoRA adapters"}
    s = result["summary"]
    ph = result["phases"]
    k = result["settings"]["k"]
    rows: list[tuple[str, ...]] = []

    def row(label: str, fn) -> None:
        rows.append((label, *[fn(kind) for kind in kinds]))

    row("(a) one engine: sweep + close [s]", lambda t: _fmt(s[t]["one_engine_total_s"]))
    row("    engine starts / in-place reloads", lambda t: f"{ph[t]['one']['engine_starts']} / {ph[t]['one']['reloads']}")
    row("    engine start [s]", lambda t: ", ".join(_fmt(x) for x in s[t]["one_engine_start_s"]))
    row("    first checkpoint (incl. start) [s]", lambda t: _fmt(s[t]["one_engine_first_checkpoint_s"]))
    row("    each later checkpoint, mean [s]", lambda t: _fmt(s[t]["one_engine_later_checkpoint_mean_s"], ".2f"))
    row("    load of later ckpts, mean [s]", lambda t: _fmt(
        statistics.mean(c["load_s"] for c in ph[t]["one"]["checkpoints"][1:]) if k > 1 else None, ".2f"))
    row("    engine close [s]", lambda t: _fmt(ph[t]["one"]["close_s"]))
    row(f"(b) {k} fresh processes + engines [s]", lambda t: _fmt(s[t]["fresh_total_s"]))
    row("    per checkpoint, mean [s]", lambda t: _fmt(s[t]["fresh_per_checkpoint_mean_s"]))
    row("    engine start, mean [s]", lambda t: _fmt(s[t]["fresh_engine_start_mean_s"]))
    row("RATIO (b)/(a)  (target >= 5x full)", lambda t: f"{s[t]['ratio']:.2f}x")
    row("generate: harness median [s]", lambda t: _fmt(ph[t]["one"]["overhead"]["harness_median_s"], ".3f"))
    row("generate: raw LLM.generate median [s]", lambda t: _fmt(ph[t]["one"]["overhead"]["raw_median_s"], ".3f"))
    row("OVERHEAD harness/raw - 1 (<= 10%)", lambda t: f"{100 * s[t]['overhead']:+.1f}%")
    row("    paired median / min over min", lambda t: f"{100 * ph[t]['one']['overhead']['overhead_paired_median']:+.1f}%"
        f" / {100 * ph[t]['one']['overhead']['overhead_min']:+.1f}%")
    row("    outputs equal harness vs raw", lambda t: f"{ph[t]['one']['overhead']['outputs_equal']}/{ph[t]['one']['overhead']['requests']}")
    row("engine RSS end of ckpt 1 -> K [MiB]", lambda t: f"{s[t]['engine_rss_first_mib']:.0f} -> {s[t]['engine_rss_last_mib']:.0f}")
    row("engine RSS growth", lambda t: f"{s[t]['engine_rss_growth_mib']:+.0f} MiB ({100 * (s[t]['engine_rss_growth_frac'] or 0):+.1f}%)")
    row("engine VmHWM end of ckpt 1 -> K [MiB]", lambda t: f"{s[t]['engine_hwm_first_mib']:.0f} -> {s[t]['engine_hwm_last_mib']:.0f}")
    row("engine sampled peak ckpt 1 / K [MiB]", lambda t: f"{s[t]['engine_peak_first_mib']:.0f} / {s[t]['engine_peak_last_mib']:.0f}")
    row("driver RSS end of ckpt 1 -> K [MiB]", lambda t: f"{s[t]['driver_rss_first_mib']:.0f} -> {s[t]['driver_rss_last_mib']:.0f}")
    row("(b) engine sampled peak run 1 / K [MiB]", lambda t: f"{s[t]['fresh_engine_peak_first_mib']:.0f} / {s[t]['fresh_engine_peak_last_mib']:.0f}")
    row("(a) vs (b) outputs equal", lambda t: f"{ph[t]['agreement']['outputs_equal']}/{ph[t]['agreement']['samples']}")
    row("(a) vs (b) max |d loglik|", lambda t: f"{ph[t]['agreement']['loglikelihood_max_abs_diff']:.1e}")
    row("canary checks ok (max |d logprob|)", lambda t: (
        f"{ph[t]['one']['canary_checks']} {'ok' if ph[t]['one']['canary_all_ok'] else 'FAILED'}"
        + (f" ({ph[t]['one']['canary_max_abs_diff']:.1e})" if ph[t]['one']['canary_max_abs_diff'] is not None else "")))

    widths = [max(len(r[i]) for r in rows + [("", *[heads[t] for t in kinds])]) for i in range(len(kinds) + 1)]
    lines = ["  ".join([" " * widths[0], *[heads[t].rjust(w) for t, w in zip(kinds, widths[1:])]])]
    lines.append("-" * len(lines[0]))
    for r in rows:
        lines.append("  ".join([r[0].ljust(widths[0]), *[c.rjust(w) for c, w in zip(r[1:], widths[1:])]]))
    st = result["settings"]
    head = (f"ift-harness sweep benchmark: K={st['k']}, tasks {','.join(TASKS)}, conjugate {','.join(CONJUGATES)},"
            f" modes {','.join(MODES)}, limit {st['limit']} ({st['examples_per_checkpoint']} examples/checkpoint),"
            f" engine {json.dumps(ENGINE_OPTIONS)}\n"
            f"machine: {result['machine']['cpus']} CPUs, load average {result['machine']['loadavg_start']} at start,"
            f" {result['machine']['loadavg_end']} at end; vllm {result['machine'].get('vllm')}")
    return head + "\n" + "\n".join(lines)


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=None, help="checkpoints / adapters (default 8; --quick: 3)")
    parser.add_argument("--limit", type=int, default=None, help="examples per task condition (default 5; --quick: 2)")
    parser.add_argument("--quick", action="store_true", help="K=3, limit 2, 9 overhead repeats: a smoke test")
    parser.add_argument("--repeats", type=int, default=None, help="overhead measurement repeats (default 21; --quick: 9)")
    parser.add_argument("--phases", default="full,lora", help="which parts: full, lora (comma-separated)")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="where the numbers go (default results/bench-sweep[-quick].json)")
    parser.add_argument("--workdir", default=None, help="models and results go here (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    k = args.k or (3 if args.quick else 8)
    limit = args.limit or (2 if args.quick else 5)
    repeats = args.repeats or (9 if args.quick else 21)
    phases = [p for p in args.phases.split(",") if p]
    if unknown := set(phases) - {"full", "lora"}:
        parser.error(f"--phases: unknown {', '.join(sorted(unknown))}")
    json_path = Path(args.json or REPO / "results" / f"bench-sweep{'-quick' if args.quick else ''}.json")

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("harness").setLevel(logging.INFO)
    sys.path.insert(0, str(REPO))
    from harness.backends.vllm_setup import set_environment_defaults
    from harness.sweep.plan import plan
    from harness.tasks import TaskRegistry

    set_environment_defaults()  # same vLLM / inductor caches for this process and the subprocesses

    temporary = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ift-sweep-bench-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    runs_dir = workdir / "runs"
    if runs_dir.exists():
        shutil.rmtree(runs_dir)  # results of an earlier benchmark run would be resumed, not timed
    print(f"workdir {workdir}", flush=True)

    import vllm

    n_examples = len(plan(TaskRegistry([]).select(TASKS), run_config(workdir, workdir, limit)))
    result: dict[str, Any] = {
        "settings": {"k": k, "limit": limit, "repeats": repeats, "tasks": TASKS, "conjugates": CONJUGATES,
                     "modes": MODES, "engine_options": ENGINE_OPTIONS, "examples_per_checkpoint": n_examples,
                     "phases": phases, "quick": args.quick},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "vllm": vllm.__version__, "loadavg_start": [round(x, 2) for x in os.getloadavg()],
                    "started": datetime.datetime.now().isoformat(timespec="seconds"),
                    "env": {k_: os.environ.get(k_) for k_ in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CACHE_ROOT")}},
        "phases": {}, "summary": {},
    }
    t_build = time.perf_counter()
    paths = build_fixtures(workdir, k)
    result["machine"]["fixtures_s"] = round(time.perf_counter() - t_build, 1)
    print(f"built {k} checkpoints and {k} adapters in {result['machine']['fixtures_s']} s", flush=True)

    try:
        for kind in phases:
            base = paths["base"] if kind == "lora" else None
            letters = ("a", "b") if kind == "full" else ("c", "d")
            one = phase_one_engine(f"{letters[0]}:{kind} one engine", paths[kind],
                                   runs_dir / f"{kind}-one-engine", limit, repeats, base)
            fresh = phase_fresh_engines(f"{letters[1]}:{kind} fresh engines", paths[kind],
                                        runs_dir / f"{kind}-fresh", limit, base)
            result["phases"][kind] = {"one": one, "fresh": fresh,
                                      "agreement": compare_results(Path(one["output"]), Path(fresh["output"]))}
            result["summary"][kind] = summarize_kind(one, fresh)
        result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        result["machine"]["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
        result["table"] = table(result)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        print("\n" + result["table"])
        print(f"\nnumbers: {json_path}")
    finally:
        if temporary and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"models and results kept in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
