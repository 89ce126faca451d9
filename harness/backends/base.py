"""Request plumbing shared by every engine, as lm-evaluation-harness's ``TemplateLM`` holds it.

:class:`Engine` turns the two request types of :mod:`harness.backends.api` into token ids
(:mod:`harness.backends.tokens`, so every engine scores the very same ids), cuts prompts to
the engine's window, answers what needs no model (a request for no new tokens, an empty
continuation), and puts results back in request order. An engine implements only the two
engine calls on token ids: :meth:`Engine._generate_ids` and :meth:`Engine._score_ids`.
"""

from __future__ import annotations

import importlib.metadata
import logging
from typing import Any, Sequence

from harness.backends import tokens as tk
from harness.backends.api import ContinuationScore, Generation, GenerationRequest, LoglikelihoodRequest
from harness.checkpoints import Checkpoint
from harness.checkpoints.fingerprints import FULL
from harness.checkpoints.identity import CheckpointIdentity, identity_fingerprints, model_window, stored_dtype
from harness.dtypes import cpu_dtype, dtype_name

log = logging.getLogger("harness")
#: The score of an empty continuation: nothing to predict, probability one.
EMPTY_CONTINUATION = ContinuationScore(logprob=0.0, n_tokens=0, is_greedy=True)


class Engine:
    """Base of the engines: tokenisation, windows, trivial requests and regrouping, and what
    a checkpoint is served as (its dtype, its identity).

    Subclasses set ``tokenizer`` when a checkpoint is loaded and implement
    :meth:`_generate_ids` and :meth:`_score_ids`; they may narrow the windows
    (:attr:`generation_window`, :attr:`scoring_window`).
    """

    name = "engine"
    #: The distribution(s) whose version identifies the engine (``engine_version``).
    package: str | tuple[str, ...] = "transformers"
    tokenizer: Any = None
    #: How the last load went (an engine with something to say sets it; see ``Backend.load_note``).
    load_note: str = ""
    #: The dtype asked for (``float32``, ``bfloat16``, ``float16``); None: each checkpoint's own.
    requested_dtype: str | None = None
    device: str = "cpu"
    #: The window the user set (``max_model_len``); None: the model's own.
    configured_window: int | None = None
    _dtype_said = False  # whether the CPU dtype's reason is on the console yet

    # ------------------------------------------------------------------ what a checkpoint is served as

    @property
    def on_cpu(self) -> bool:
        """Whether the engine computes on the CPU (its dtype then follows the CPU's units)."""
        return str(self.device) == "cpu"

    def dtype_for(self, checkpoint: Checkpoint) -> str:
        """The dtype ``checkpoint`` runs in: the one asked for; else the one it is stored in, except
        that on a CPU without fast bfloat16 units a half-precision checkpoint runs in float32
        (:func:`harness.dtypes.cpu_dtype`; the reason is logged once an engine). Both engines so
        compute in the same precision without flags."""
        if self.requested_dtype:
            return dtype_name(self.requested_dtype)
        if not self.on_cpu:
            return stored_dtype(checkpoint)
        choice = cpu_dtype(stored_dtype(checkpoint))
        if not self._dtype_said:
            log.info("%s", choice.reason)
            self._dtype_said = True
        return choice.dtype

    def engine_version(self) -> str | None:
        for package in (self.package,) if isinstance(self.package, str) else self.package:
            try:
                return importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                continue
        return None

    def identity(self, checkpoint: Checkpoint, *, fingerprint: str = FULL) -> CheckpointIdentity:
        """What evaluating ``checkpoint`` on this engine means: its weights (fingerprinted,
        :mod:`harness.checkpoints.fingerprints`, ``fingerprint`` of them), the engine, its version,
        dtype and device. Nothing is loaded."""
        return CheckpointIdentity(
            model=checkpoint.model, revision=checkpoint.revision, adapter=checkpoint.adapter,
            engine=self.name, engine_version=self.engine_version(), dtype=self.dtype_for(checkpoint),
            device=str(self.device), **identity_fingerprints(checkpoint, fingerprint))

    @property
    def stats(self) -> dict[str, Any]:
        """What the engine did (starts, reloads, checks); none by default."""
        return {}

    def expect_job(self, *, checkpoints: int, requests: int) -> None:
        """How much work is coming (``Backend.expect_job``); an engine without a use for it ignores it."""

    def cannot_run(self, checkpoint: Checkpoint) -> str | None:
        """Why this engine cannot evaluate ``checkpoint`` (``Backend.cannot_run``); by default it can."""
        return None

    # ------------------------------------------------------------------ windows

    @property
    def generation_window(self) -> int | None:
        """Tokens a prompt and its new tokens may take together (None: no limit)."""
        return None

    @property
    def scoring_window(self) -> int | None:
        """Tokens a scored prompt + continuation may take (None: no limit)."""
        return self.generation_window

    def windows_for(self, checkpoint: Checkpoint) -> tuple[int | None, int | None]:
        """The (generation, scoring) windows ``checkpoint`` will get, known before it is loaded:
        what the user set, else what its config declares."""
        window = self.configured_window or model_window(checkpoint)
        return window, window

    def _require_loaded(self) -> None:
        if self.tokenizer is None:
            raise RuntimeError("no checkpoint loaded: call load(checkpoint) first")

    # ------------------------------------------------------------------ the two requests

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Greedy generation, cut at the first stop string, in request order.

        Prompts are cut from the left so that ``max_new_tokens`` still fit the window.
        """
        self._require_loaded()
        texts = [""] * len(requests)
        todo = [i for i, request in enumerate(requests) if request.max_new_tokens > 0]
        if todo:
            window = self.generation_window
            prompts = [
                tk.encode_prompt(self.tokenizer, requests[i].prompt, add_bos=requests[i].add_bos,
                                 max_length=None if window is None else max(window - requests[i].max_new_tokens, 1))
                for i in todo
            ]
            for i, text in zip(todo, self._generate_ids(prompts, [requests[i] for i in todo])):
                texts[i] = tk.cut_at_stop(text, requests[i].stop)
        return [Generation(text=text) for text in texts]

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[tuple[ContinuationScore, ...]]:
        """Summed log-probability, token count and greediness of every continuation, grouped
        by request (one tuple a request, one score a continuation)."""
        self._require_loaded()
        pairs = tk.encode_loglikelihood(self.tokenizer, requests, max_length=self.scoring_window)
        scores = self.score_pairs([pair for group in pairs for pair in group])
        out, start = [], 0
        for group in pairs:
            out.append(tuple(scores[start: start + len(group)]))
            start += len(group)
        return out

    def score_pairs(self, pairs: Sequence[tk.ScoringPair]) -> list[ContinuationScore]:
        """Score already-tokenised (context, continuation) pairs, in input order."""
        self._require_loaded()
        results: list[ContinuationScore] = [EMPTY_CONTINUATION] * len(pairs)
        todo = [i for i, pair in enumerate(pairs) if pair.continuation]
        if todo:
            for i, score in zip(todo, self._score_ids([pairs[i] for i in todo])):
                results[i] = score
        return results

    # ------------------------------------------------------------------ what an engine implements

    def _generate_ids(self, prompts: list[list[int]], requests: list[GenerationRequest]) -> list[str]:
        """The generated text of each prompt (ids already cut to the window; each request asks
        for at least one token). The text may run past a stop string: it is cut afterwards."""
        raise NotImplementedError

    def _score_ids(self, pairs: list[tk.ScoringPair]) -> list[ContinuationScore]:
        """Scores of pairs whose continuation is not empty."""
        raise NotImplementedError
