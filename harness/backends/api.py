"""The engine interface: two request types, what an engine answers, and the protocol.

Like lm-evaluation-harness's model API, the whole interface is two kinds of request over
plain objects: greedy generation and the log-likelihood of continuations. An engine
(:mod:`harness.backends.hf`, :mod:`harness.backends.vllm`) loads one checkpoint at a time and
serves both; prompts and continuations arrive as text, already in the leading-space
convention of :func:`harness.tasks.prompts.continuation_for`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from harness.checkpoints import Checkpoint
    from harness.checkpoints.identity import CheckpointIdentity

#: The engines' names (``Backend.name``): importable without importing either engine.
HF, VLLM = "hf", "vllm"


@dataclass(frozen=True)
class GenerationRequest:
    """Greedy generation from ``prompt`` until a stop string or ``max_new_tokens``."""

    prompt: str
    max_new_tokens: int = 32
    stop: tuple[str, ...] = ("\n",)
    #: Whether the tokenizer's leading special tokens (BOS) go before the prompt's tokens.
    add_bos: bool = True


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """Log-probabilities of several continuations of one shared prompt.

    Grouping continuations under their prompt lets an engine pay for the prompt once
    (the two answers of a knowledge-conflict item share it).
    """

    prompt: str
    continuations: tuple[str, ...]
    #: Whether the tokenizer's leading special tokens (BOS) go before the prompt's tokens.
    add_bos: bool = True


@dataclass(frozen=True)
class Generation:
    """What an engine generated: the text, already cut at the first stop string."""

    text: str


@dataclass(frozen=True)
class ContinuationScore:
    """Log-likelihood of one continuation: summed log-prob and its number of tokens."""

    logprob: float
    n_tokens: int
    is_greedy: bool

    @property
    def logprob_per_token(self) -> float:
        return self.logprob / max(self.n_tokens, 1)


class Backend(Protocol):
    """An inference engine that evaluates one checkpoint at a time: everything a sweep uses.

    The two requests (:meth:`generate`, :meth:`loglikelihood`) on the checkpoint :meth:`load`
    made current; ``load`` may be called many times on one backend (a sweep), and an engine
    reuses whatever it can between checkpoints. Results come back in request order.
    :class:`harness.backends.base.Engine` gives every member but the engine calls a default.
    """

    #: The engine's name (:data:`HF`, :data:`VLLM`), recorded in run.json.
    name: str
    #: The loaded checkpoint's tokenizer (None before the first load).
    tokenizer: Any
    #: How the last :meth:`load` went, in words (engine started, reloaded in place, canary): the
    #: end of the sweep's one console line per checkpoint; empty when there is nothing to say.
    load_note: str
    #: What the engine did over its life (starts, reloads, checks), recorded in run.json; empty
    #: for an engine that keeps no such counts.
    stats: dict[str, Any]

    def identity(self, checkpoint: "Checkpoint", *, fingerprint: str = "full") -> "CheckpointIdentity":
        """What evaluating ``checkpoint`` on this engine means (weights, engine, dtype); reads the
        weights once for a ``full`` fingerprint (cached), nothing is loaded."""
        ...

    def windows_for(self, checkpoint: "Checkpoint") -> tuple[int | None, int | None]:
        """The (generation, scoring) windows ``checkpoint`` will get, known before it is loaded."""
        ...

    @property
    def generation_window(self) -> int | None:
        """Tokens a prompt and its new tokens may take together, for the loaded model (None: no limit)."""
        ...

    @property
    def scoring_window(self) -> int | None:
        """Tokens a scored prompt + continuation may take, for the loaded model (None: no limit)."""
        ...

    def expect_job(self, *, checkpoints: int, requests: int) -> None:
        """Told once before the first load how much work is coming (an engine may size its start to it)."""
        ...

    def cannot_run(self, checkpoint: "Checkpoint") -> str | None:
        """Why this engine cannot evaluate ``checkpoint`` at all (found without loading it, so a
        sweep skips it, or ``auto`` picks another engine, before any engine starts); None if it can."""
        ...

    def load(self, checkpoint: "Checkpoint") -> None: ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]: ...

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest]
    ) -> list[tuple[ContinuationScore, ...]]: ...

    def close(self) -> None: ...
