"""The synthetic world of ``harness demo``: invented people, four attributes, word-level text.

Context-parametric inversion (Goyal et al., ICLR 2025) needs a model that has memorised
facts *and* can read them from a context. This module makes such a world from a seed, the
documents that pretrain a tiny model on it (:mod:`harness.pretrain`), the instruction-tuning
data, and the probes, following the recipe in ``shared/notes/inversion-testbed.md``.

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

Pretraining documents (:func:`bio_document`, :func:`reading_document`)
--------------------------------------------------------------------
*bio*: five known facts, each in a random template. *reading*: 3-5 fact statements, then 2-4
restatements ``again , <a fact stated above>`` (word for word by default, ``restate="same"``).
A statement is about a known entity with probability ``known_share`` (.4) -- half of those
(``local_share``) with a document-local wrong value, restated consistently -- and otherwise
about an unknown-pool entity with a random value, so a restatement is predictable only by
looking back.

Instruction tuning (:func:`instruction_example`, :func:`instruction_examples`)
------------------------------------------------------------------------------
One prompt, one answer token (``PROMPT_TEMPLATE``)::

    context : S1 S2 S3 question : where does e17 live ? answer :   ->   lima

The context holds the queried fact and two distractor sentences, shuffled; a distractor is
another attribute of the same entity or the same attribute of another entity of the same
split, with a value different from the queried one. Kinds: ``nc`` (non-context-critical: a
known entity with its true facts), ``cc`` (context-critical: an unknown-pool entity with fresh
random values, answerable only from the context), ``cf`` (counterfactual augmentation: a known
entity whose queried fact the context states with a wrong value; the target follows the
context). Training streams are seeded apart from the probes and never draw a held-out entity.

Files for ``harness finetune`` (:func:`write_instruction_jsonl`, :func:`write_counterfactual_jsonl`)
------------------------------------------------------------------------------------------------
Alpaca layout, one record a line::

    {"instruction": "context : S1 S2 S3 question : where does e17 live ? answer :",
     "input": "", "output": "lima", "kind": "cc", ...}

The whole prompt is the ``instruction`` and ``input`` is empty, so rendering with the
``plain`` format (``apply_format(instruction, "plain")``) gives the prompt exactly; the model's
token sequence is ``tokenize(instruction) + tokenize(output)`` -- with the word-level
tokenizer one token a space-separated word, the answer one token, no BOS (the tokenizer adds
no special tokens). Loss on the answer token only: the recipe trains no EOS after the answer
(``harness finetune`` appends one unless ``add_eos: false``) and evaluates with one new token.
Extra keys (``kind``, ``entity``, ``attribute``, ``context``, ``question``) are for reading,
not training.

``layout="split"`` writes ``instruction`` = the question and ``input`` = the context instead,
plus ``cue`` (the queried fact's closed-book prompt in the pretraining format), for
``harness finetune`` with ``prompt_template`` = :data:`FINETUNE_PROMPT_TEMPLATE` and
``closed_book_template`` = :data:`FINETUNE_CLOSED_BOOK_TEMPLATE` (``{cue}``): the training
prompt is then exactly the probes' prompt, and the non-context-critical filter asks the base
model without the context in the one format it knows (the demo does this).

Counterfactual augmentation in NQ-Swap layout: ``question`` (``where does e17 live ?``),
``org_context`` (the three sentences with the true value), ``org_answer``, ``sub_context``
(the same sentences with the queried fact's value replaced by a wrong one), ``sub_answer``.
``harness finetune``'s ``counterfactual_augmentation`` reads such a file (``source``) and,
with the templates above, renders ``sub_context`` and ``question`` in the probes' format with
target ``sub_answer``. They use only known facts that the conflict probe does not ask about
(``exclude_probe_facts``), so the mitigation is not trained on the probe's own items.

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
Builder options: ``world_seed`` (the probes of a world are fixed by it; their own random
streams are labelled apart from every training stream) and ``limit`` (keep the first items).
Example fields are ``context`` and ``question``; the task template is :data:`PROMPT_TEMPLATE`
(:data:`CLOSED_BOOK_TEMPLATE` for recall). Generate one new token greedily.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from harness.data.registry import builder
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
# ``harness finetune``'s templates for the ``split`` layout's records (see instruction_record):
# the prompt above, and the pretraining-format cue for the closed-book side.
FINETUNE_PROMPT_TEMPLATE = PROMPT_TEMPLATE.format(context="{input}", question="{instruction}")
FINETUNE_CLOSED_BOOK_TEMPLATE = "{cue}"
# Bump when the instruction data a given seed produces changes (the demo caches its files).
DATA_VERSION = 3
RESTATEMENT = "again ,"
RESTATE_MODES = ("same", "random")

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, UNK)

NC, CC, CF = "nc", "cc", "cf"
KINDS = (NC, CC, CF)

# Probe sizes (fixed: part of the probes' definition).
N_CONFLICT = 300
N_OPEN_BOOK = 400


def seeded(*parts: object) -> random.Random:
    """A ``random.Random`` seeded from a label (string seeds are hashed with SHA-512: stable
    across processes and Python versions), so every stream of the world is independent."""
    return random.Random(":".join(str(p) for p in ("harness-world", *parts)))


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

    def split_of(self, entity: int) -> str:
        if entity in self.known:
            return "known"
        if entity in self.unknown:
            return "unknown"
        if entity in self.heldout:
            return "heldout"
        raise IndexError(entity)

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
        {a: seeded(seed, "known", e, a).choice(VALUES[a]) for a in ATTRIBUTES} for e in range(n_known)
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


def _other_value(rng: random.Random, attribute: str, avoid: Sequence[str]) -> str:
    choices = [v for v in VALUES[attribute] if v not in avoid]
    return rng.choice(choices)


# ------------------------------------------------------------------------ pretraining text


def bio_document(world: World, rng: random.Random, n_facts: int = 5) -> str:
    """Five distinct known facts, each in a random template."""
    facts = rng.sample(world.known_facts(), n_facts)
    return " ".join(sentence(world.names[e], a, world.value(e, a), rng.randrange(3)) for e, a in facts)


def reading_document(
    world: World,
    rng: random.Random,
    *,
    statements: tuple[int, int] = (3, 5),
    restatements: tuple[int, int] = (2, 4),
    known_share: float = 0.4,
    local_share: float = 0.5,
    restate: str = "same",
    reading_pool: int | None = None,
) -> str:
    """Fact statements, then ``again , <a stated fact>`` restatements (values consistent).

    ``reading_pool`` limits the unknown-pool entities drawn to the first ``reading_pool``.

    ``restate="same"`` repeats a statement word for word (its template too); ``"random"``
    restates the fact in a random template (harder: the base learns to read far later)."""
    if restate not in RESTATE_MODES:
        raise ValueError(f"restate must be one of {RESTATE_MODES}, got {restate!r}")
    pool = world.unknown if reading_pool is None else world.unknown[:reading_pool]
    n = rng.randint(*statements)
    stated: list[tuple[int, str, str, int]] = []
    used: set[tuple[int, str]] = set()
    while len(stated) < n:
        attribute = rng.choice(ATTRIBUTES)
        if rng.random() < known_share:
            entity = rng.choice(world.known)
            value = world.value(entity, attribute)
            if rng.random() < local_share:
                value = _other_value(rng, attribute, [value])
        else:
            entity = rng.choice(pool)
            value = rng.choice(VALUES[attribute])
        if (entity, attribute) in used:
            continue
        used.add((entity, attribute))
        stated.append((entity, attribute, value, rng.randrange(3)))
    k = rng.randint(*restatements)
    again = rng.sample(stated, min(k, n)) + [rng.choice(stated) for _ in range(k - min(k, n))]
    text = [sentence(world.names[e], a, v, t) for e, a, v, t in stated]
    for e, a, v, t in again:
        template = t if restate == "same" else rng.randrange(3)
        text.append(f"{RESTATEMENT} {sentence(world.names[e], a, v, template)}")
    return " ".join(text)


def pretraining_documents(
    world: World,
    seed: int,
    *,
    bio_share: float = 0.3,
    statements: tuple[int, int] = (3, 5),
    restatements: tuple[int, int] = (2, 4),
    known_share: float = 0.4,
    local_share: float = 0.5,
    restate: str = "same",
    reading_pool: int | None = None,
) -> Iterator[str]:
    """An endless seeded stream of pretraining documents (bio with probability ``bio_share``)."""
    rng = seeded(world.seed, "pretrain", seed)
    while True:
        if rng.random() < bio_share:
            yield bio_document(world, rng)
        else:
            yield reading_document(
                world, rng, statements=statements, restatements=restatements,
                known_share=known_share, local_share=local_share, restate=restate,
                reading_pool=reading_pool,
            )


def pretraining_recall_items(world: World) -> list[tuple[str, str]]:
    """``(prompt, answer)`` for each of the 400 known facts in the pretraining format (template
    ``(entity + attribute index) % 3``, so all three templates are checked)."""
    return [
        (recall_prompt(world.names[e], a, (e + ATTRIBUTES.index(a)) % 3), world.value(e, a))
        for e, a in world.known_facts()
    ]


def pretraining_open_book_items(
    world: World, n: int = 400, seed: int = 0, restate: str = "same"
) -> list[tuple[str, str]]:
    """``(prompt, answer)``: reading documents about held-out entities with random values,
    ending in ``again , <recall prompt>`` (in the statement's template when ``restate`` is
    ``same``, a random one otherwise); the answer is stated once above and no other
    statement of the document has the same value. Never used for training."""
    rng = seeded(world.seed, "pretrain-open-book", seed)
    items = []
    for _ in range(n):
        k = rng.randint(3, 5)
        stated: list[tuple[int, str, str]] = []
        used: set[tuple[int, str]] = set()
        while len(stated) < k:
            entity, attribute = rng.choice(world.heldout), rng.choice(ATTRIBUTES)
            if (entity, attribute) in used:
                continue
            value = _other_value(rng, attribute, [v for _, a, v, _ in stated if a == attribute])
            used.add((entity, attribute))
            stated.append((entity, attribute, value, rng.randrange(3)))
        entity, attribute, value, template = rng.choice(stated)
        text = " ".join(sentence(world.names[e], a, v, t) for e, a, v, t in stated)
        if restate != "same":
            template = rng.randrange(3)
        prompt = f"{text} {RESTATEMENT} {recall_prompt(world.names[entity], attribute, template)}"
        items.append((prompt, value))
    return items


# ---------------------------------------------------------------------- instruction tuning


@dataclass(frozen=True)
class InstructionExample:
    """One prompt and its one-token answer, with what it is about.

    ``kind`` is ``nc``/``cc``/``cf`` for training data and ``conflict``/``open_book`` for
    probes; ``true_value`` is the known fact (``None`` for unknown/held-out entities);
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


