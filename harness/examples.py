"""The unit of evaluation data: one probe item, in English and in its translations.

An :class:`Example` is what every data source (a builder in :mod:`harness.data`, a user's
JSON/JSONL/CSV/Parquet file, a Hugging Face dataset) turns into. Prompt formatting reads its
``fields``; scoring reads its ``answers``.

Answer roles (the keys of ``Example.answers``) say what an answer means, and scoring picks
its metrics from the roles an example has:

``context`` + ``parametric``
    a knowledge conflict: the answer the context states, and the real-world (memorised)
    answer. Metrics: context / parametric / both / neither rates, memorisation ratio.
``target`` (+ optional ``alternative``)
    one right answer (closed-book recall, agreeing context, open-book, ICL functions);
    ``alternative`` is one plausible wrong answer of the same type, the competitor in
    log-likelihood mode.
``icl`` + ``instruction``
    the in-context-learning probe of conjugate prompting: the answer the demonstrations
    imply, and the answer the instruction-looking query asks for.

Each role maps to a tuple of accepted spellings (aliases). The first spelling is canonical:
it is the continuation scored in log-likelihood mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

CONTEXT = "context"
PARAMETRIC = "parametric"
TARGET = "target"
ALTERNATIVE = "alternative"
ICL = "icl"
INSTRUCTION = "instruction"
ANSWER_ROLES = (CONTEXT, PARAMETRIC, TARGET, ALTERNATIVE, ICL, INSTRUCTION)

Answers = Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Localized:
    """An example's fields and answers in another language (used by translation conjugates).

    ``fields`` override the English fields of the same name; ``answers`` hold the localised
    spellings of each role, which scoring accepts alongside the English ones.
    """

    fields: Mapping[str, str]
    answers: Answers


@dataclass(frozen=True)
class Example:
    """One probe item.

    Attributes:
        id: stable identifier within its task (e.g. ``"capital:France"``); results are keyed
            by it, so it must not depend on the order examples are built in.
        condition: the experimental condition (``closed_book``, ``agreeing``, ``conflicting``,
            ``open_book``, ``overriding``, ...); metrics are reported per condition.
        fields: values for the ``{placeholders}`` of the task's prompt template.
        answers: answer role -> accepted spellings (see the module docstring).
        localized: language code (``fr``, ``es``, ``nl``, ``hu``, ``de``) -> the example in that
            language.
        meta: facts about the item kept in the per-sample logs (subject, relation, ...);
            never shown to the model.
        conjugate: the conjugate the item is already written in (``"fr"``, ``"piglatin"``),
            as in a data file of translated prompts; such an item is rendered as written,
            under that conjugate only. ``None`` (the default): written in English, and
            rewritten for each conjugate of its task.
    """

    id: str
    condition: str
    fields: Mapping[str, str]
    answers: Answers
    localized: Mapping[str, Localized] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)
    conjugate: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (for hashing and the per-sample logs).

        ``conjugate`` appears only when set, so the hashes of English-written items stay
        what they were before the field existed.
        """
        written = {} if self.conjugate is None else {"conjugate": self.conjugate}
        return {
            "id": self.id,
            "condition": self.condition,
            "fields": dict(self.fields),
            "answers": {role: list(spellings) for role, spellings in self.answers.items()},
            "localized": {
                lang: {
                    "fields": dict(loc.fields),
                    "answers": {r: list(s) for r, s in loc.answers.items()},
                }
                for lang, loc in self.localized.items()
            },
            "meta": dict(self.meta),
            **written,
        }
