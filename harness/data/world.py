"""The synthetic world of ``harness demo``: invented people, four attributes, word-level text.

Context-parametric inversion (Goyal et al., ICLR 2025) needs a model that has memorised
facts *and* can read them from a context. This module defines such a world from a seed and
the probes that measure both; the documents that pretrain a model on it and its
instruction-tuning data are the demo's (:mod:`harness.demo.corpus`). docs/demo-recipe.md
says how the recipe was found.

World
-----
600 invented one-token names ``e0`` .. ``e599`` (by default) and four attributes (city,
job, colour, sport), each with 30 one-token values, written with 3 sentence templates an
attribute. The entities fall in three splits by index:

``known`` (0-99)
    one fixed value per attribute: the 400 facts the base model memorises (bio documents).
    (The prototypes used 200 known entities; 100 halve the pretraining time of the demo:
    ``docs/demo-recipe.md``.)
``unknown`` (100-499)
    no fixed values: seen in pretraining only in reading documents with random per-document
    values, and used for the context-critical finetuning examples (fresh random values).
``heldout`` (500-599)
    never in any training data: the open-book probe's entities.

Every word is one token of the word-level tokenizer (:func:`vocabulary`, :func:`build_tokenizer`):
sentences are written with spaces around punctuation (``e5 lives in lima .``).

Probes (builders, fixed for a world seed, seeded apart from all training data)
------------------------------------------------------------------------------
``world_conflict``   300 conflict items (known entity, the queried fact's value replaced by
                     a wrong one; the context never states the true value of the queried
                     attribute): answers ``context`` (wrong) / ``parametric`` (true).
``world_recall``     closed-book recall of all 400 known facts, fields ``question`` (for
                     ``question : ... answer :``) and ``cue`` (pretraining format,
                     ``e0 lives in``): answers ``target`` + ``alternative``.
``world_open_book``  open-book on the 400 facts of the 100 held-out entities (random values):
                     answers ``target`` + ``alternative``.
``world_reading``    the same 400 items in the pretraining format (field ``cue``), for the
                     base model before instruction tuning.
Builder options: ``world_seed`` (the probes of a world are fixed by it; their own random
streams are labelled apart from every training stream) and ``limit`` (keep the first items).
Example fields are ``context`` and ``question``; the task template is :data:`PROMPT_TEMPLATE`
(:data:`CLOSED_BOOK_TEMPLATE` for recall). Generate one new token greedily.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Mapping, Sequence

from harness.data.registry import builder
from harness.seeding import seeded_random
from harness.examples import ALTERNATIVE, CONTEXT, PARAMETRIC, TARGET, Example

ATTRIBUTES = ("city", "job", "colour", "sport")

VALUES: Mapping[str, tuple[str, ...]] = {
    "city": (
        "paris", "london", "rome", "berlin", "madrid", "vienna", "prague", "lisbon", "dublin",
        "oslo", "athens", "cairo", "tokyo", "seoul", "lima", "quito", "delhi", "dhaka", "hanoi",
        "manila", "nairobi", "lagos", "accra", "havana", "bogota", "santiago", "sydney",
        "moscow", "warsaw", "budapest",
    ),
    "job": (
        "doctor", "teacher", "farmer", "baker", "lawyer", "nurse", "pilot", "painter", "writer",
        "singer", "dancer", "chef", "driver", "tailor", "miner", "sailor", "soldier", "judge",
        "banker", "plumber", "carpenter", "dentist", "engineer", "architect", "butcher",
        "fisher", "gardener", "librarian", "mechanic", "poet",
    ),
    "colour": (
        "red", "blue", "green", "yellow", "orange", "purple", "pink", "brown", "black", "white",
        "grey", "gold", "silver", "teal", "navy", "maroon", "olive", "cyan", "magenta", "beige",
        "ivory", "coral", "amber", "indigo", "violet", "crimson", "lime", "tan", "plum", "khaki",
    ),
    "sport": (
        "tennis", "golf", "chess", "rugby", "hockey", "cricket", "football", "baseball",
        "basketball", "volleyball", "handball", "boxing", "rowing", "cycling", "skiing",
        "surfing", "fencing", "judo", "karate", "archery", "polo", "squash", "badminton",
        "bowling", "curling", "sailing", "diving", "climbing", "running", "swimming",
    ),
}

# Three sentence templates an attribute; ``{v}`` is never the first word, so the words before
# it are a closed-book recall prompt in the pretraining format. No such prompt may begin
# another attribute's template ("e5 is a" would be ambiguous between "e5 is a <job>" and
# "e5 is a fan of <sport>": recall of that template stalled at .08).
TEMPLATES: Mapping[str, tuple[str, ...]] = {
    "city": ("{e} lives in {v} .", "{e} is from {v} .", "the home of {e} is {v} ."),
    "job": ("{e} works as a {v} .", "{e} is employed as a {v} .", "the job of {e} is {v} ."),
    "colour": ("{e} likes the colour {v} .", "the favourite colour of {e} is {v} .", "{e} loves {v} ."),
    "sport": ("{e} plays {v} .", "{e} is a fan of {v} .", "the sport of {e} is {v} ."),
}

QUESTIONS: Mapping[str, str] = {
    "city": "where does {e} live ?",
    "job": "what is the job of {e} ?",
    "colour": "what colour does {e} like ?",
    "sport": "what sport does {e} play ?",
}

PROMPT_TEMPLATE = "context : {context} question : {question} answer :"
CLOSED_BOOK_TEMPLATE = "question : {question} answer :"
RESTATEMENT = "again ,"

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, UNK)

# Probe sizes (fixed: part of the probes' definition).
N_CONFLICT = 300
N_OPEN_BOOK = 400



def seeded_world(*parts: object) -> random.Random:
    """A generator for one labelled stream of the world (:func:`harness.seeding.seeded_random`
    under the label ``harness-world``), so every stream is independent of the others."""
    return seeded_random("harness-world", *parts)


@dataclass(frozen=True)
class World:
    """One seeded world: entity names, splits and the known entities' facts.

    ``known_values[i][attribute]`` is the value of known entity ``i``. Splits are index ranges:
    ``known`` = ``range(n_known)``, then ``unknown``, then ``heldout``.
    """

    seed: int
    names: tuple[str, ...]
    n_known: int
    n_unknown: int
    n_heldout: int
    known_values: tuple[Mapping[str, str], ...]

    @property
    def known(self) -> range:
        return range(0, self.n_known)

    @property
    def unknown(self) -> range:
        return range(self.n_known, self.n_known + self.n_unknown)

    @property
    def heldout(self) -> range:
        start = self.n_known + self.n_unknown
        return range(start, start + self.n_heldout)

    def value(self, entity: int, attribute: str) -> str:
        """The true value of a known entity's attribute."""
        return self.known_values[entity][attribute]

    def known_facts(self) -> list[tuple[int, str]]:
        """All ``(entity, attribute)`` pairs of known entities, entity-major."""
        return [(e, a) for e in self.known for a in ATTRIBUTES]


