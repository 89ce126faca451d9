"""The demo's synthetic world (harness.data.world) and base-model pretraining (harness.pretrain)."""

from __future__ import annotations

import json
import re
from itertools import islice

import pytest

from harness.data import BUILDERS
from harness.data import world as W
from harness.demo import corpus as C
from harness.examples import ALTERNATIVE, CONTEXT, PARAMETRIC, TARGET
from harness.tasks.prompts import apply_format, continuation_for
from harness.tasks import render_template


@pytest.fixture(scope="module")
def world():
    return W.make_world(0)


@pytest.fixture(scope="module")
def tokenizer(world):
    return C.build_tokenizer(world)


def words(text: str) -> list[str]:
    return text.split()


def sentence_pattern() -> str:
    """A regex matching any one world sentence."""
    alternatives = []
    for attribute, templates in W.TEMPLATES.items():
        values = "|".join(W.VALUES[attribute])
        for template in templates:
            pattern = re.escape(template).replace(r"\{e\}", r"e\d+").replace(r"\{v\}", f"(?:{values})")
            alternatives.append(pattern)
    return "(?:" + "|".join(alternatives) + ")"


# ----------------------------------------------------------------------------- the world


def test_world_is_deterministic(world):
    again = W.make_world(0)
    assert again == world
    assert W.make_world(1).known_values != world.known_values
    # the known facts do not depend on the other splits' sizes
    assert W.make_world(0, n_unknown=100).known_values == world.known_values
    small_pool = list(islice(C.pretraining_documents(world, 0, bio_share=0.0, known_share=0.0, reading_pool=10), 50))
    assert {w for doc in small_pool for w in words(doc) if re.fullmatch(r"e\d+", w)} <= {f"e{i}" for i in range(100, 110)}


def test_splits_and_sizes(world):
    assert len(world.names) == 600
    assert list(world.known) == list(range(0, 100))
    assert list(world.unknown) == list(range(100, 500))
    assert list(world.heldout) == list(range(500, 600))
    assert len(world.known_facts()) == 400
    assert all(len(W.VALUES[a]) == 30 and len(set(W.VALUES[a])) == 30 for a in W.ATTRIBUTES)
    assert all(len(W.TEMPLATES[a]) == 3 for a in W.ATTRIBUTES)
    assert 740 <= len(W.vocabulary(world)) <= 770


def test_recall_cues_name_their_attribute():
    """A template's words before the value never begin another attribute's template."""
    for attribute, templates in W.TEMPLATES.items():
        for t in range(3):
            cue = W.recall_prompt("e1", attribute, t).split()
            for other, other_templates in W.TEMPLATES.items():
                for text in other_templates:
                    if other != attribute:
                        assert text.format(e="e1", v="X").split()[: len(cue)] != cue, (cue, text)


def test_every_entity_and_value_is_one_token(world, tokenizer):
    unk = tokenizer.unk_token_id
    everything = list(world.names) + [v for a in W.ATTRIBUTES for v in W.VALUES[a]]
    for word in everything:
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and ids[0] != unk, word
        # the answer continuation (with its leading space) is the same single token
        assert tokenizer(" " + word, add_special_tokens=False)["input_ids"] == ids
    assert tokenizer("e5 lives in lima .")["input_ids"] == tokenizer("e5 lives in lima .", add_special_tokens=False)["input_ids"]


def test_text_tokenizes_without_unknown_words(world, tokenizer):
    documents = list(islice(C.pretraining_documents(world, 0), 200))
    examples = C.instruction_examples(world, 200, cf_share=0.2)
    texts = documents + [x.prompt + " " + x.answer for x in examples]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert len(ids) == len(words(text))
        assert tokenizer.decode(ids) == text


# ------------------------------------------------------------------------- pretraining data


def test_documents(world):
    rng = W.seeded_world("test")
    bio = C.bio_document(world, rng)
    assert bio.count(" .") == 5
    assert all(int(w[1:]) in world.known for w in words(bio) if re.fullmatch(r"e\d+", w))
    for _ in range(200):
        doc = C.reading_document(world, rng)
        parts = doc.split(" again , ")
        statements, restatements = parts[0], parts[1:]
        assert 3 <= statements.count(" .") <= 5
        assert 2 <= len(restatements) <= 4
        for restated in restatements:
            # the restated fact (entity and value) appears among the statements above
            entity = next(w for w in words(restated) if re.fullmatch(r"e\d+", w))
            value = next(w for w in words(restated) if any(w in W.VALUES[a] for a in W.ATTRIBUTES))
            assert entity in words(statements) and value in words(statements)


