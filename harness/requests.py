"""Requests an engine serves and what it answers: plain dataclasses, engine-agnostic.

Leading-space rule (decided once, here): a continuation is scored as the text that follows
the prompt. Prompts never end in a space; when a prompt ends in a non-space character
(``"Answer:"``) the continuation is the answer with one leading space (``" Paris"``), and
when it ends in whitespace (``"### Response:\\n"``, chat templates) it is the bare answer.
Use :func:`continuation_for` to build continuations; tokenisers treat ``" Paris"`` and
``"Paris"`` as different tokens, so getting this wrong changes every log-likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass


def continuation_for(prompt: str, answer: str) -> str:
    """The continuation text to score for ``answer`` after ``prompt`` (leading-space rule)."""
    answer = answer.strip()
    if not prompt or prompt[-1].isspace():
        return answer
    return " " + answer


@dataclass(frozen=True)
class GenerationRequest:
    """Greedy generation from ``prompt`` until a stop string or ``max_new_tokens``."""

    prompt: str
    max_new_tokens: int = 32
    stop: tuple[str, ...] = ("\n",)


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """Log-probabilities of several continuations of one shared prompt.

    Grouping continuations under their prompt lets an engine pay for the prompt once
    (the two answers of a knowledge-conflict item share it).
    """

    prompt: str
    continuations: tuple[str, ...]


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