def make_world(seed: int = 0, *, n_known: int = 100, n_unknown: int = 400, n_heldout: int = 100) -> World:
    """The world for ``seed``. Known facts depend only on ``seed`` and the entity index. The
    probes always use the default sizes; to pretrain on fewer unknown entities, pass
    ``reading_pool`` to :func:`pretraining_documents` instead of shrinking the world."""
    if min(n_known, n_unknown, n_heldout) < 2:
        raise ValueError("every split needs at least two entities")
    total = n_known + n_unknown + n_heldout
    names = tuple(f"e{i}" for i in range(total))
    known_values = tuple(
        {a: seeded_world(seed, "known", e, a).choice(VALUES[a]) for a in ATTRIBUTES} for e in range(n_known)
    )
    return World(seed, names, n_known, n_unknown, n_heldout, known_values)


def vocabulary(world: World) -> list[str]:
    """Every token of the world's text: special tokens, then words in a fixed order."""
    words: list[str] = []
    def add(text: str) -> None:
        for word in text.split():
            if word not in words:
                words.append(word)
    for attribute in ATTRIBUTES:
        for template in TEMPLATES[attribute]:
            add(template.replace("{e}", "").replace("{v}", ""))
        add(QUESTIONS[attribute].replace("{e}", ""))
    add(PROMPT_TEMPLATE.replace("{context}", "").replace("{question}", ""))
    add(RESTATEMENT)
    template_words = set(words)
    for attribute in ATTRIBUTES:
        for value in VALUES[attribute]:
            if value in template_words or value in world.names:
                raise AssertionError(f"value {value!r} clashes with another word")
            add(value)
    for name in world.names:
        add(name)
    return [*SPECIAL_TOKENS, *words]


# ------------------------------------------------------------------------------------ text


def sentence(entity_name: str, attribute: str, value: str, template: int) -> str:
    return TEMPLATES[attribute][template].format(e=entity_name, v=value)


def recall_prompt(entity_name: str, attribute: str, template: int) -> str:
    """The words of a template before its value: a closed-book prompt in pretraining format."""
    return TEMPLATES[attribute][template].split("{v}")[0].format(e=entity_name).rstrip()