def test_pretraining_checks(world):
    recall = C.pretraining_recall_items(world)
    assert len(recall) == 400 and recall[0] == ("e0 lives in", world.value(0, "city"))
    for restate in C.RESTATE_MODES:
        items = C.pretraining_open_book_items(world, 100, restate=restate)
        assert items == C.pretraining_open_book_items(world, 100, restate=restate)
        for prompt, answer in items:
            body, query = prompt.rsplit(" again , ", 1)
            assert words(body).count(answer) == 1 and answer not in words(query)
            entities = [int(w[1:]) for w in words(prompt) if re.fullmatch(r"e\d+", w)]
            assert all(e in world.heldout for e in entities)
            if restate == "same":
                assert f"{query} {answer} ." in body


def test_heldout_entities_never_in_training_data(world, tmp_path):
    heldout = {world.names[e] for e in world.heldout}
    for doc in islice(C.pretraining_documents(world, 0), 3000):
        assert not heldout & set(words(doc))
    for example in C.instruction_examples(world, 3000, cf_share=0.1):
        assert not heldout & set(words(example.prompt))
    path = C.write_counterfactual_jsonl(tmp_path / "cf.jsonl", world, 300)
    for line in path.read_text().splitlines():
        record = json.loads(line)
        assert not heldout & set(words(record["sub_context"] + " " + record["org_context"]))


# ------------------------------------------------------------------------ instruction tuning


def test_instruction_format(world):
    pattern = re.compile(
        rf"context : ({sentence_pattern()}) ({sentence_pattern()}) ({sentence_pattern()}) "
        r"question : (where does e\d+ live|what is the job of e\d+|what colour does e\d+ like|what sport does e\d+ play) \? answer :"
    )
    for x in C.instruction_examples(world, 300, cf_share=0.2):
        assert pattern.fullmatch(x.prompt), x.prompt
        assert len(x.sentences) == 3
        assert x.answer in W.VALUES[x.attribute]
        queried = x.sentences[x.query_position]
        assert f"e{x.entity}" in words(queried) and x.answer in words(queried)
        assert f"e{x.entity}" in words(x.question)
        # the answer is the only value of the queried attribute that the context states for
        # the queried entity, and no distractor states the answer
        for i, s in enumerate(x.sentences):
            if i != x.query_position:
                assert x.answer not in words(s)
                assert not (f"e{x.entity}" in words(s) and any(v in words(s) for v in W.VALUES[x.attribute]))
        if x.kind == C.NC:
            assert x.entity in world.known and x.answer == x.true_value
        elif x.kind == C.CC:
            assert x.entity in world.unknown and x.true_value is None
            assert all(int(w[1:]) in world.unknown for w in words(x.context) if re.fullmatch(r"e\d+", w))
        else:
            assert x.entity in world.known and x.answer != x.true_value
            assert x.true_value not in words(x.context)


def test_the_note_example_layout():
    assert W.render_prompt("e1 lives in lima . e1 plays golf . e2 is from rome .", "where does e1 live ?") == (
        "context : e1 lives in lima . e1 plays golf . e2 is from rome . question : where does e1 live ? answer :"
    )


@pytest.mark.parametrize("nc_share, cf_share", [(0.5, 0.0), (0.2, 0.0), (0.8, 0.0), (0.5, 0.1), (0.0, 0.0), (1.0, 0.0)])
def test_nc_share_is_exact(world, nc_share, cf_share):
    examples = C.instruction_examples(world, 500, nc_share=nc_share, cf_share=cf_share)
    kinds = [x.kind for x in examples]
    assert kinds.count(C.NC) == round(500 * nc_share)
    assert kinds.count(C.CF) == round(500 * cf_share)
    assert kinds.count(C.CC) == 500 - round(500 * nc_share) - round(500 * cf_share)


def test_training_data_is_seeded(world):
    first = C.instruction_examples(world, 50, seed=3)
    assert first == C.instruction_examples(world, 50, seed=3)
    assert first != C.instruction_examples(world, 50, seed=4)
    assert list(islice(C.pretraining_documents(world, 0), 20)) == list(islice(C.pretraining_documents(world, 0), 20))


