"""The engine interface: every backend loads checkpoints and serves two request types."""

from __future__ import annotations

from typing import Protocol, Sequence

from harness.checkpoints import Checkpoint
from harness.requests import ContinuationScore, Generation, GenerationRequest, LoglikelihoodRequest


class Backend(Protocol):
    """An inference engine that evaluates one checkpoint at a time.

    ``load`` may be called many times on one backend (a sweep); an engine reuses whatever it
    can between checkpoints. Results come back in request order.
    """

    def load(self, checkpoint: Checkpoint) -> None: ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]: ...

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest]
    ) -> list[tuple[ContinuationScore, ...]]: ...

    def close(self) -> None: ...