def question(entity_name: str, attribute: str) -> str:
    return QUESTIONS[attribute].format(e=entity_name)


def render_prompt(context: str, question_text: str) -> str:
    """The instruction-tuning prompt (ends in ``answer :``; the answer follows after a space)."""
    return PROMPT_TEMPLATE.format(context=context, question=question_text)


def other_value(rng: random.Random, attribute: str, avoid: Sequence[str]) -> str:
    choices = [v for v in VALUES[attribute] if v not in avoid]
    return rng.choice(choices)


@dataclass(frozen=True)
class ContextItem:
    """One context-and-question prompt and its one-token answer, with what it is about.

    ``kind`` is ``conflict``/``open_book`` for probes and ``nc``/``cc``/``cf`` for the demo's
    training data (:mod:`harness.demo.corpus`); ``true_value`` is the known fact (``None`` for unknown/held-out entities);
    ``sentences`` are the context's sentences in order, ``sentences[query_position]`` the one
    stating the queried fact.
    """

    kind: str
    entity: int
    attribute: str
    sentences: tuple[str, ...]
    query_position: int
    question: str
    answer: str
    true_value: str | None

    @property
    def context(self) -> str:
        return " ".join(self.sentences)

    @property
    def prompt(self) -> str:
        return render_prompt(self.context, self.question)

    def with_queried_value(self, value: str, template: int) -> tuple[str, ...]:
        """The context's sentences with the queried fact stated as ``value``."""
        sentences = list(self.sentences)
        sentences[self.query_position] = sentence(f"e{self.entity}", self.attribute, value, template)
        return tuple(sentences)


def context_item(
    world: World,
    rng: random.Random,
    kind: str,
    entity: int,
    attribute: str,
    *,
    n_distractors: int = 2,
    entity_pool: Sequence[int],
    values: Mapping[tuple[int, str], str] | None,
    stated_value: str,
    avoid: Sequence[str] = (),
) -> ContextItem:
    """A context of the queried fact (stated as ``stated_value``) and ``n_distractors``.

    ``values`` gives the true values of the pool's entities (known split); ``None`` draws fresh
    random values. A same-attribute distractor's value differs from ``stated_value`` and from
    every value in ``avoid`` (a conflict item's true value).
    """
    def value_of(e: int, a: str, exclude: Sequence[str]) -> str | None:
        if values is None:
            return other_value(rng, a, exclude)
        v = values[(e, a)]
        return None if v in exclude else v

    facts = [(entity, attribute, stated_value)]
    other_attributes = [a for a in ATTRIBUTES if a != attribute]
    used_entities = {entity}
    while len(facts) < n_distractors + 1:
        if rng.random() < 0.5 and other_attributes:
            a = other_attributes.pop(rng.randrange(len(other_attributes)))
            facts.append((entity, a, value_of(entity, a, ())))
        else:
            other = rng.choice(entity_pool)
            if other in used_entities:
                continue
            v = value_of(other, attribute, [stated_value, *avoid, *(f[2] for f in facts if f[1] == attribute)])
            if v is None:
                continue
            used_entities.add(other)
            facts.append((other, attribute, v))
    order = list(range(len(facts)))
    rng.shuffle(order)
    sentences = tuple(sentence(world.names[facts[i][0]], facts[i][1], facts[i][2], rng.randrange(3)) for i in order)
    true_value = world.value(entity, attribute) if entity in world.known else None
    return ContextItem(
        kind, entity, attribute, sentences, order.index(0), question(world.names[entity], attribute),
        stated_value, true_value,
    )


def known_values(world: World) -> dict[tuple[int, str], str]:
    """Every known fact's true value, by ``(entity, attribute)``."""
    return {(e, a): world.value(e, a) for e, a in world.known_facts()}


# ------------------------------------------------------------------------------ probes


def _probe_world(world_seed: int) -> World:
    return make_world(world_seed)


def conflict_items(world: World, n: int = N_CONFLICT) -> list[ContextItem]:
    """The conflict probe: ``n`` distinct known facts, each stated with a wrong value."""
    rng = seeded_world(world.seed, "probe", "conflict")
    facts = rng.sample(world.known_facts(), n)
    values = known_values(world)
    items = []
    for entity, attribute in facts:
        true = world.value(entity, attribute)
        item = context_item(
            world, rng, "conflict", entity, attribute, entity_pool=world.known, values=values,
            stated_value=other_value(rng, attribute, [true]), avoid=[true],
        )
        items.append(item)
    return items


_NON_PROBE_FACTS: dict[tuple[int, int, int, int], list[tuple[int, str]]] = {}