def test_jsonl_files(world, tmp_path):
    path = C.write_instruction_jsonl(tmp_path / "train.jsonl", world, 100, nc_share=0.5)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 100
    assert sum(r["kind"] == "nc" for r in records) == 50
    for r in records:
        assert r["input"] == ""
        prompt = apply_format(r["instruction"], "plain")
        assert prompt == W.render_prompt(r["context"], r["question"])
        assert prompt + continuation_for(prompt, r["output"]) == f"{prompt} {r['output']}"
    split = [json.loads(line) for line in
             C.write_instruction_jsonl(tmp_path / "split.jsonl", world, 20, layout="split").read_text().splitlines()]
    for r in split:
        assert W.PROMPT_TEMPLATE.format(context=r["input"], question=r["instruction"]) == W.render_prompt(r["context"], r["question"])
        assert r["instruction"] == r["question"] and r["input"] == r["context"]
    cf = [json.loads(line) for line in C.write_counterfactual_jsonl(tmp_path / "cf.jsonl", world, 50).read_text().splitlines()]
    probe_facts = {(x.entity, x.attribute) for x in W.conflict_items(world)}
    for r in cf:
        assert set(r) == {"question", "org_context", "org_answer", "sub_context", "sub_answer"}
        assert r["org_answer"] != r["sub_answer"]
        assert r["sub_answer"] in words(r["sub_context"]) and r["sub_answer"] not in words(r["org_context"])
        assert r["org_answer"] in words(r["org_context"]) and r["org_answer"] not in words(r["sub_context"])
        entity = int(next(w for w in words(r["question"]) if re.fullmatch(r"e\d+", w))[1:])
        attribute = next(a for a, q in W.QUESTIONS.items() if q.format(e=f"e{entity}") == r["question"])
        assert world.value(entity, attribute) == r["org_answer"]
        assert (entity, attribute) not in probe_facts


# ---------------------------------------------------------------------------------- probes


def test_probe_sizes_and_builders(world):
    conflict, recall, open_book = BUILDERS["world_conflict"](), BUILDERS["world_recall"](), BUILDERS["world_open_book"]()
    assert (len(conflict), len(recall), len(open_book)) == (300, 400, 400)
    for examples in (conflict, recall, open_book):
        assert len({x.id for x in examples}) == len(examples)
    assert {x.condition for x in conflict} == {"conflicting"}
    assert {x.condition for x in recall} == {"closed_book"}
    assert {x.condition for x in open_book} == {"open_book"}
    assert {(x.meta["entity"], x.meta["attribute"]) for x in recall} == {
        (f"e{e}", a) for e, a in world.known_facts()}
    assert conflict == BUILDERS["world_conflict"]()  # deterministic
    assert open_book == BUILDERS["world_open_book"]()
    assert len(BUILDERS["world_conflict"](limit=10)) == 10
    assert BUILDERS["world_conflict"](world_seed=1) != conflict


def test_conflict_probe_states_the_wrong_value_never_the_true_one(world):
    for x in BUILDERS["world_conflict"]():
        context, true, wrong = x.fields["context"], x.answers[PARAMETRIC][0], x.answers[CONTEXT][0]
        entity, attribute = x.meta["entity"], x.meta["attribute"]
        assert int(entity[1:]) in world.known
        assert true == world.value(int(entity[1:]), attribute) and wrong != true
        assert wrong in words(context) and true not in words(context)
        assert words(context).count(wrong) == 1
        assert x.fields["question"] == W.QUESTIONS[attribute].format(e=entity)
        assert len(re.findall(r" \.", " " + context)) == 3
        prompt = render_template(W.PROMPT_TEMPLATE, x.fields)
        assert prompt.startswith("context : ") and prompt.endswith(" answer :")


def test_open_book_and_recall_probes(world):
    for x in BUILDERS["world_open_book"]():
        assert int(x.meta["entity"][1:]) in world.heldout
        assert all(int(w[1:]) in world.heldout for w in words(x.fields["context"]) if re.fullmatch(r"e\d+", w))
        target, alternative = x.answers[TARGET][0], x.answers[ALTERNATIVE][0]
        assert words(x.fields["context"]).count(target) == 1 and target != alternative
    for x in BUILDERS["world_recall"]():
        assert set(x.fields) == {"question", "cue"}
        assert x.fields["cue"].startswith(x.meta["entity"]) or x.fields["cue"].startswith("the ")
        assert x.answers[TARGET][0] != x.answers[ALTERNATIVE][0]
        assert render_template(W.CLOSED_BOOK_TEMPLATE, x.fields).startswith("question : ")


