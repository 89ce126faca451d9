"""harness.finetune: recipes, prompt rendering, the three mitigations, checkpoint layout.

Tiny models from conftest (random weights), a few optimizer steps each, on CPU.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from handmade import run_json
from harness.checkpoints import discover, inspect_checkpoint
from harness.errors import FinetuneError
from harness.training.config import AugmentSettings, EvaluationSettings, FilterSettings, FinetuneConfig
from harness.training.data import TrainingExample, encode_example, load_instruction_data, render_example
from harness.training.mitigations import PartialFreeze, augment_counterfactual, filter_non_context_critical
from harness.training.run import recipe_hash, run_finetune
from harness.tasks.prompts import apply_format
from harness.results import RunDirectory
from harness.testing import folder_tensors

torch.set_num_threads(1)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DATA = Path(__file__).parent / "data"
PAIRS = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
         ("Japan", "Tokyo"), ("Canada", "Ottawa"), ("Egypt", "Cairo"), ("Norway", "Oslo")]


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def alpaca_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "alpaca.jsonl", [
        {"instruction": f"What is the capital of {s}?", "input": f"The capital of {s} is {c}.", "output": c}
        for s, c in PAIRS])


def config(tmp_path, model, dataset, **settings) -> FinetuneConfig:
    base = dict(model=str(model), dataset=str(dataset), output_dir=str(tmp_path / "run"), method="full",
                format="alpaca", max_steps=2, batch_size=4, save_steps=2, logging_steps=1, learning_rate=1e-3,
                max_length=256)
    return FinetuneConfig(**{**base, **settings})


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("name, check", [
    ("finetune-standard.yaml", lambda c: c.evaluation.every_n_steps == 50 and c.method == "lora"),
    ("finetune-cc-filter.yaml", lambda c: c.filter_non_context_critical.fraction == 0.25),
    ("finetune-cf-augment.yaml", lambda c: c.counterfactual_augmentation == AugmentSettings(0.1, "world_facts", 1)),
    ("finetune-qk-only.yaml", lambda c: c.qk_only and c.method == "full"),
])
def test_recipes_parse(name, check):
    recipe = FinetuneConfig.from_yaml(CONFIGS / name)
    assert check(recipe)
    assert (recipe.dense_save_steps, recipe.dense_until, recipe.save_steps) == (10, 200, 50)


@pytest.mark.parametrize("setting, message", [
    ("filter_non_context_critical: {fractoin: 0.2}", r"filter_non_context_critical\.fractoin: unknown key"),
    ("counterfactual_augmentation: {fraction: 1.5}", r"counterfactual_augmentation\.fraction: must be between"),
    ("qk_only: true\nlora: {target_modules: [v_proj]}", r"lora\.target_modules: qk_only chooses"),
    # Values transformers would refuse only once the run has started are refused on reading.
    ("lr_scheduler: cosin", r"lr_scheduler: unknown schedule 'cosin' \(did you mean 'cosine'"),
    ("dtype: bf61", r"dtype: unknown dtype 'bf61'"),
])
def test_config_errors_name_file_and_key(tmp_path, setting, message):
    path = tmp_path / "bad.yaml"
    path.write_text(f"model: m\ndataset: d.jsonl\noutput_dir: out\n{setting}\n")
    with pytest.raises(FinetuneError, match=r"bad\.yaml: " + message):
        FinetuneConfig.from_yaml(path)


def test_flags_override_the_config_and_evaluation_settings_are_checked_first(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: m\ndataset: d.jsonl\noutput_dir: out\n")
    assert FinetuneConfig.from_yaml(path, max_steps=7).max_steps == 7  # overrides win
    # Evaluation settings are checked before anything is loaded (the model does not exist).
    vllm_every_step = EvaluationSettings(tasks=["capitals"], every_n_steps=5, backend="vllm")
    with pytest.raises(FinetuneError, match="evaluation: .*use on_save=True"):
        run_finetune(config(tmp_path, tmp_path / "no-model", tmp_path / "no-data.jsonl", evaluation=vllm_every_step))


# --------------------------------------------------------------------------- data and prompts


def test_alpaca_and_messages_records(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [
        {"instruction": "Name the capital.", "input": "The capital of Peru is Lima.", "output": "Lima"},
        {"instruction": "Say hi.", "output": "hi"},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                      {"role": "assistant", "content": "4"}, {"role": "user", "content": "3+3?"},
                      {"role": "assistant", "content": "6"}]},
    ])
    first, second, chat = load_instruction_data(path)
    assert (first.instruction, first.input, first.output) == (
        "Name the capital.", "The capital of Peru is Lima.", "Lima")
    assert second.input == ""
    assert (chat.system, chat.history, chat.instruction, chat.output) == ("Be brief.", (("2+2?", "4"),), "3+3?", "6")
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "user", "content": "x"}]}])
    with pytest.raises(FinetuneError, match=r"bad\.jsonl: record 1: field 'messages'"):
        load_instruction_data(bad)


def test_prompt_templates_render_the_probe_layout(tmp_path):
    from harness.demo import corpus as C
    from harness.data import world as W

    templates = (C.FINETUNE_PROMPT_TEMPLATE, C.FINETUNE_CLOSED_BOOK_TEMPLATE)
    world = W.make_world(0)
    example = C.instruction_examples(world, 1, seed=3)[0]
    record = C.instruction_record(example, "split")
    data = load_instruction_data(write_jsonl(tmp_path / "world.jsonl", [record]))[0]
    prompt, target = render_example(data, "plain", templates=templates)
    assert prompt == example.prompt and target == " " + example.answer  # exactly the probes' prompt
    closed_book = render_example(data, "plain", templates=templates, with_context=False)[0]
    assert closed_book == record["cue"] and f"e{example.entity} " in closed_book
    no_cue = dataclasses.replace(data, record={"instruction": data.instruction})
    with pytest.raises(FinetuneError, match="closed_book_template: the record has no text field 'cue'"):
        render_example(no_cue, "plain", templates=templates, with_context=False)

    path = tmp_path / "bad.yaml"
    for line, error in (('prompt_template: "{instruction} {context}"', r"bad\.yaml: prompt_template: must use exactly"),
                        ('closed_book_template: "{input}"', r"bad\.yaml: closed_book_template: .*cannot use \{input\}"),
                        ('prompt_template: "{input!r} {instruction}"', r"bad\.yaml: prompt_template: placeholder")):
        path.write_text(f"model: m\ndataset: d.jsonl\noutput_dir: out\n{line}\n")
        with pytest.raises(FinetuneError, match=error):
            FinetuneConfig.from_yaml(path)


def test_training_prompt_is_the_evaluation_format(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    example = TrainingExample(instruction="What is the capital of Peru?", input="The capital of Peru is Lima.",
                                 output="Lima")
    prompt, target = render_example(example, "alpaca")
    assert prompt == apply_format("What is the capital of Peru?\n\nThe capital of Peru is Lima.", "alpaca")
    assert target == "Lima"  # the Alpaca prompt ends in a newline: no leading space
    closed_book = render_example(example, "alpaca", with_context=False)[0]
    assert closed_book == apply_format("What is the capital of Peru?", "alpaca")
    assert render_example(example, "plain")[1] == " Lima"

    encoded = encode_example(tokenizer, prompt, target, add_eos=True, max_length=512)
    n_prompt = encoded["labels"].count(-100)
    assert encoded["labels"][n_prompt:] == encoded["input_ids"][n_prompt:]
    assert tokenizer.decode(encoded["input_ids"][n_prompt:]) == "Lima" + tokenizer.eos_token
    assert tokenizer.decode(encoded["input_ids"][:n_prompt], skip_special_tokens=True) == prompt
    assert encode_example(tokenizer, prompt, target, add_eos=True, max_length=n_prompt) is None

    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    prompt, target = render_example(example, "chat", tokenizer)
    assert prompt == apply_format(f"{example.instruction}\n\n{example.input}", "chat", tokenizer)
    assert target == "Lima</s>\n"  # the template's end of turn is trained on
    turns = TrainingExample(instruction="3+3?", output="6", history=(("2+2?", "4"),))
    assert render_example(turns, "tulu")[0] == "<|user|>\n2+2?\n<|assistant|>\n4\n\n<|user|>\n3+3?\n<|assistant|>\n"


# --------------------------------------------------------------------------- filter


class CopyLM(torch.nn.Module):
    """A model that predicts any token already seen in the sequence (logit 20) and nothing
    else: an answer is likely exactly when its tokens appear earlier. Model-independent
    ground truth for the filter."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # engines read the device from a parameter

    def forward(self, input_ids, attention_mask=None, logits_to_keep=0, **kwargs):
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        seen = (torch.nn.functional.one_hot(input_ids, self.vocab_size) * mask[..., None]).cumsum(1).clamp(max=1)
        logits = 20.0 * seen.float()
        return SimpleNamespace(logits=logits[:, -logits_to_keep:] if logits_to_keep else logits)