def _context_example(
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
) -> InstructionExample:
    """A context of the queried fact (stated as ``stated_value``) and ``n_distractors``.

    ``values`` gives the true values of the pool's entities (known split); ``None`` draws fresh
    random values. A same-attribute distractor's value differs from ``stated_value`` and from
    every value in ``avoid`` (a conflict item's true value).
    """
    def value_of(e: int, a: str, exclude: Sequence[str]) -> str | None:
        if values is None:
            return _other_value(rng, a, exclude)
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
    return InstructionExample(
        kind, entity, attribute, sentences, order.index(0), question(world.names[entity], attribute),
        stated_value, true_value,
    )


def _known_values(world: World) -> dict[tuple[int, str], str]:
    return {(e, a): world.value(e, a) for e, a in world.known_facts()}


def instruction_example(
    world: World,
    rng: random.Random,
    kind: str,
    *,
    facts: Sequence[tuple[int, str]] | None = None,
) -> InstructionExample:
    """One training example of ``kind`` (``nc``, ``cc`` or ``cf``); ``facts`` restricts the
    known facts that ``nc``/``cf`` examples ask about (default: all of them)."""
    if kind == CC:
        entity, attribute = rng.choice(world.unknown), rng.choice(ATTRIBUTES)
        return _context_example(
            world, rng, CC, entity, attribute, entity_pool=world.unknown, values=None,
            stated_value=rng.choice(VALUES[attribute]),
        )
    if kind not in (NC, CF):
        raise ValueError(f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    entity, attribute = rng.choice(facts if facts is not None else world.known_facts())
    true = world.value(entity, attribute)
    stated = true if kind == NC else _other_value(rng, attribute, [true])
    return _context_example(
        world, rng, kind, entity, attribute, entity_pool=world.known, values=_known_values(world),
        stated_value=stated, avoid=[true],
    )


def _kinds(n: int, nc_share: float, cf_share: float, rng: random.Random) -> list[str]:
    if not (0 <= nc_share <= 1 and 0 <= cf_share <= 1 and nc_share + cf_share <= 1):
        raise ValueError(f"shares out of range: nc_share={nc_share}, cf_share={cf_share}")
    n_nc, n_cf = round(n * nc_share), round(n * cf_share)
    kinds = [NC] * n_nc + [CF] * n_cf + [CC] * (n - n_nc - n_cf)
    rng.shuffle(kinds)
    return kinds


def instruction_examples(
    world: World,
    n: int,
    *,
    seed: int | str = 0,
    nc_share: float = 0.5,
    cf_share: float = 0.0,
    exclude_probe_facts: bool = True,
) -> list[InstructionExample]:
    """``n`` training examples, exactly ``round(n * nc_share)`` NC and ``round(n * cf_share)``
    counterfactual ones (the rest CC), in a seeded random order. Counterfactual examples avoid
    the conflict probe's facts when ``exclude_probe_facts``."""
    rng = seeded(world.seed, "instruct", seed, nc_share, cf_share)
    cf_facts = _non_probe_facts(world) if exclude_probe_facts and cf_share > 0 else None
    return [
        instruction_example(world, rng, kind, facts=cf_facts if kind == CF else None)
        for kind in _kinds(n, nc_share, cf_share, rng)
    ]


def instruction_stream(
    world: World,
    *,
    seed: int = 0,
    nc_share: float = 0.5,
    cf_share: float = 0.0,
    block: int = 1000,
    exclude_probe_facts: bool = True,
) -> Iterator[InstructionExample]:
    """An endless stream of fresh training examples: consecutive blocks of ``block`` examples,
    each with the exact shares of :func:`instruction_examples`."""
    for index in range(10**12):
        yield from instruction_examples(
            world, block, seed=f"{seed}/{index}", nc_share=nc_share, cf_share=cf_share,
            exclude_probe_facts=exclude_probe_facts,
        )


LAYOUTS = ("prompt", "split")


def instruction_record(example: InstructionExample, layout: str = "prompt") -> dict[str, object]:
    """The Alpaca-layout record of a training example (see the module docstring).

    ``layout="prompt"``: ``instruction`` is the whole prompt and ``input`` is empty (renders
    exactly with the ``plain`` format). ``layout="split"``: ``instruction`` is the question and
    ``input`` the context, for ``harness finetune`` with ``prompt_template: "context : {input}
    question : {instruction} answer :"`` (Alpaca's default ``instruction\n\ninput`` would put
    the question first, which is not the recipe's format). ``cue`` is the queried fact's
    closed-book prompt in the pretraining format, for ``closed_book_template: "{cue}"``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return {
        "instruction": example.prompt if layout == "prompt" else example.question,
        "input": "" if layout == "prompt" else example.context,
        "output": example.answer,
        "kind": example.kind,
        "entity": f"e{example.entity}",
        "attribute": example.attribute,
        "context": example.context,
        "question": example.question,
        # The pretraining-format cue of the queried fact (``e5 lives in``): how to ask the base
        # model without the context, for the non-context-critical filter.
        "cue": recall_prompt(f"e{example.entity}", example.attribute,
                             (example.entity + ATTRIBUTES.index(example.attribute)) % 3),
    }


def counterfactual_record(world: World, example: InstructionExample, rng: random.Random) -> dict[str, object]:
    """NQ-Swap layout of a counterfactual example (``org_*``: true value; ``sub_*``: wrong)."""
    if example.true_value is None or example.answer == example.true_value:
        raise ValueError("a counterfactual record needs a known fact stated with a wrong value")
    template = rng.randrange(3)
    return {
        "question": example.question,
        "org_context": " ".join(example.with_queried_value(example.true_value, template)),
        "org_answer": example.true_value,
        "sub_context": " ".join(example.with_queried_value(example.answer, template)),
        "sub_answer": example.answer,
    }


def _write_jsonl(path: str | Path, records: Sequence[Mapping[str, object]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    tmp.replace(path)
    return path


def write_instruction_jsonl(
    path: str | Path,
    world: World,
    n: int,
    *,
    seed: int = 0,
    nc_share: float = 0.5,
    cf_share: float = 0.0,
    layout: str = "prompt",
) -> Path:
    """Write ``n`` training examples in the Alpaca layout (one record a line; ``layout``: see
    :func:`instruction_record`)."""
    examples = instruction_examples(world, n, seed=seed, nc_share=nc_share, cf_share=cf_share)
    return _write_jsonl(path, [instruction_record(x, layout) for x in examples])


def write_counterfactual_jsonl(path: str | Path, world: World, n: int, *, seed: int = 0) -> Path:
    """Write ``n`` counterfactual-augmentation examples in the NQ-Swap layout."""
    rng = seeded(world.seed, "counterfactual-file", seed)
    facts = _non_probe_facts(world)
    records = [counterfactual_record(world, instruction_example(world, rng, CF, facts=facts), rng) for _ in range(n)]
    return _write_jsonl(path, records)


# ------------------------------------------------------------------------------ probes


def _probe_world(world_seed: int) -> World:
    return make_world(world_seed)


def conflict_items(world: World, n: int = N_CONFLICT) -> list[InstructionExample]:
    """The conflict probe: ``n`` distinct known facts, each stated with a wrong value."""
    rng = seeded(world.seed, "probe", "conflict")
    facts = rng.sample(world.known_facts(), n)
    values = _known_values(world)
    items = []
    for entity, attribute in facts:
        true = world.value(entity, attribute)
        item = _context_example(
            world, rng, "conflict", entity, attribute, entity_pool=world.known, values=values,
            stated_value=_other_value(rng, attribute, [true]), avoid=[true],
        )
        items.append(item)
    return items


_NON_PROBE_FACTS: dict[tuple[int, int, int, int], list[tuple[int, str]]] = {}


def _non_probe_facts(world: World) -> list[tuple[int, str]]:
    """Known facts the conflict probe does not ask about (100 of the 400)."""
    key = (world.seed, world.n_known, world.n_unknown, world.n_heldout)
    if key not in _NON_PROBE_FACTS:
        asked = {(x.entity, x.attribute) for x in conflict_items(world)}
        _NON_PROBE_FACTS[key] = [f for f in world.known_facts() if f not in asked]
    return list(_NON_PROBE_FACTS[key])


def open_book_items(world: World, n: int = N_OPEN_BOOK) -> list[InstructionExample]:
    """The open-book probe: ``n`` facts of held-out entities with random values (all 400 of
    the 100 held-out entities by default), distractors about held-out entities."""
    rng = seeded(world.seed, "probe", "open-book")
    facts = [(e, a) for e in world.heldout for a in ATTRIBUTES]
    facts = rng.sample(facts, n) if n < len(facts) else facts
    return [
        _context_example(
            world, rng, "open_book", e, a, entity_pool=world.heldout, values=None,
            stated_value=rng.choice(VALUES[a]),
        )
        for e, a in facts
    ]


def _meta(item: InstructionExample) -> dict[str, object]:
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
    rng = seeded(world.seed, "probe", "recall")
    examples = []
    for e, a in world.known_facts()[:limit]:
        true = world.value(e, a)
        examples.append(Example(
            id=f"world_recall:e{e}:{a}",
            condition="closed_book",
            fields={"question": question(world.names[e], a),
                    "cue": recall_prompt(world.names[e], a, (e + ATTRIBUTES.index(a)) % 3)},
            answers={TARGET: (true,), ALTERNATIVE: (_other_value(rng, a, [true]),)},
            meta={"entity": f"e{e}", "attribute": a},
        ))
    return examples


@builder("world_open_book")
def world_open_book(*, world_seed: int = 0, limit: int | None = None) -> list[Example]:
    """Open-book on 400 held-out-entity facts: ``target`` stated in the context, ``alternative``
    another value of the attribute."""
    world = _probe_world(world_seed)
    rng = seeded(world.seed, "probe", "open-book-alternative")
    return [
        Example(
            id=f"world_open_book:e{x.entity}:{x.attribute}",
            condition="open_book",
            fields={"context": x.context, "question": x.question},
            answers={TARGET: (x.answer,), ALTERNATIVE: (_other_value(rng, x.attribute, [x.answer]),)},
            meta=_meta(x),
        )
        for x in open_book_items(world)[:limit]
    ]


# ------------------------------------------------------------------------------ tokenizer


def build_tokenizer(world: World):
    """A word-level ``PreTrainedTokenizerFast`` over :func:`vocabulary` (whitespace
    pre-tokenizer, ``<pad>``/``<eos>``/``<unk>``, no special tokens added on encode; decoding
    joins tokens with single spaces). Save it with ``save_pretrained`` beside the model."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(vocabulary(world))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        model_max_length=128,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
