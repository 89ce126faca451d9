"""The settings of a run: what ``harness evaluate`` flags and ``--config`` YAML keys set.

:class:`RunConfig` is one flat dataclass (a YAML run config is a flat mapping of these keys),
its fields grouped by concern: what to evaluate, results, engine, many engines (Ray),
following a training run. Each field carries its group and help (:func:`setting`), so the
command line's flags and help are derived from the fields (:mod:`harness.cli.evaluate`), and
each group has its own checks (:data:`CHECKS`), run once when a config is made: a
``RunConfig`` that exists is valid. It is frozen; :func:`dataclasses.replace` makes a changed
copy (and checks it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.backends import BACKEND_NAMES
from harness.backends.options import check_engine_options, parse_engine_args, value_problem
from harness.checkpoints.fingerprints import FINGERPRINTS, FULL
from harness.conjugates import CONJUGATES
from harness.errors import RunError, did_you_mean
from harness.io import check_output_folder
from harness.schema import load_config
from harness.scoring import SCORING_MODES
from harness.tasks.prompts import FORMATS

DEFAULT_TASKS = ["capitals", "world_facts", "proverbs", "icl_vs_if"]
#: ``schedule`` values: every checkpoint, or the adaptive rule's choice (:mod:`harness.sweep.schedule`).
ALL, ADAPTIVE = "all", "adaptive"
SCHEDULES = (ALL, ADAPTIVE)
#: ``truncate`` values: cut prompts that do not fit from the left (unset: refuse them).
TRUNCATE = ("left",)

#: The groups of settings, in the order ``harness evaluate --help`` shows them.
WHAT, RESULTS, ENGINE, WORKERS, FOLLOW = ("what to evaluate", "results", "engine", "many engines (Ray)",
                                         "following a training run")
GROUPS = (WHAT, RESULTS, ENGINE, WORKERS, FOLLOW)


def setting(group: str, help: str, *, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING,
            flag: bool = True, metavar: str | None = None, choices: Sequence[Any] | None = None,
            parse: Callable[[str], Any] | None = None, repeat: bool = False, aliases: Sequence[str] = ()) -> Any:
    """A :class:`RunConfig` field with its group and help, and how its command-line flag reads
    (``flag=False``: a config-file key only; ``parse``: the flag's text to a value; ``repeat``:
    the flag may be given several times, each adding an item; ``aliases``: other spellings of
    the flag, e.g. lm-evaluation-harness's)."""
    metadata = {"group": group, "help": help, "flag": flag, "metavar": metavar, "choices": choices,
                "parse": parse, "repeat": repeat, "aliases": tuple(aliases)}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def comma_list(text: str) -> list[str]:
    """A flag's comma-separated list (``capitals,proverbs``)."""
    return [part for part in text.split(",") if part]


def engine_batch(text: str) -> int | None:
    """``--batch-size``: a count, or lm-evaluation-harness's ``auto`` (``auto:N``): the default."""
    if text.startswith("auto"):
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected a count of examples (64) or auto, got {text!r}") from None


def count_or_share(text: str) -> int | float:
    """``--limit``: a count (``10``) or a share (``0.1``)."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a count (10) or a share (0.1), got {text!r}") from None


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a run; ``harness evaluate`` flags and ``--config`` YAML keys alike.

    ``limit``: a seeded sample of each task condition, N examples (an int) or a share of them
    (a float below 1), the same for every checkpoint (:func:`harness.sweep.plan.limited`).

    ``checkpoints`` is what :func:`harness.checkpoints.discover` takes; with neither it nor
    ``model``, the bundled SmolLM2-135M-Instruct is evaluated. ``conjugates``/``modes``
    restrict what each task declares (None: all it declares). ``backend_options`` are passed
    to the engine (``max_model_len``, ``dtype``, vLLM's ``gpu_memory_utilization``...).

    Engine calls: ``batch_size`` examples at a time when set; otherwise sized so that each
    takes a few seconds (:class:`harness.sweep.jobs.Chunking`), up to ``flush_every``.
    Results reach disk after every call, so a kill loses at most one call's work. ``prefetch``:
    on one engine, the next checkpoint's weights are read (and hashed) while the current one is
    scored (:mod:`harness.checkpoints.prefetch`).

    ``workers``: spread the checkpoints over that many Ray actors, each owning one engine for
    its whole life (None: one engine in this process); ``ray_address`` joins an existing Ray
    cluster instead of starting a local one.

    ``follow``: evaluate the checkpoints of the ``checkpoints`` run folder as a training run
    writes them, checking every ``poll`` seconds, until ``until_step``, ``until_file`` exists,
    the final model is written, or ``idle_timeout`` seconds pass with nothing new
    (:mod:`harness.checkpoints.sources`). ``log_to``: trackers that receive every summary value
    at the checkpoint's training step (``tensorboard=DIR``, ``wandb``, ``wandb=RUN_ID``).

    Resuming (:mod:`harness.sweep.resume`): a folder is about one checkpoint source and one plan;
    another is refused unless ``append`` is set. ``overwrite`` lists checkpoint labels whose
    earlier samples are discarded and evaluated again. ``fingerprint``: how a checkpoint's weights
    are told apart (:mod:`harness.checkpoints.fingerprints`): ``full`` reads every byte,
    ``sampled`` a few blocks a file (for huge hub models; it misses changes to a few tensors). ``truncate``: ``None`` refuses prompts longer than the model's window before
    the sweep starts; ``"left"`` cuts them from the left and marks their samples.
    """

    # what to evaluate
    tasks: list[str] = setting(WHAT, "comma-separated task names or files, or 'all' (every task that needs no download)",
                               factory=lambda: list(DEFAULT_TASKS), metavar="NAMES", parse=comma_list)
    checkpoints: str | list[str] | None = setting(
        WHAT, "a folder of checkpoint-N folders, a glob, a comma-separated list, hub-name@revision, ... or PEFT "
              "adapter folders (with --base-model)", default=None, metavar="SPEC")
    model: str | None = setting(WHAT, "a single model folder or hub name (default: the bundled "
                                      "SmolLM2-135M-Instruct)", default=None)
    base_model: str | None = setting(WHAT, "the base model of PEFT adapter checkpoints", default=None)
    format: str = setting(WHAT, "instruction format of the prompts; chat uses the tokenizer's template",
                          default="plain", choices=FORMATS)
    conjugates: list[str] | None = setting(WHAT, "restrict conjugates (default: all each task declares)",
                                           default=None, metavar="NAMES", parse=comma_list)
    modes: list[str] | None = setting(WHAT, "restrict scoring modes: generate, loglikelihood (default: what "
                                            "each task declares)", default=None, metavar="MODES", parse=comma_list)
    limit: int | float | None = setting(WHAT, "a seeded sample of each task condition: N examples, or a share "
                                              "(0.1); the same examples at every checkpoint (default: all)",
                                        default=None, metavar="N|SHARE", parse=count_or_share)
    seed: int = setting(WHAT, "seed of --limit and of the bootstrap", default=0)
    include_path: list[str] = setting(WHAT, "a folder of your own task YAML files (repeatable)", factory=list,
                                      metavar="DIR", repeat=True)
    schedule: str = setting(WHAT, "which checkpoints: all, or adaptive (a coarse subset, then refined where the "
                                  "peak could lie until the inversion verdict and the peak cannot change; "
                                  "harness.sweep.schedule)", default=ALL, choices=SCHEDULES)
    max_checkpoints: int | None = setting(WHAT, "with --schedule adaptive: evaluate at most N checkpoints",
                                          default=None, metavar="N")
    extrapolate: bool = setting(WHAT, "allow interp: levels outside [0, 1] (harness.checkpoints.interp)",
                                default=False)
    bootstrap_resamples: int = setting(WHAT, "bootstrap resamples of the intervals of means", default=1000,
                                       flag=False)
    # results
    output: str = setting(RESULTS, "results folder; rerun the same command to resume", default="results/run",
                          metavar="DIR", aliases=("-o", "--output_path"))
    overwrite: list[str] = setting(RESULTS, "discard the earlier samples of these checkpoint labels and "
                                            "evaluate them again, whatever they were evaluated with", factory=list,
                                   metavar="LABEL[,LABEL]", parse=comma_list)
    append: bool = setting(RESULTS, "add another checkpoint source or plan to an existing results folder "
                                    "(otherwise refused: one folder, one run)", default=False)
    fingerprint: str = setting(RESULTS, "how weights are told apart: full reads every byte; sampled reads a few "
                                        "blocks a file (huge hub models; misses changes to a few tensors)",
                               default=FULL, choices=FINGERPRINTS)
    truncate: str | None = setting(RESULTS, "cut prompts longer than the model's window from the left (default: "
                                            "refuse them before the sweep starts); their samples are marked and "
                                            "counted", default=None, choices=TRUNCATE)
    log_to: list[str] = setting(RESULTS, "tensorboard=DIR, wandb or wandb=RUN_ID: every summary value at its "
                                         "training step (repeatable)", factory=list, metavar="TRACKER", repeat=True)
    # engine
    backend: str = setting(ENGINE, "inference engine; auto: vLLM if it imports and can run the checkpoints "
                                   "(it has no LoRA for some architectures, GPT-2 among them), else transformers",
                           default="auto", choices=BACKEND_NAMES)
    backend_options: dict[str, Any] = setting(ENGINE, "engine options (harness.backends.options)", factory=dict,
                                              flag=False)
    batch_size: int | None = setting(ENGINE, "examples per engine call, results written after each (default: "
                                            "as many as take about 5 s, up to --flush-every; the engine batches "
                                            "each call further itself; auto: that default)", default=None,
                                  metavar="N|auto", parse=engine_batch, aliases=("--batch_size",))
    flush_every: int = setting(ENGINE, "at most N examples per engine call, so results reach disk at least that "
                                       "often", default=1024, metavar="N")
    trust_remote_code: bool = setting(ENGINE, "allow model code from the checkpoint", default=False)
    prefetch: bool = setting(ENGINE, "read and hash the next checkpoint's weights while this one is scored, where "
                                     "they take at most half the memory available (--no-prefetch: read each "
                                     "when its turn comes)", default=True)
    # many engines
    workers: int | None = setting(WORKERS, "spread the checkpoints over N Ray actors, each with its own engine",
                                  default=None, metavar="N")
    ray_address: str | None = setting(WORKERS, "join this Ray cluster (e.g. head-node:6379) instead of starting "
                                               "a local one", default=None, metavar="ADDR")
    # following a training run
    follow: bool = setting(FOLLOW, "keep evaluating the --checkpoints run folder as a training run saves into it",
                           default=False)
    poll: float = setting(FOLLOW, "seconds between looks at the folder", default=10.0, metavar="SECONDS")
    until_step: int | None = setting(FOLLOW, "stop after step N", default=None, metavar="N")
    until_file: str | None = setting(FOLLOW, "stop once PATH exists and every saved checkpoint is evaluated",
                                     default=None, metavar="PATH")
    idle_timeout: float | None = setting(FOLLOW, "stop after this long without a new checkpoint", default=None,
                                         metavar="SECONDS")
    complete_marker: str | None = setting(FOLLOW, "a checkpoint folder without trainer_state.json is complete once "
                                                  "it holds a file of this name (your saving code writes it last); "
                                                  "default: once its files stop changing", default=None, metavar="NAME")

    def __post_init__(self) -> None:
        # Checked here, before any model loads; names only vLLM's EngineArgs knows move into engine_kwargs.
        object.__setattr__(self, "backend_options", check_engine_options(self.backend_options))
        self.validate()

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "RunConfig":
        """Read a run config file; ``overrides`` (from the command line) win over it."""
        return load_config(cls, path, RunError, **overrides)

    def validate(self) -> None:
        """Check every setting again (a config is checked when it is made)."""
        _check_choices(self)
        for check in CHECKS.values():
            check(self)

    def with_engine_options(self, options: dict[str, Any]) -> "RunConfig":
        """A copy whose engine options are these, over (and merged with) the config's own:
        ``engine_kwargs`` of both are merged, the new ones winning."""
        options = check_engine_options(options)
        kwargs = {**self.backend_options.get("engine_kwargs", {}), **options.pop("engine_kwargs", {})}
        merged = {**self.backend_options, **options, **({"engine_kwargs": kwargs} if kwargs else {})}
        return dataclasses.replace(self, backend_options=merged)


def engine_options(engine_args: Sequence[str], flags: dict[str, Any]) -> dict[str, Any]:
    """Engine options from ``--engine-args`` strings (``k=v,k=v``) and the engine flags given,
    the flags winning; each checked (:func:`harness.backends.options.check_engine_options`)."""
    options: dict[str, Any] = {}
    for text in engine_args:
        options.update(check_engine_options(parse_engine_args(text), where="--engine-args"))
    for name, value in flags.items():
        problem = value_problem(name, value)
        if problem:
            raise RunError(f"--{name.replace('_', '-')}: {problem}")
    return {**options, **flags}


def settings(group: str | None = None) -> list[dataclasses.Field]:
    """The fields of :class:`RunConfig` (of one group), in order."""
    return [f for f in dataclasses.fields(RunConfig) if group is None or f.metadata["group"] == group]


# --------------------------------------------------------------------------- checks, a group each


def _check_choices(config: RunConfig) -> None:
    """A setting that declares its choices holds one of them, from a YAML file as from a flag
    (where argparse checks them first); None is an optional setting left unset."""
    for declared in dataclasses.fields(config):
        choices, value = declared.metadata.get("choices"), getattr(config, declared.name)
        if choices and value is not None and value not in choices:
            unset = " (or leave it unset)" if declared.default is None else ""
            raise RunError(f"{declared.name}: unknown value {value!r}{did_you_mean(str(value), choices)}; "
                           f"expected one of: {', '.join(choices)}{unset}")


def _check_what(config: RunConfig) -> None:
    for mode in config.modes or []:
        if mode not in SCORING_MODES:
            raise RunError(f"modes: unknown mode {mode!r}{did_you_mean(mode, SCORING_MODES)}; "
                           f"expected: {', '.join(SCORING_MODES)}")
    for conjugate in config.conjugates or []:
        if conjugate not in CONJUGATES:
            raise RunError(f"conjugates: unknown conjugate {conjugate!r}{did_you_mean(conjugate, CONJUGATES)}; "
                           f"expected some of {', '.join(CONJUGATES)}")
    if (isinstance(config.limit, float) and not 0 < config.limit < 1) or (
            isinstance(config.limit, int) and config.limit < 1):
        raise RunError(f"limit: a number of examples (at least 1) or a share of them (between 0 and 1, e.g. 0.1), "
                       f"got {config.limit}")
    if config.checkpoints and config.model:
        raise RunError("give --checkpoints or --model, not both")
    if config.max_checkpoints is not None and config.schedule != ADAPTIVE:
        raise RunError("max_checkpoints: goes with the adaptive schedule (--schedule adaptive)")
    if config.max_checkpoints is not None and config.max_checkpoints < 3:
        raise RunError(f"max_checkpoints: at least 3 (the first, the last and one between), got "
                       f"{config.max_checkpoints}")
    if config.schedule == ADAPTIVE and (config.follow or config.workers is not None):
        raise RunError("schedule: adaptive chooses among checkpoints known up front on one engine; it does not go "
                       "with --follow or --workers")


def _check_results(config: RunConfig) -> None:
    check_output_folder(config.output, RunError)


def _check_engine(config: RunConfig) -> None:
    for key in ("batch_size", "flush_every"):
        if getattr(config, key) is not None and getattr(config, key) < 1:
            raise RunError(f"{key}: must be at least 1")


def _check_workers(config: RunConfig) -> None:
    if config.workers is not None and config.workers < 1:
        raise RunError(f"workers: must be at least 1, got {config.workers}")
    if config.ray_address is not None and config.workers is None:
        raise RunError("ray_address: goes with workers (--workers N)")


def _check_follow(config: RunConfig) -> None:
    if config.follow and not config.checkpoints:
        raise RunError("follow: give the training run's folder to follow (--checkpoints RUN_DIR --follow)")
    if config.poll <= 0:
        raise RunError(f"poll: must be a positive number of seconds, got {config.poll}")
    if config.complete_marker is not None and (not config.complete_marker or "/" in config.complete_marker):
        raise RunError(f"complete_marker: a file name inside each checkpoint folder, got {config.complete_marker!r}")
    for key in ("until_step", "until_file", "idle_timeout", "complete_marker"):
        if getattr(config, key) is not None and not config.follow:
            raise RunError(f"{key}: goes with follow (--follow)")


#: Each group's checks (:class:`RunConfig` runs them all when it is made).
CHECKS: dict[str, Callable[[RunConfig], None]] = {
    WHAT: _check_what, RESULTS: _check_results, ENGINE: _check_engine, WORKERS: _check_workers,
    FOLLOW: _check_follow,
}