def test_filter_drops_examples_answerable_without_context(tmp_path, tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    answerable = [TrainingExample(f"Repeat the word {c}.", c, f"The capital of {s} is {c}.",
                                     record={"id": f"a{i}"}) for i, (s, c) in enumerate(PAIRS[:4])]
    critical = [TrainingExample(f"What is the capital of {s}?", c, f"The capital of {s} is {c}.",
                                   record={"id": f"c{i}"}) for i, (s, c) in enumerate(PAIRS[4:])]
    # The context does not help either: a small gain, but not answerable without the context.
    hard = [TrainingExample(f"What is the capital of {s}?", c, "The river of the country is long.",
                               record={"id": f"h{i}"}) for i, (s, c) in enumerate(PAIRS[:4])]
    bare = [TrainingExample("Say Paris.", "Paris", record={"id": "bare"})]
    examples = critical[:2] + answerable[:2] + hard + bare + critical[2:] + answerable[2:]
    settings = config(tmp_path, "unused", "unused", format="plain",
                      filter_non_context_critical=FilterSettings(fraction=1 / 3))

    kept, record = filter_non_context_critical(CopyLM(len(tokenizer)), tokenizer, examples, settings, tmp_path)

    dropped = [json.loads(line) for line in (tmp_path / "filtered_out.jsonl").read_text().splitlines()]
    assert sorted(d["id"] for d in dropped) == ["a0", "a1", "a2", "a3"]
    assert kept == [e for e in examples if e not in answerable]  # order kept, examples without input kept
    assert sorted(d["filter"]["rank"] for d in dropped) == [1, 2, 3, 4]
    assert (record["candidates"], record["without_context"], record["dropped"], record["kept"]) == (12, 1, 4, 9)


# --------------------------------------------------------------------------- augmentation


@pytest.mark.parametrize("source, fraction", [("capitals", 0.2), (str(DATA / "nq_swap.jsonl"), 0.5)])
def test_augmentation_adds_the_requested_fraction(tmp_path, source, fraction):
    examples = [TrainingExample(f"Say {i}.", str(i)) for i in range(12)]
    settings = config(tmp_path, "unused", "unused",
                      counterfactual_augmentation=AugmentSettings(fraction=fraction, source=source))

    combined, record = augment_counterfactual(examples, settings, tmp_path)

    added = [e for e in combined if e not in examples]
    assert len(added) == round(fraction * 12 / (1 - fraction)) == record["added"]
    assert len(added) / len(combined) == pytest.approx(fraction, abs=0.03)
    written = [json.loads(line) for line in (tmp_path / "augmented.jsonl").read_text().splitlines()]
    assert [w["output"] for w in written] == [e.output for e in added]
    for example in added:  # the target follows the (counterfactual) context
        assert example.output in example.input
    if source.endswith("nq_swap.jsonl"):
        records = [json.loads(line) for line in Path(source).read_text().splitlines()]
        substitutes = {r["question"]: r["sub_answer"] for r in records}
        assert all(e.output in substitutes[e.instruction] for e in added)  # the context's, not the real answer
        assert record["pool"] == 2 and record["unique"] == 2 and "note" in record  # cycled


# --------------------------------------------------------------------------- q/k only


def _changed(before: dict, after: dict) -> set[str]:
    assert before.keys() == after.keys()
    return {name for name in before if not torch.equal(before[name], after[name])}


def build_tiny_neox(path: Path, tokenizer_dir: Path) -> Path:
    from transformers import AutoTokenizer, GPTNeoXConfig, GPTNeoXForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(GPTNeoXConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=256, tie_word_embeddings=False))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("arch", ["gpt2", "llama", "neox"])
