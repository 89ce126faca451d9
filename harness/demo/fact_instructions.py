"""Instruction-tuning data on real facts, for ``harness demo --model smollm2``.

The real-fact counterpart of the synthetic world's training mixture
(:func:`harness.demo.corpus.instruction_examples`), in the Alpaca ``split`` layout
(``instruction`` = question, ``input`` = context, ``output`` = answer):

- **non-context-critical (NC)**: a real fact the model may know, its true sentence in the
  context among two true distractor sentences about other countries;
- **context-critical (CC)**: the same relation asked about an *invented* country (seeded
  names such as "Velmaria", never a real country's name) with a real answer of that relation
  picked at random, so only the context holds it; the distractors are invented as well.

Training relations exclude ``capital``: the ``capitals`` probe's facts are never trained on,
so the probe measures how instruction tuning changes the use of context in general, as with
the paper's CF_World_Facts probes and Alpaca/TULU training data. Records carry ``kind``
(``nc``/``cc``), ``relation`` and ``subject``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

from harness.data import fact_sentences as S
from harness.data import facts as F
from harness.seeding import seeded_random
from harness.io import write_jsonl

TRAINING_RELATIONS = ("currency", "continent", "language")
NC, CC = "nc", "cc"
# The layout of the knowledge-conflict probe tasks (tasks/capitals.yaml), for
# ``harness finetune``'s prompt_template / closed_book_template.
PROMPT_TEMPLATE = "Context: {input}\nQuestion: {instruction}\nAnswer:"
CLOSED_BOOK_TEMPLATE = "Question: {instruction}\nAnswer:"

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "tr", "st")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ei", "ou")
_ENDINGS = ("ria", "nia", "land", "stan", "ova", "ador", "esh", "ium", "ara", "ene")


def invented_country(rng: random.Random, taken: set[str]) -> str:
    """A pronounceable country name that is not in ``taken`` (real names included)."""
    while True:
        syllables = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.randint(1, 2)))
        name = (syllables + rng.choice(_ENDINGS)).capitalize()
        if name.lower() not in taken:
            taken.add(name.lower())
            return name


def _sentence(fact: F.Fact, rng: random.Random) -> str:
    return S.fact_sentence(fact, "en", template=rng.randrange(S.n_templates(fact.relation, "en")))


def _record(kind: str, fact: F.Fact, distractors: Sequence[F.Fact], rng: random.Random) -> dict[str, str]:
    sentences = [_sentence(fact, rng)] + [_sentence(d, rng) for d in distractors]
    rng.shuffle(sentences)
    return {"instruction": S.question(fact, "en"), "input": " ".join(sentences), "output": fact.answer,
            "kind": kind, "relation": fact.relation, "subject": fact.subject}


def fact_instruction_records(n: int, *, nc_share: float = 0.5, seed: int = 0,
                             relations: Sequence[str] = TRAINING_RELATIONS) -> list[dict[str, str]]:
    """``n`` training records, exactly ``round(n * nc_share)`` of them NC, in a seeded order."""
    if not 0 <= nc_share <= 1:
        raise ValueError(f"nc_share must be between 0 and 1, got {nc_share}")
    rng = seeded_random(seed, "fact-instructions", str(nc_share))
    real = [fact for relation in relations for fact in F.load_facts(relation)]
    taken = {fact.subject.lower() for fact in F.load_facts()}
    answers = {relation: F.load_facts(relation) for relation in relations}

    def invented(relation: str) -> F.Fact:
        return F.Fact(relation, invented_country(rng, taken), rng.choice(answers[relation]).answer)

    kinds = [NC] * round(n * nc_share) + [CC] * (n - round(n * nc_share))
    rng.shuffle(kinds)
    records = []
    for kind in kinds:
        if kind == NC:
            fact = rng.choice(real)
            distractors = [d for d in rng.sample(real, 3) if d.subject != fact.subject][:2]
        else:
            fact = invented(rng.choice(relations))
            distractors = [invented(rng.choice(relations)) for _ in range(2)]
        records.append(_record(kind, fact, distractors, rng))
    return records


def write_fact_instruction_jsonl(path: str | Path, n: int, *, nc_share: float = 0.5, seed: int = 0) -> Path:
    """Write :func:`fact_instruction_records` as JSON lines (atomically)."""
    path = Path(path)
    write_jsonl(path, fact_instruction_records(n, nc_share=nc_share, seed=seed))
    return path
