"""The README's demo numbers are written by docs/readme_numbers.py from a demo's demo.json:
the markers exist, a record fills them, a resumed demo is refused."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("readme_numbers", ROOT / "docs" / "readme_numbers.py")
readme_numbers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_numbers)

RECORD = {
    "command": "harness demo", "date": "2026-12-03T09:30:00+00:00", "cpu": "AMD EPYC, 2 cores, no AMX/AVX512-BF16",
    "fresh": True, "load_average_before": 0.2, "load_average_after": 1.9,
    "seconds": {"pretraining the base model": 398.0, "instruction tuning": 146.2}, "total_s": 544.2,
    "table": [["run", "first", "verdict"], ["standard", ".000", "inversion"], ["qk_only", ".000", "rise"]],
    "summary": "table...\nBase model: 1500 pretraining steps, closed-book recall 0.98. GPT-2 because...",
}


def test_the_readme_has_the_markers_the_script_fills():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_numbers.TIME.search(text) and readme_numbers.NUMBERS.search(text)


def test_a_record_fills_the_time_and_the_table(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("took <!-- demo-time -->OLD_TIME<!-- /demo-time -->.\n\n<!-- demo-numbers -->\nOLD_TABLE\n"
                      "<!-- /demo-numbers -->\nprose\n")
    text = readme_numbers.rewrite(readme.read_text(), RECORD)
    assert "took <!-- demo-time -->**9 min 4 s** on AMD EPYC, 2 cores, no AMX (2026-12-03)<!-- /demo-time -->." in text
    assert "OLD_" not in text and text.endswith("<!-- /demo-numbers -->\nprose\n")
    assert "| standard | .000 | **inversion** |" in text and "| qk_only | .000 | rise |" in text
    assert "pretraining the base model 398 s, instruction tuning 146.2 s" in text
    assert "load average 0.2 before, 1.9 after" in text and "Base model: 1500 pretraining steps" in text


def test_a_resumed_demo_is_refused(tmp_path, capsys):
    import json

    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "demo.json").write_text(json.dumps({**RECORD, "fresh": False}))
    readme = tmp_path / "README.md"
    readme.write_text("<!-- demo-time -->x<!-- /demo-time -->\n<!-- demo-numbers -->\n<!-- /demo-numbers -->")
    assert readme_numbers.main([str(tmp_path / "demo"), "--readme", str(readme)]) == 2
    assert "resumed an earlier folder" in capsys.readouterr().err
    assert readme_numbers.main([str(tmp_path / "missing"), "--readme", str(readme)]) == 2


@pytest.mark.parametrize("seconds, text", [(59.6, "1 min 0 s"), (12, "12 s"), (813.4, "13 min 33 s")])
def test_durations(seconds, text):
    assert readme_numbers.duration(seconds) == text
