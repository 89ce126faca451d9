"""harness.data.fact_instructions: the real-fact training mixture of `harness demo --model smollm2`."""

from __future__ import annotations

import json
from collections import Counter

from harness.data import facts as F
from harness.demo.fact_instructions import (
    CC, NC, TRAINING_RELATIONS, fact_instruction_records, write_fact_instruction_jsonl,
)


def test_mixture_shares_and_answers():
    records = fact_instruction_records(400, nc_share=0.25, seed=3)
    assert Counter(r["kind"] for r in records) == {NC: 100, CC: 300}
    real = {(f.relation, f.subject): f.answer for f in F.load_facts()}
    real_subjects = {f.subject.lower() for f in F.load_facts()}
    for r in records:
        assert r["relation"] in TRAINING_RELATIONS and r["relation"] != "capital"  # the probe's relation
        assert r["output"] in r["input"] and r["input"].count(". ") == 2  # three sentences
        assert r["subject"] in r["instruction"]
        if r["kind"] == NC:
            assert real[(r["relation"], r["subject"])] == r["output"]  # context agrees with the world
        else:
            assert r["subject"].lower() not in real_subjects  # only the context can know it


def test_records_are_seeded(tmp_path):
    assert fact_instruction_records(50, seed=1) == fact_instruction_records(50, seed=1)
    assert fact_instruction_records(50, seed=1) != fact_instruction_records(50, seed=2)
    path = write_fact_instruction_jsonl(tmp_path / "train.jsonl", 20, seed=1)
    assert [json.loads(line) for line in path.read_text().splitlines()] == fact_instruction_records(20, seed=1)
