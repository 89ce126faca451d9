"""Tiny models, tokenizers and checkpoint runs for tests and benchmarks, all built offline.

Nothing here downloads anything; every builder writes a folder that transformers and vLLM
load like a real checkpoint. The test suite (``tests/conftest.py``) and the benchmarks
(``bench/``) build their fixtures with these functions.

Tokenizer
    :func:`build_tiny_tokenizer` — a byte-level BPE tokenizer (vocabulary of about 500)
    trained with the ``tokenizers`` library on a small corpus (:data:`CORPUS`), saved as a
    transformers fast tokenizer. It prepends ``<s>`` (BOS) to every encoded text, ends with
    ``</s>`` (EOS) and pads with ``<pad>``.

Models (float32 safetensors folders, tokenizer files beside the weights)
    :func:`build_tiny_model` — ``LlamaForCausalLM`` or ``GPT2LMHeadModel``, tied or untied
    embeddings. Hidden size 64, 2 layers, 2 heads of 32 (vLLM's CPU attention needs a head
    size of at least 32), 256 positions.

Runs in HF Trainer layout
    :func:`build_checkpoint_run` — ``<run>/checkpoint-<step>`` folders of full models with
    different weights and a ``trainer_state.json``; :func:`build_lora_run` — the same with PEFT
    LoRA adapters over one base; :func:`checkpoints_of` — a run's folders as
    :class:`harness.checkpoints.Checkpoint` objects without the discovery module;
    :func:`folder_tensors` — every tensor a folder's safetensors files hold, by name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np


_SUBJECTS = [
    "France", "Germany", "Italy", "Spain", "Japan", "Canada", "Brazil", "Egypt", "Kenya",
    "Norway", "Peru", "India", "China", "Chile", "Greece", "Poland", "Sweden", "Mexico",
]
_CAPITALS = [
    "Paris", "Berlin", "Rome", "Madrid", "Tokyo", "Ottawa", "Brasilia", "Cairo", "Nairobi",
    "Oslo", "Lima", "Delhi", "Beijing", "Santiago", "Athens", "Warsaw", "Stockholm", "Mexico",
]
_WORDS = (
    "the a of to in is was and that for on with as by at from it this which are be answer "
    "question context capital city country river mountain language currency people famous "
    "writer painter born died wrote book song year old new first last large small red blue "
    "green yellow black white one two three four five six seven eight nine ten repeat "
    "capitalise translate instruction response user assistant system please tell me what who "
    "where when why how true false yes no because therefore according passage following"
).split()

#: The corpus the tiny tokenizer is trained on (deterministic).
CORPUS: list[str] = (
    [f"The capital of {s} is {c}." for s, c in zip(_SUBJECTS, _CAPITALS)]
    + [f"Question: What is the capital of {s}?\nAnswer: {c}" for s, c in zip(_SUBJECTS, _CAPITALS)]
    + [f"Context: {c} is in {s}.\n### Response:\n{c}" for s, c in zip(_SUBJECTS, _CAPITALS[::-1])]
    + [" ".join(_WORDS[i: i + 12]) for i in range(0, len(_WORDS), 3)]
    + [" ".join(reversed(_WORDS[i: i + 9])) + "." for i in range(0, len(_WORDS), 4)]
    + ["0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 100 1000 2024",
       "A B C D E F G H I J K L M N O P Q R S T U V W X Y Z",
       "Hello, world! How are you? I'm fine; thanks: (yes) [no] {maybe} - ok..."]
)

TOKENIZER_VOCAB_SIZE = 500
BOS, EOS, PAD = "<s>", "</s>", "<pad>"


def _ascii_byte_alphabet() -> list[str]:
    """Byte-level symbols of the 128 ASCII bytes (GPT-2's byte-to-unicode map).

    Only ASCII bytes are in the vocabulary, so every token decodes to valid text on its own:
    random models then never emit half a UTF-8 character, which engines may render
    differently (vLLM holds incomplete bytes back, ``tokenizer.decode`` prints U+FFFD).
    Consequence: the tiny tokenizer cannot encode non-ASCII text.
    """
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return [mapping[b] for b in range(128)]


def build_tiny_tokenizer(path: Path, vocab_size: int = TOKENIZER_VOCAB_SIZE):
    """Train a byte-level BPE tokenizer (ASCII bytes only) on :data:`CORPUS`; save it as a
    transformers fast tokenizer in ``path``; return the ``PreTrainedTokenizerFast``.

    Encoding prepends ``<s>`` (like Llama tokenizers); ``</s>`` is EOS, ``<pad>`` padding.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=_ascii_byte_alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        model_max_length=256,
    )
    path.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(path))
    return fast