def test_qk_only_full_finetuning_changes_only_q_and_k(tmp_path, alpaca_file, tiny_gpt2_dir, tiny_llama_dir,
                                                       tiny_tokenizer_dir, arch):
    model_dir = {"gpt2": tiny_gpt2_dir, "llama": tiny_llama_dir}.get(arch) or build_tiny_neox(
        tmp_path / "neox", tiny_tokenizer_dir)
    # Weight decay would shrink the held value weights if they were not put back.
    out = run_finetune(config(tmp_path, model_dir, alpaca_file, qk_only=True, weight_decay=0.1, learning_rate=1e-2))

    before, after = folder_tensors(model_dir), folder_tensors(out / "checkpoint-2")
    changed = _changed(before, after)
    trained = json.loads((out / "mitigations.json").read_text())["qk_only"]["trained"]
    if arch == "llama":
        assert changed == {n for n in before if n.endswith(("q_proj.weight", "k_proj.weight"))}
        assert set(trained) == changed
        return
    fused = "c_attn" if arch == "gpt2" else "query_key_value"
    assert changed == {n for n in before if f".{fused}." in n}  # weight and bias of each layer
    for name in changed:
        old, new = before[name], after[name]
        if arch == "gpt2":  # Conv1D (in, 3 * out): columns [q | k | v]
            old, new = old.reshape(-1, 3, 64), new.reshape(-1, 3, 64)
        else:  # Linear (3 * out, in): rows per head [q k v], head size 16
            old, new = old.reshape(4, 3, 16, -1), new.reshape(4, 3, 16, -1)
            old, new = old.transpose(0, 1), new.transpose(0, 1)
        part = (slice(None), 2) if arch == "gpt2" else (2,)
        assert torch.equal(old[part], new[part]), f"{name}: value part moved"
        for qk in (0, 1):
            index = (slice(None), qk) if arch == "gpt2" else (qk,)
            assert not torch.equal(old[index], new[index]), f"{name}: q/k part {qk} did not train"


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_qk_only_lora_targets_only_q_and_k(tmp_path, alpaca_file, tiny_gpt2_dir, tiny_llama_dir, arch):
    model_dir = tiny_gpt2_dir if arch == "gpt2" else tiny_llama_dir
    out = run_finetune(config(tmp_path, model_dir, alpaca_file, method="lora", qk_only=True, weight_decay=0.1,
                              learning_rate=1e-2))

    adapter = out / "checkpoint-2"
    targets = set(json.loads((adapter / "adapter_config.json").read_text())["target_modules"])
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    if arch == "llama":
        assert targets == {"q_proj", "k_proj"}
        assert {n.split(".")[-3] for n in weights} == {"q_proj", "k_proj"}
        return
    assert targets == {"c_attn"}
    for name, tensor in weights.items():
        if "lora_B" in name:  # (3 * 64, r): rows [q | k | v]
            assert torch.count_nonzero(tensor[128:]) == 0, f"{name}: the value rows moved"
            assert torch.count_nonzero(tensor[:128]) > 0, f"{name}: q/k rows did not train"