def non_probe_facts(world: World) -> list[tuple[int, str]]:
    """Known facts the conflict probe does not ask about (100 of the 400)."""
    key = (world.seed, world.n_known, world.n_unknown, world.n_heldout)
    if key not in _NON_PROBE_FACTS:
        asked = {(x.entity, x.attribute) for x in conflict_items(world)}
        _NON_PROBE_FACTS[key] = [f for f in world.known_facts() if f not in asked]
    return list(_NON_PROBE_FACTS[key])


def open_book_items(world: World, n: int = N_OPEN_BOOK) -> list[ContextItem]:
    """The open-book probe: ``n`` facts of held-out entities with random values (all 400 of
    the 100 held-out entities by default), distractors about held-out entities."""
    rng = seeded_world(world.seed, "probe", "open-book")
    facts = [(e, a) for e in world.heldout for a in ATTRIBUTES]
    facts = rng.sample(facts, n) if n < len(facts) else facts
    return [
        context_item(
            world, rng, "open_book", e, a, entity_pool=world.heldout, values=None,
            stated_value=rng.choice(VALUES[a]),
        )
        for e, a in facts
    ]


def _meta(item: ContextItem) -> dict[str, object]:
    return {"entity": f"e{item.entity}", "attribute": item.attribute}


@builder("world_conflict")
def world_conflict(*, world_seed: int = 0, limit: int | None = None) -> list[Example]:
    """300 conflict items on known facts: ``context`` = the stated wrong value, ``parametric``
    = the memorised one."""
    items = conflict_items(_probe_world(world_seed))[:limit]
    return [
        Example(
            id=f"world_conflict:e{x.entity}:{x.attribute}",
            condition="conflicting",
            fields={"context": x.context, "question": x.question},
            answers={CONTEXT: (x.answer,), PARAMETRIC: (x.true_value,)},
            meta=_meta(x),
        )
        for x in items
    ]


@builder("world_recall")
def world_recall(*, world_seed: int = 0, limit: int | None = None) -> list[Example]:
    """Closed-book recall of all 400 known facts. Fields: ``question`` (for
    :data:`CLOSED_BOOK_TEMPLATE`, the instruction format without a context) and ``cue`` (the
    pretraining format, ``e0 lives in``: template ``{cue}``; the same prompts as the
    pretraining check)."""
    world = _probe_world(world_seed)
    rng = seeded_world(world.seed, "probe", "recall")
    examples = []
    for e, a in world.known_facts()[:limit]:
        true = world.value(e, a)
        examples.append(Example(
            id=f"world_recall:e{e}:{a}",
            condition="closed_book",
            fields={"question": question(world.names[e], a),
                    "cue": recall_prompt(world.names[e], a, (e + ATTRIBUTES.index(a)) % 3)},
            answers={TARGET: (true,), ALTERNATIVE: (other_value(rng, a, [true]),)},
            meta={"entity": f"e{e}", "attribute": a},
        ))
    return examples


@builder("world_open_book")
def world_open_book(*, world_seed: int = 0, limit: int | None = None) -> list[Example]:
    """Open-book on 400 held-out-entity facts: ``target`` stated in the context, ``alternative``
    another value of the attribute."""
    world = _probe_world(world_seed)
    rng = seeded_world(world.seed, "probe", "open-book-alternative")
    return [
        Example(
            id=f"world_open_book:e{x.entity}:{x.attribute}",
            condition="open_book",
            fields={"context": x.context, "question": x.question},
            answers={TARGET: (x.answer,), ALTERNATIVE: (other_value(rng, x.attribute, [x.answer]),)},
            meta=_meta(x),
        )
        for x in open_book_items(world)[:limit]
    ]


@builder("world_reading")
def world_reading(*, world_seed: int = 0, limit: int | None = None) -> list[Example]:
    """``world_open_book``'s items as the pretraining check reads them: field ``cue`` is the
    context, ``again ,`` and the queried fact's recall prompt in its statement's template
    (``... e512 plays golf . again , e512 plays``), so a base model that never saw the
    instruction format is asked in the one it knows. Same answers as ``world_open_book``."""
    world = _probe_world(world_seed)
    examples = []
    for example, item in zip(world_open_book(world_seed=world_seed, limit=limit), open_book_items(world)):
        name = world.names[item.entity]
        template = next(t for t in range(len(TEMPLATES[item.attribute]))
                        if sentence(name, item.attribute, item.answer, t) == item.sentences[item.query_position])
        cue = f"{item.context} {RESTATEMENT} {recall_prompt(name, item.attribute, template)}"
        examples.append(Example(id=example.id.replace("world_open_book", "world_reading"), condition="open_book",
                                fields={"cue": cue}, answers=example.answers, meta=example.meta))
    return examples