HIDDEN, LAYERS, HEADS, POSITIONS = 64, 2, 2, 256


def build_tiny_model(
    path: Path,
    tokenizer_dir: Path,
    *,
    arch: str = "llama",
    tied: bool = False,
    seed: int = 0,
    init_range: float = 0.2,
    positions: int = POSITIONS,
) -> Path:
    """Write a tiny random causal LM (float32 safetensors) plus the tokenizer into ``path``.

    Args:
        arch: ``"llama"`` (``LlamaForCausalLM``) or ``"gpt2"`` (``GPT2LMHeadModel``).
        tied: ``tie_word_embeddings`` (GPT-2 models are tied by default in transformers).
        seed: torch seed of the random weights; different seeds give different checkpoints.
        init_range: std of the weight init. Larger than the usual 0.02 so greedy choices have
            clear margins (no near-ties that float noise could flip between engines).
        positions: the context window (``max_position_embeddings`` / ``n_positions``).
    """
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    ids = dict(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    if arch == "llama":
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN,
            num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=HEADS,
            max_position_embeddings=positions, tie_word_embeddings=tied,
            initializer_range=init_range, **ids,
        )
        model = LlamaForCausalLM(config)
    elif arch == "gpt2":
        config = GPT2Config(
            vocab_size=len(tokenizer), n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS,
            n_positions=positions, tie_word_embeddings=tied, initializer_range=init_range,
            **ids,
        )
        model = GPT2LMHeadModel(config)
    else:
        raise ValueError(f"unknown arch {arch!r}")
    model = model.to(torch.float32).eval()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path), safe_serialization=True)
    tokenizer.save_pretrained(str(path))
    return path


def write_trainer_state(folder: Path, step: int, max_steps: int) -> None:
    """A minimal HF ``trainer_state.json`` as the Trainer writes it into ``checkpoint-N``."""
    state = {
        "global_step": step,
        "max_steps": max_steps,
        "epoch": step / max_steps,
        "log_history": [{"step": step, "loss": round(3.0 / (1 + step / 10), 4), "epoch": step / max_steps}],
        "best_model_checkpoint": None,
        "is_world_process_zero": True,
    }
    (folder / "trainer_state.json").write_text(json.dumps(state, indent=2))


def folder_tensors(folder: str | Path) -> dict:
    """Every tensor in ``folder``'s ``*.safetensors`` files, by name (to compare checkpoints' weights)."""
    from safetensors.torch import load_file

    return {name: tensor for path in sorted(Path(folder).glob("*.safetensors")) for name, tensor in load_file(path).items()}


def build_checkpoint_run(run: Path, tokenizer_dir: Path, *, arch: str = "llama", tied: bool = False,
                         steps: Sequence[int] = (10, 20, 30), seed: int = 0) -> Path:
    """``run/checkpoint-<step>`` for each step: a full tiny model whose weights differ for every
    step (seed ``seed + index``), its tokenizer and ``trainer_state.json``. Returns ``run``."""
    for i, step in enumerate(steps):
        folder = build_tiny_model(run / f"checkpoint-{step}", tokenizer_dir, arch=arch, tied=tied, seed=seed + i)
        write_trainer_state(folder, step, max(steps))
    return run