def test_partial_freeze_zeroes_the_gradient_of_the_held_slices():
    weight = torch.nn.Parameter(torch.randn(3, 4))
    freeze = PartialFreeze(weight, 1, torch.tensor([1, 3]))
    (weight * torch.arange(1.0, 13.0).reshape(3, 4)).sum().backward()
    assert torch.count_nonzero(weight.grad[:, [1, 3]]) == 0 and torch.count_nonzero(weight.grad[:, [0, 2]]) == 6
    start = weight.detach().clone()
    with torch.no_grad():
        weight.add_(1.0)
    freeze.restore()
    assert torch.equal(weight[:, [1, 3]], start[:, [1, 3]]) and torch.equal(weight[:, [0, 2]], start[:, [0, 2]] + 1)


# --------------------------------------------------------------------------- the run


def test_cli_finetune_writes_a_sweepable_run(tmp_path, alpaca_file, tiny_tied_llama_dir, capsys):
    from harness.checkpoints import training_progress
    from harness.cli import main

    recipe = dataclasses.asdict(config(tmp_path, tiny_tied_llama_dir, alpaca_file, max_steps=6, save_steps=4,
                                       dense_save_steps=1, dense_until=2, logging_steps=4,
                                       filter_non_context_critical={"fraction": 0.25}))
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps({k: v for k, v in recipe.items() if v is not None}))  # JSON is YAML

    assert main(["finetune", "--config", str(path)]) == 0

    out = tmp_path / "run"
    # The closing table: one aligned row per saved checkpoint, with the tokens the trainer counted
    # (what `harness compare --x tokens` reads).
    printed = capsys.readouterr().out
    table = [line for line in printed.splitlines() if line.startswith("checkpoint") and ":" not in line]
    assert table[0].split() == ["checkpoint", "step", "epoch", "tokens", "seen", "last", "logged", "loss"]
    # A loss is shown by the step it was logged at (every 4 steps here), not as if logged at a later save.
    losses = {line.split()[0]: line.split()[4:] for line in table[1:]}
    assert losses["checkpoint-1"] == ["-"] and len(losses["checkpoint-4"]) == 1
    assert losses["checkpoint-6"][1:] == ["(step", "4)"], losses
    assert f"(evaluate them: harness evaluate --checkpoints {out} --format {recipe['format']})" in printed
    assert [line.split()[:2] for line in table[1:]] == [[f"checkpoint-{s}", str(s)] for s in (1, 2, 4, 6)]
    assert len({re.search(r"\s{2,}\S", line).end() for line in table}) == 1  # columns line up
    tokens = [training_progress(out / f"checkpoint-{s}")["num_input_tokens_seen"] for s in (1, 2, 4, 6)]
    assert tokens == sorted(tokens) and tokens[0] > 0
    assert [int(line.split()[3].replace(",", "")) for line in table[1:]] == tokens
    checkpoints = discover(out)
    assert [(c.label, c.step) for c in checkpoints] == [("checkpoint-1", 1), ("checkpoint-2", 2),
                                                       ("checkpoint-4", 4), ("checkpoint-6", 6)]
    for checkpoint in checkpoints:
        folder = Path(checkpoint.model)
        assert inspect_checkpoint(folder) is None and checkpoint.adapter is None
        assert (folder / "tokenizer.json").is_file() and (folder / "trainer_state.json").is_file()
        assert not (folder / "optimizer.pt").exists()
    # Tied embeddings stay tied: one stored matrix, shared again on load.
    from transformers import AutoModelForCausalLM

    final = out / "checkpoint-6"
    with safe_open(str(final / "model.safetensors"), "pt") as stored:
        assert "lm_head.weight" not in stored.keys()
    model = AutoModelForCausalLM.from_pretrained(final)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert not torch.equal(folder_tensors(final)["model.embed_tokens.weight"],
                           folder_tensors(tiny_tied_llama_dir)["model.embed_tokens.weight"])

    mitigations = json.loads((out / "mitigations.json").read_text())
    assert mitigations["filter_non_context_critical"]["dropped"] == 2
    assert len((out / "filtered_out.jsonl").read_text().splitlines()) == 2
    with pytest.raises(FinetuneError, match="already holds checkpoints"):
        run_finetune(FinetuneConfig.from_yaml(path))


