"""Pretraining the demo's base model from scratch on the synthetic world.

The base must have memorised the 400 known facts *and* be able to read a fact from its context
(docs/inversion-testbed.md): a tiny ``GPT2LMHeadModel`` (untied embeddings, so vLLM on CPU
reloads its checkpoints exactly: docs/engines.md) trained in one stage on bio and reading
documents (:func:`harness.demo.corpus.pretraining_documents`), loss on all tokens, ``<eos>``
after each document, no BOS. A batch's documents are packed into as few rows as fit
(:func:`pack_documents`), each document attending only to itself: the same loss and gradient
as one document a padded row, on about a quarter fewer token positions.

Every ``eval_every`` steps two greedy checks in the pretraining format: closed-book recall of
the 400 known facts (``e5 lives in`` -> ``lima``) and open-book reading (statements about
held-out entities, then ``again , e620 is from`` -> the stated value). Training stops once
recall >= ``recall_threshold`` and open-book >= ``open_book_threshold``, or at ``max_steps``.

The output folder is a float32 safetensors model with its tokenizer, loadable by
``AutoModelForCausalLM.from_pretrained``/``AutoTokenizer.from_pretrained`` and by vLLM, plus
``pretrain.json`` (settings, their hash, the check history, timings). A folder whose
``pretrain.json`` is finished with the same settings hash is reused as is.

docs/demo-recipe.md records the runs behind the defaults: restating word for word, the 2-4
restatements and templates whose recall cues name their attribute all mattered there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from harness.console import progress as show_progress
from harness.data import world as W
from harness.demo import corpus as C
from harness.errors import DemoError

# Bump when the training code changes what a given config produces (invalidates caches).
PRETRAIN_VERSION = 6  # 6: documents packed into rows (was one a padded row); 5: GELU's tanh approximation fused (was gelu_new); 4: 100 known entities (was 200)
INFO_FILE = "pretrain.json"


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that decides the base model (all of it goes into the settings hash)."""

    world_seed: int = 0
    reading_pool: int = 400  # how many unknown-pool entities reading documents use (probes unaffected)
    seed: int = 0
    # model
    n_positions: int = 128
    n_embd: int = 128
    n_layer: int = 3
    n_head: int = 4
    n_inner: int = 512
    init_std: float = 0.02
    # optimisation
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 100
    # "constant" after warm-up (the note's recipe), or "linear": decay to lr * final_lr_ratio
    # at max_steps (the checks still stop training early)
    schedule: str = "constant"
    final_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    max_steps: int = 4000
    # data
    bio_share: float = 0.3
    statements: tuple[int, int] = (3, 5)
    restatements: tuple[int, int] = (2, 4)
    known_share: float = 0.4
    local_share: float = 0.5
    restate: str = "same"  # restatements word for word ("same") or in a random template
    # stopping
    eval_every: int = 100
    recall_threshold: float = 0.95
    open_book_threshold: float = 0.5
    n_open_book_check: int = 400

    def settings_hash(self) -> str:
        payload = json.dumps({"version": PRETRAIN_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class PretrainResult:
    """What :func:`pretrain` did: the folder, the last check, and whether it was cached."""

    path: Path
    steps: int
    recall: float
    open_book: float
    reached: bool
    seconds: float
    cached: bool
    history: list[dict[str, float]] = field(default_factory=list)


def make_model(config: PretrainConfig, vocab_size: int, eos_id: int, pad_id: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    model_config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=config.n_positions,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_inner=config.n_inner,
        # GELU's tanh approximation, as gelu_new computes it, in one fused kernel: gelu_new's
        # separate elementwise ops were a large share of a CPU training step
        activation_function="gelu_pytorch_tanh",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        initializer_range=config.init_std,
        tie_word_embeddings=False,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    torch.manual_seed(config.seed)
    model = GPT2LMHeadModel(model_config)
    assert model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr()
    return model


def lr_factor(config: PretrainConfig, step: int) -> float:
    """The learning-rate multiplier at ``step`` (0-based): linear warm-up, then the schedule."""
    warm = max(1, config.warmup_steps)
    if step < warm:
        return (step + 1) / warm
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "linear":
        progress = (step - warm) / max(1, config.max_steps - warm)
        return 1.0 - (1.0 - config.final_lr_ratio) * min(1.0, progress)
    raise ValueError(f"unknown schedule {config.schedule!r} (expected constant or linear)")


def training_documents(config: PretrainConfig, world: W.World) -> Iterator[str]:
    """The endless, seeded stream of pretraining documents ``config`` trains on."""
    return C.pretraining_documents(
        world, config.seed, bio_share=config.bio_share, statements=config.statements,
        restatements=config.restatements, known_share=config.known_share, local_share=config.local_share,
        restate=config.restate, reading_pool=config.reading_pool,
    )


def _encode(tokenizer, texts: Sequence[str], eos: bool) -> list[list[int]]:
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    if eos:
        ids = [row + [tokenizer.eos_token_id] for row in ids]
    return ids


def _pad(rows: list[list[int]], pad_id: int, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [row[:max_len] for row in rows]
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask


def pack_documents(rows: list[list[int]], pad_id: int, capacity: int) -> dict[str, torch.Tensor]:
    """A batch of documents (token ids, each cut to ``capacity``) packed first-fit, longest first,
    into rows of at most ``capacity`` tokens: ``input_ids``, ``position_ids`` (restarting at 0
    with each document, which is how transformers' attention masks tell packed documents apart)
    and ``labels`` (-100 on each document's first token, which nothing predicts, and on padding).

    The model must be called with ``use_cache=False``: with a cache, transformers does not
    look for packed documents and lets them attend to each other."""
    rows = [row[:capacity] for row in rows]
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(rows)), key=lambda i: -len(rows[i])):
        fits = next((b for b, free in enumerate(room) if len(rows[i]) <= free), None)
        if fits is None:
            bins.append([])
            room.append(capacity)
            fits = len(bins) - 1
        bins[fits].append(i)
        room[fits] -= len(rows[i])
    width = capacity - min(room)
    ids = torch.full((len(bins), width), pad_id, dtype=torch.long)
    # Padding at a row's end sits at position 0 again and again: each pad token is a
    # "document" of its own, so it attends to nothing real (and carries no label).
    positions = torch.zeros((len(bins), width), dtype=torch.long)
    labels = torch.full((len(bins), width), -100, dtype=torch.long)
    for b, members in enumerate(bins):
        at = 0
        for i in members:
            row = torch.tensor(rows[i], dtype=torch.long)
            ids[b, at : at + len(row)] = row
            positions[b, at : at + len(row)] = torch.arange(len(row))
            labels[b, at + 1 : at + len(row)] = row[1:]
            at += len(row)
    return {"input_ids": ids, "position_ids": positions, "labels": labels}


@torch.no_grad()
def check_packing(model, first: list[int], second: list[int], pad_id: int) -> None:
    """Raise unless a document packed after another gets the logits it gets alone: whether
    position ids keep packed documents apart is transformers' behaviour, not this module's."""
    longer, shorter = sorted([first, second], key=len, reverse=True)
    packed = pack_documents([longer, shorter], pad_id, len(longer) + len(shorter))
    logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits
    alone = model(input_ids=torch.tensor([shorter]), use_cache=False).logits
    if not torch.allclose(logits[0, len(longer):], alone[0], atol=1e-4):
        import transformers

        raise DemoError(f"pretraining packs documents into shared rows, and with transformers "
                        f"{transformers.__version__} they attend to each other: it needs the packed-sequence "
                        "attention masks of transformers 5 (pip install 'transformers>=5')")


@torch.no_grad()
def greedy_next(model, tokenizer, prompts: Sequence[str], batch_size: int = 200) -> list[str]:
    """The greedy next token after each prompt (right-padded batches, last real position)."""
    was_training = model.training
    model.eval()
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        rows = _encode(tokenizer, prompts[start : start + batch_size], eos=False)
        ids, mask = _pad(rows, tokenizer.pad_token_id, model.config.n_positions)
        logits = model(input_ids=ids, attention_mask=mask).logits
        last = mask.sum(1) - 1
        best = logits[torch.arange(len(rows)), last].argmax(-1)
        out += tokenizer.convert_ids_to_tokens(best.tolist())
    model.train(was_training)
    return out


def accuracy(model, tokenizer, items: Sequence[tuple[str, str]]) -> float:
    predictions = greedy_next(model, tokenizer, [p for p, _ in items])
    return sum(p == a for p, (_, a) in zip(predictions, items)) / len(items)


def check(model, tokenizer, world: W.World, n_open_book: int = 400, restate: str = "same") -> dict[str, float]:
    """Closed-book recall and open-book reading in the pretraining format."""
    return {
        "recall": accuracy(model, tokenizer, C.pretraining_recall_items(world)),
        "open_book": accuracy(model, tokenizer, C.pretraining_open_book_items(world, n_open_book, restate=restate)),
    }


def read_info(path: str | Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(path) / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None


def pretrain(
    out_dir: str | Path,
    config: PretrainConfig = PretrainConfig(),
    *,
    threads: int | None = None,
    progress: bool = True,
    force: bool = False,
    log=None,
) -> PretrainResult:
    """Pretrain the demo base into ``out_dir`` (reused when already finished with ``config``).

    ``threads`` sets ``torch.set_num_threads`` for the run; ``log`` (a callable taking a
    string) receives one line per check.
    """
    out_dir = Path(out_dir)
    digest = config.settings_hash()
    info = read_info(out_dir)
    if not force and info and info.get("finished") and info.get("settings_hash") == digest:
        last = info["history"][-1] if info.get("history") else {}
        return PretrainResult(out_dir, info["steps"], last.get("recall", float("nan")),
                              last.get("open_book", float("nan")), info["reached"], info["seconds"],
                              cached=True, history=info.get("history", []))

    if threads:
        torch.set_num_threads(threads)
    world = W.make_world(config.world_seed)
    tokenizer = C.build_tokenizer(world)
    model = make_model(config, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr, betas=config.betas,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(config, step))
    documents = training_documents(config, world)
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    train_seconds = 0.0
    reached = False
    step = 0
    model.train()
    two_facts = [f"{prompt} {answer}" for prompt, answer in C.pretraining_recall_items(world)[:2]]
    check_packing(model, *_encode(tokenizer, two_facts, eos=True), tokenizer.pad_token_id)
    bar = show_progress(config.max_steps, "pretrain", unit="step", enabled=progress)
    scores = {"recall": 0.0, "open_book": 0.0}
    while step < config.max_steps:
        t0 = time.perf_counter()
        rows = _encode(tokenizer, list(islice(documents, config.batch_size)), eos=True)
        loss = model(**pack_documents(rows, tokenizer.pad_token_id, config.n_positions), use_cache=False).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        step += 1
        train_seconds += time.perf_counter() - t0
        bar.update(1)
        if step % config.eval_every == 0 or step == config.max_steps:
            scores = check(model, tokenizer, world, config.n_open_book_check, config.restate)
            history.append({"step": step, "loss": loss.item(), **scores,
                            "seconds": round(time.perf_counter() - start, 1)})
            bar.set_postfix_str(f"loss {loss.item():.3f}, recall {scores['recall']:.3f}, "
                                f"open-book {scores['open_book']:.3f}")
            if log:
                log(f"step {step}: loss {loss.item():.3f} recall {scores['recall']:.3f} "
                    f"open-book {scores['open_book']:.3f} ({time.perf_counter() - start:.0f}s)")
            if scores["recall"] >= config.recall_threshold and scores["open_book"] >= config.open_book_threshold:
                reached = True
                break
    bar.close()
    seconds = time.perf_counter() - start
    if not history or history[-1]["step"] != step:
        scores = check(model, tokenizer, world, config.n_open_book_check, config.restate)
        history.append({"step": step, "loss": loss.item(), **scores, "seconds": round(seconds, 1)})

    tmp = out_dir.with_name(out_dir.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    info = {
        "finished": True,
        "settings_hash": digest,
        "config": dataclasses.asdict(config),
        "version": PRETRAIN_VERSION,
        "steps": step,
        "reached": reached,
        "seconds": round(seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "history": history,
    }
    (tmp / INFO_FILE).write_text(json.dumps(info, indent=2))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return PretrainResult(out_dir, step, scores["recall"], scores["open_book"], reached, seconds,
                          cached=False, history=history)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m harness.demo.pretrain OUT [--threads N] [--max-steps N] [--key value ...]``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--force", action="store_true")
    for f in dataclasses.fields(PretrainConfig):
        if f.type in ("int", "float", "str"):
            parser.add_argument("--" + f.name.replace("_", "-"), type={"int": int, "float": float, "str": str}[f.type])
    args = parser.parse_args(argv)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(PretrainConfig)
                 if getattr(args, f.name, None) is not None}
    config = dataclasses.replace(PretrainConfig(), **overrides)
    result = pretrain(args.out, config, threads=args.threads, force=args.force, log=print)
    print(json.dumps({k: v for k, v in dataclasses.asdict(result).items() if k != "history"}, default=str))


if __name__ == "__main__":
    main()