def checkpoints_of(run: Path, base: Path | None = None) -> list:
    """``Checkpoint`` objects for the ``checkpoint-N`` folders of ``run``, in step order.

    With ``base``, the folders are adapters over that base model (``Checkpoint.adapter``).
    A stand-in for the discovery module so backend tests do not depend on it.
    """
    from harness.checkpoints import Checkpoint

    folders = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    out = []
    for folder in folders:
        step = int(folder.name.split("-")[1])
        if base is None:
            out.append(Checkpoint(label=folder.name, step=step, model=str(folder)))
        else:
            out.append(Checkpoint(label=folder.name, step=step, model=str(base), adapter=str(folder)))
    return out


def build_lora_adapter(
    path: Path,
    base_dir: Path,
    *,
    r: int = 8,
    alpha: int = 16,
    target_modules: tuple[str, ...] = ("q_proj", "v_proj"),
    seed: int = 0,
    scale: float = 0.3,
) -> Path:
    """Write a PEFT LoRA adapter over ``base_dir`` into ``path`` with random ``A`` and ``B``
    (std ``scale``; PEFT's default zero ``B`` would make the adapter a no-op)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    config = LoraConfig(
        r=r, lora_alpha=alpha, target_modules=list(target_modules), lora_dropout=0.0,
        bias="none", task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * scale)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    return path


def build_lora_run(run: Path, base_dir: Path, *, steps: Sequence[int] = (10, 20), r: int = 8,
                   target_modules: tuple[str, ...] = ("q_proj", "v_proj")) -> Path:
    """``run/checkpoint-<step>`` for each step: a different random LoRA adapter (rank ``r``)
    over ``base_dir`` and a ``trainer_state.json``. Returns ``run``."""
    for i, step in enumerate(steps):
        folder = build_lora_adapter(run / f"checkpoint-{step}", base_dir, r=r, alpha=2 * r,
                                    target_modules=target_modules, seed=100 + i)
        write_trainer_state(folder, step, max(steps))
    return run


def finetune_query_key(source: Path, target: Path, *, scale: float = 0.1, seed: int = 0) -> Path:
    """A copy of the model folder ``source`` in ``target`` whose attention query and key weights
    (``q_proj``/``k_proj`` tensors) alone are changed (random noise of std ``scale`` times
    each tensor's own std added): what query/key-only finetuning saves. Every other tensor
    keeps its bytes. Returns ``target``."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, target, dirs_exist_ok=True)
    weights = target / "model.safetensors"
    tensors = load_file(str(weights))
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in tensors.items():
        if ".q_proj." in name or ".k_proj." in name:
            noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
            tensors[name] = (tensor.float() + scale * tensor.float().std() * noise).to(tensor.dtype).contiguous()
    save_file(tensors, str(weights), metadata={"format": "pt"})
    return target


def simulated_curve(total: int, n_examples: int, *, start: float = 0.4, peak: float = 0.9, end: float = 0.6,
                    peak_at: float = 0.3, flip: float = 0.02, seed: int = 0) -> list[dict[str, float]]:
    """Per-example 0/1 values of a metric at ``total`` checkpoints of a simulated run: each
    checkpoint's rate rises linearly from ``start`` to ``peak`` (at the share ``peak_at`` of
    the run) and falls to ``end``. Example ``i`` is a hit where its fixed threshold lies below
    the rate, so neighbouring checkpoints agree on most examples, as real ones do; each value
    is then flipped with probability ``flip`` (checkpoint-to-checkpoint noise)."""
    rng = np.random.default_rng(seed)
    thresholds = rng.random(n_examples)
    top = peak_at * (total - 1)
    run = []
    for t in range(total):
        rate = (start + (peak - start) * t / top if t <= top and top > 0
                else peak + (end - peak) * (t - top) / max(total - 1 - top, 1e-9))
        hits = (thresholds < rate) ^ (rng.random(n_examples) < flip)
        run.append({f"e{i}": float(hit) for i, hit in enumerate(hits)})
    return run
