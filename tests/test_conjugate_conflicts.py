"""configs/conjugates-x-conflicts.yaml: the conjugate-prompting question asked on knowledge
conflicts. The config loads, and its plan holds the same conflicting facts under every
conjugate, each prompt in its conjugate's language, with the context's answer to score."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from harness.sweep.config import RunConfig
from harness.sweep.plan import plan
from harness.tasks import TaskRegistry

CONFIG = Path(__file__).parents[1] / "configs" / "conjugates-x-conflicts.yaml"


def test_the_config_builds_conflict_prompts_in_every_conjugate():
    config = RunConfig.from_yaml(CONFIG)
    assert config.tasks == ["capitals"] and config.limit == 100
    items = plan(TaskRegistry(config.include_path).select(config.tasks), config)
    conflicting = defaultdict(dict)
    for item in items:
        if item.rendered.example.condition == "conflicting":
            conflicting[item.rendered.conjugate][item.rendered.example.id] = item.rendered
    assert sorted(conflicting) == sorted(config.conjugates)
    ids = {conjugate: set(rendered) for conjugate, rendered in conflicting.items()}
    assert all(len(same) == 100 and same == ids["en"] for same in ids.values())   # paired across conjugates
    fact = sorted(ids["en"])[0]
    english, french = conflicting["en"][fact], conflicting["fr"][fact]
    assert english.prompt.startswith("Context: ") and english.prompt.endswith("\nAnswer:")
    assert french.prompt.startswith("Contexte : ") and french.prompt.endswith("\nRéponse :")
    assert conflicting["es"][fact].prompt.startswith("Contexto: ")
    assert conflicting["de"][fact].prompt.startswith("Kontext: ")
    assert conflicting["leetspeak"][fact].prompt != english.prompt
    assert conflicting["piglatin"][fact].prompt != english.prompt
    for rendered in (english, french, conflicting["leetspeak"][fact]):
        assert set(rendered.answers) == {"context", "parametric"}
    # the context's (wrong) capital is what the French context states, in its French spelling
    assert french.answers["context"][0] in french.prompt