def test_lora_run_saves_adapters_and_evaluates_in_training(tmp_path, alpaca_file, tiny_llama_dir):
    evaluation = EvaluationSettings(tasks=[str(DATA / "cf_world_facts.json")], every_n_steps=1, conjugates=["en"])
    out = run_finetune(config(tmp_path, tiny_llama_dir, alpaca_file, method="lora", evaluation=evaluation))

    (checkpoint,) = discover(out)
    assert checkpoint.adapter == str(out / "checkpoint-2") and checkpoint.model == str(tiny_llama_dir)
    assert (out / "checkpoint-2" / "tokenizer.json").is_file()
    assert json.loads((out / "mitigations.json").read_text()) == {}
    results = RunDirectory(out / "context-reliance")
    assert {row.checkpoint for row in results.read_summary()} == {"step-0", "step-1", "step-2"}
    assert run_json(results.path)["config"]["format"] == "alpaca"  # evaluated in the training format
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "ctx/cf_world_facts/conflicting/context_rate" in e] == [0, 1, 2]


@pytest.mark.slow
def test_finetune_runs_sweep_and_compare_end_to_end(tmp_path, alpaca_file, tiny_llama_dir, capsys):
    """`harness finetune` (standard and each mitigation) -> `harness evaluate --checkpoints`
    -> `harness compare`, all through the CLI."""
    from harness.cli import main

    mitigations = {
        "standard": {},
        "cc_filter": {"filter_non_context_critical": {"fraction": 0.25}},
        "cf_augment": {"counterfactual_augmentation": {"fraction": 0.25, "source": str(DATA / "nq_swap.jsonl")}},
        "qk_only": {"qk_only": True},
    }
    results = []
    for name, settings in mitigations.items():
        recipe = dataclasses.asdict(config(tmp_path, tiny_llama_dir, alpaca_file, output_dir=str(tmp_path / name),
                                           max_steps=4, save_steps=2, progress=False, **settings))
        path = tmp_path / f"{name}.yaml"
        path.write_text(json.dumps({k: v for k, v in recipe.items() if v is not None}))
        assert main(["finetune", "--config", str(path)]) == 0
        output = tmp_path / "results" / name
        assert main(["evaluate", "--checkpoints", str(tmp_path / name), "--tasks", str(DATA / "cf_world_facts.json"),
                     "--backend", "hf", "--format", "alpaca", "--conjugates", "en", "--output", str(output)]) == 0
        rows = RunDirectory(output).read_summary()
        assert {r.checkpoint for r in rows} == {"checkpoint-2", "checkpoint-4"}
        results.append(str(output))
    assert main(["compare", *results, "--output", str(tmp_path / "compare")]) == 0
    html = (tmp_path / "compare" / "compare.html").read_text()
    for name in mitigations:
        assert name in html