def test_probes_are_seeded_apart_from_training(world):
    """Training streams with any seed never reproduce a probe prompt wholesale (distinct RNG
    streams), and probes do not depend on the training seed."""
    probe_prompts = {x.prompt for x in W.conflict_items(world)}
    training = C.instruction_examples(world, 2000, cf_share=0.5, exclude_probe_facts=False)
    assert not probe_prompts & {x.prompt for x in training}


# ------------------------------------------------------------------------------ pretraining


def test_tiny_pretraining_run_gives_a_loadable_untied_model(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.demo.pretrain import PretrainConfig, pretrain, read_info

    config = PretrainConfig(max_steps=3, eval_every=3, batch_size=4, warmup_steps=2, n_open_book_check=20)
    out = tmp_path / "base"
    result = pretrain(out, config, threads=1, progress=False)
    assert result.steps == 3 and not result.cached and not result.reached
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.tie_word_embeddings is False
    assert type(model).__name__ == "GPT2LMHeadModel"
    assert model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr()
    assert not torch.equal(model.lm_head.weight, model.transformer.wte.weight)
    assert next(model.parameters()).dtype == torch.float32
    assert (out / "model.safetensors").exists()
    from safetensors.torch import load_file
    assert "lm_head.weight" in load_file(out / "model.safetensors")
    text = "context : e5 lives in lima . question : where does e5 live ? answer : lima"
    ids = tokenizer(text)["input_ids"]
    assert len(ids) == len(text.split()) and tokenizer.decode(ids) == text
    assert tokenizer.pad_token == W.PAD and tokenizer.eos_token == W.EOS
    assert model.config.vocab_size == len(tokenizer)
    with torch.no_grad():
        out_ids = model.generate(torch.tensor([ids[:-1]]), max_new_tokens=1, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
    assert out_ids.shape == (1, len(ids))
    info = read_info(out)
    assert info["finished"] and info["settings_hash"] == config.settings_hash() and info["steps"] == 3
    # a second call with the same settings reuses the folder; other settings retrain
    assert pretrain(out, config, progress=False).cached
    assert config.settings_hash() != PretrainConfig(max_steps=4, eval_every=3, batch_size=4).settings_hash()


def test_packed_documents_train_as_padded_ones(world, tokenizer):
    """Packing a batch's documents into shared rows gives the loss and gradients of one
    document a padded row (the layout pretraining used before packing)."""
    import torch

    from harness.demo.pretrain import PretrainConfig, _encode, _pad, make_model, pack_documents

    config = PretrainConfig(n_embd=32, n_inner=64, n_head=2, n_layer=2)
    model = make_model(config, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
    rows = _encode(tokenizer, list(islice(C.pretraining_documents(world, 0), 16)), eos=True)
    packed = pack_documents(rows, tokenizer.pad_token_id, config.n_positions)
    assert packed["input_ids"].shape[0] < len(rows)  # shared rows, so fewer positions
    assert packed["input_ids"].numel() < len(rows) * max(map(len, rows))

    def loss_and_grads(**batch):
        model.zero_grad()
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.parameters()]

    ids, mask = _pad(rows, tokenizer.pad_token_id, config.n_positions)
    padded_loss, padded_grads = loss_and_grads(input_ids=ids, attention_mask=mask,
                                               labels=ids.masked_fill(mask == 0, -100))
    packed_loss, packed_grads = loss_and_grads(**packed)
    assert packed_loss == pytest.approx(padded_loss, abs=1e-5)
    for a, b in zip(padded_grads, packed_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_packing_check_catches_documents_that_see_each_other(world, tokenizer, monkeypatch):
    import torch

    from harness.demo import pretrain as P
    from harness.errors import HarnessError

    config = P.PretrainConfig(n_embd=32, n_inner=64, n_head=2, n_layer=2)
    model = P.make_model(config, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
    first, second = P._encode(tokenizer, ["e5 lives in lima", "e6 is from"], eos=True)
    P.check_packing(model, first, second, tokenizer.pad_token_id)
    # Positions that never restart make the pair one document: the check must say so.
    unpacked = P.pack_documents
    monkeypatch.setattr(P, "pack_documents", lambda rows, pad, cap: {
        **unpacked(rows, pad, cap), "position_ids": torch.arange(len(rows[0]) + len(rows[1]))[None]})
    with pytest.raises(HarnessError, match="attend to each other"):
        P.check_packing(model, first, second, tokenizer.pad_token_id)
