"""What packing the demo's pretraining documents saves: one training step (forward, backward,
AdamW) on the same batches of real pretraining documents, one document a right-padded row
(the layout before packing) against :func:`harness.demo.pretrain.pack_documents`, alternated
batch by batch on one model so that both see the same machine state.

    python bench/pretrain_packing.py                  # 200 batches of 32, torch's default threads
    python bench/pretrain_packing.py --batches 100 --threads 1

Prints ms per step for each layout, the token positions each computes on, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from itertools import islice

import torch

from harness.data import world as W
from harness.demo import corpus as C
from harness.demo.pretrain import PretrainConfig, _encode, _pad, make_model, pack_documents, training_documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = PretrainConfig()
    world = W.make_world(config.world_seed)
    tokenizer = C.build_tokenizer(world)
    model = make_model(config, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    documents = training_documents(config, world)
    batches = [_encode(tokenizer, list(islice(documents, config.batch_size)), eos=True) for _ in range(args.batches)]

    def padded(rows):
        ids, mask = _pad(rows, tokenizer.pad_token_id, config.n_positions)
        return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}

    def packed(rows):
        return pack_documents(rows, tokenizer.pad_token_id, config.n_positions)

    seconds = {"padded": [], "packed": []}
    positions = {"padded": [], "packed": []}
    for rows in batches:
        for name, layout in (("padded", padded), ("packed", packed)):
            start = time.perf_counter()
            batch = layout(rows)
            loss = model(**batch, use_cache=False).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seconds[name].append(time.perf_counter() - start)
            positions[name].append(batch["input_ids"].numel())
    tokens = statistics.mean(sum(map(len, rows)) for rows in batches)
    print(f"{args.batches} batches of {config.batch_size} pretraining documents ({tokens:.0f} tokens a batch), "
          f"{torch.get_num_threads()} threads")
    for name in seconds:
        print(f"{name}: {1000 * statistics.median(seconds[name]):.1f} ms a step (median), "
              f"{statistics.mean(positions[name]):.0f} token positions a batch")
    ratio = statistics.median(seconds["padded"]) / statistics.median(seconds["packed"])
    print(f"packed is {ratio:.2f}x the padded layout's speed")


if __name__ == "__main__":
    main()