def test_finetune_seeds_write_one_run_per_seed_of_one_recipe(tmp_path, alpaca_file, tiny_llama_dir, capsys):
    from harness.cli import main

    recipe = dataclasses.asdict(config(tmp_path, tiny_llama_dir, alpaca_file, max_steps=2, save_steps=2))
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps({k: v for k, v in recipe.items() if v is not None}))

    assert main(["finetune", "--config", str(path), "--seeds", "0,1", "--save-steps", "1"]) == 0

    records = [json.loads((tmp_path / "run" / f"seed-{seed}" / "recipe.json").read_text()) for seed in (0, 1)]
    assert [r["seed"] for r in records] == [0, 1] and records[0]["recipe"] == records[1]["recipe"]
    # --save-steps wins over the recipe's save_steps (2): a checkpoint at every step.
    assert all((tmp_path / "run" / f"seed-{seed}" / f"checkpoint-{step}").is_dir() for seed in (0, 1) for step in (1, 2))
    # Another recipe (another learning rate) has another hash; the seed does not change it.
    assert recipe_hash(config(tmp_path, tiny_llama_dir, alpaca_file, learning_rate=1e-4)) != records[0]["recipe"]
    assert recipe_hash(config(tmp_path, tiny_llama_dir, alpaca_file, max_steps=2, save_steps=1,
                              seed=5)) == records[0]["recipe"]
    assert "seed-1" in capsys.readouterr().out


def test_finetune_seeds_must_differ(tmp_path, alpaca_file, tiny_llama_dir):
    with pytest.raises(FinetuneError, match="seeds"):
        config(tmp_path, tiny_llama_dir, alpaca_file, seeds=[1, 1]).validate()


@pytest.mark.parametrize("settings", [{"seeds": [0, -1]}, {"seed": -1}])
def test_a_negative_seed_is_refused_naming_its_key(tmp_path, alpaca_file, tiny_llama_dir, settings):
    # numpy's seeding would refuse it later, deep inside the Trainer, with a traceback
    key = next(iter(settings))
    with pytest.raises(FinetuneError, match=f"finetune config: {key}: .*negative"):
        config(tmp_path, tiny_llama_dir, alpaca_file, **settings).validate()
