"""What ``harness demo`` trains on in the synthetic world (:mod:`harness.data.world`): the
pretraining documents, the instruction-tuning examples and their files, the tokenizer.

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
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterator, Sequence

from harness.data.world import (
    ATTRIBUTES,
    EOS,
    PAD,
    PROMPT_TEMPLATE,
    RESTATEMENT,
    UNK,
    VALUES,
    ContextItem,
    World,
    context_item,
    known_values,
    non_probe_facts,
    other_value,
    recall_prompt,
    seeded_world,
    sentence,
    vocabulary,
)
from harness.io import write_jsonl

# ``harness finetune``'s templates for the ``split`` layout's records (see instruction_record):
# the prompt above, and the pretraining-format cue for the closed-book side.
FINETUNE_PROMPT_TEMPLATE = PROMPT_TEMPLATE.format(context="{input}", question="{instruction}")
FINETUNE_CLOSED_BOOK_TEMPLATE = "{cue}"
RESTATE_MODES = ("same", "random")
# Bump when the instruction data a given seed produces changes (the demo caches its files).
DATA_VERSION = 3
NC, CC, CF = "nc", "cc", "cf"
KINDS = (NC, CC, CF)


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
                value = other_value(rng, attribute, [value])
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


def pretraining_documents(world: World, seed: int, *, bio_share: float = 0.3, **reading: Any) -> Iterator[str]:
    """An endless seeded stream of pretraining documents: bio with probability ``bio_share``,
    else reading documents made with the options ``reading`` of :func:`reading_document`."""
    rng = seeded_world(world.seed, "pretrain", seed)
    while True:
        if rng.random() < bio_share:
            yield bio_document(world, rng)
        else:
            yield reading_document(world, rng, **reading)


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
    rng = seeded_world(world.seed, "pretrain-open-book", seed)
    items = []
    for _ in range(n):
        k = rng.randint(3, 5)
        stated: list[tuple[int, str, str]] = []
        used: set[tuple[int, str]] = set()
        while len(stated) < k:
            entity, attribute = rng.choice(world.heldout), rng.choice(ATTRIBUTES)
            if (entity, attribute) in used:
                continue
            value = other_value(rng, attribute, [v for _, a, v, _ in stated if a == attribute])
            used.add((entity, attribute))
            stated.append((entity, attribute, value, rng.randrange(3)))
        entity, attribute, value, template = rng.choice(stated)
        text = " ".join(sentence(world.names[e], a, v, t) for e, a, v, t in stated)
        if restate != "same":
            template = rng.randrange(3)
        prompt = f"{text} {RESTATEMENT} {recall_prompt(world.names[entity], attribute, template)}"
        items.append((prompt, value))
    return items


def instruction_example(
    world: World,
    rng: random.Random,
    kind: str,
    *,
    facts: Sequence[tuple[int, str]] | None = None,
) -> ContextItem:
    """One training example of ``kind`` (``nc``, ``cc`` or ``cf``); ``facts`` restricts the
    known facts that ``nc``/``cf`` examples ask about (default: all of them)."""
    if kind == CC:
        entity, attribute = rng.choice(world.unknown), rng.choice(ATTRIBUTES)
        return context_item(
            world, rng, CC, entity, attribute, entity_pool=world.unknown, values=None,
            stated_value=rng.choice(VALUES[attribute]),
        )
    if kind not in (NC, CF):
        raise ValueError(f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    entity, attribute = rng.choice(facts if facts is not None else world.known_facts())
    true = world.value(entity, attribute)
    stated = true if kind == NC else other_value(rng, attribute, [true])
    return context_item(
        world, rng, kind, entity, attribute, entity_pool=world.known, values=known_values(world),
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
) -> list[ContextItem]:
    """``n`` training examples, exactly ``round(n * nc_share)`` NC and ``round(n * cf_share)``
    counterfactual ones (the rest CC), in a seeded random order. Counterfactual examples avoid
    the conflict probe's facts when ``exclude_probe_facts``."""
    rng = seeded_world(world.seed, "instruct", seed, nc_share, cf_share)
    cf_facts = non_probe_facts(world) if exclude_probe_facts and cf_share > 0 else None
    return [
        instruction_example(world, rng, kind, facts=cf_facts if kind == CF else None)
        for kind in _kinds(n, nc_share, cf_share, rng)
    ]


LAYOUTS = ("prompt", "split")


def instruction_record(example: ContextItem, layout: str = "prompt") -> dict[str, object]:
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


def counterfactual_record(world: World, example: ContextItem, rng: random.Random) -> dict[str, object]:
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
    write_jsonl(path, [instruction_record(x, layout) for x in examples])
    return Path(path)


def write_counterfactual_jsonl(path: str | Path, world: World, n: int, *, seed: int = 0) -> Path:
    """Write ``n`` counterfactual-augmentation examples in the NQ-Swap layout."""
    rng = seeded_world(world.seed, "counterfactual-file", seed)
    facts = non_probe_facts(world)
    records = [counterfactual_record(world, instruction_example(world, rng, CF, facts=facts), rng) for _ in range(n)]
    write_jsonl(path, records)
    return Path(path)


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
