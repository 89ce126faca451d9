"""Write the README's demo numbers from one finished demo run.

    harness demo -o results/demo          # into an empty folder: a whole run, timed
    python docs/readme_numbers.py results/demo

``harness demo`` records its measurement in ``DIR/demo.json`` (command, date, CPU, load
average, stage timings, the summary table). This script copies it into README.md: every
``<!-- demo-time -->…<!-- /demo-time -->`` span gets the total time with the CPU and date, and
the block between ``<!-- demo-numbers -->`` and ``<!-- /demo-numbers -->`` gets the measured
paragraph and the table. Prose outside the markers (what the numbers mean) is the author's to
check. A demo that resumed an earlier folder is refused: its timings are not a whole run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
TIME = re.compile(r"(<!-- demo-time -->)(.*?)(<!-- /demo-time -->)", re.S)
NUMBERS = re.compile(r"(<!-- demo-numbers -->\n)(.*?)(<!-- /demo-numbers -->)", re.S)


def duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def cpu_words(record: dict) -> str:
    return record["cpu"].replace(", no AMX/AVX512-BF16", ", no AMX")


def time_span(record: dict) -> str:
    return f"**{duration(record['total_s'])}** on {cpu_words(record)} ({record['date'][:10]})"


def numbers_block(record: dict) -> str:
    stages = ", ".join(f"{stage} {seconds:g} s" for stage, seconds in record["seconds"].items())
    header, *rows = record["table"]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(f"**{cell}**" if cell == "inversion" else cell for cell in row) + " |" for row in rows]
    base = next((line for line in record["summary"].splitlines() if line.startswith("Base model:")), "")
    return "\n".join([
        f"Measured by `{record['command']}` into an empty folder on {record['date'][:10]} ({record['cpu']}; "
        f"1-minute load average {record['load_average_before']} before, {record['load_average_after']} after): "
        f"{stages} — **{duration(record['total_s'])}** in all. {base.split('. ')[0]}. The summary it printed "
        "(context reliance: the share of the conflicting contexts whose answer is in the greedy output):",
        "", *table, "",
        "*Written by `python docs/readme_numbers.py` from that run's `demo.json`.*", ""])


def rewrite(readme: str, record: dict) -> str:
    if not TIME.search(readme) or not NUMBERS.search(readme):
        raise ValueError("README.md: no <!-- demo-time --> or <!-- demo-numbers --> markers")
    readme = TIME.sub(lambda m: m.group(1) + time_span(record) + m.group(3), readme)
    return NUMBERS.sub(lambda m: m.group(1) + numbers_block(record) + m.group(3), readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo", type=Path, help="the demo's output folder (its demo.json)")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    path = args.demo / "demo.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        print(f"{path}: cannot read the demo's record ({error}); run harness demo -o {args.demo} first",
              file=sys.stderr)
        return 2
    if not record.get("fresh"):
        print(f"{path}: this demo resumed an earlier folder, so its timings are not a whole run; run "
              "harness demo -o NEW_FOLDER into an empty folder", file=sys.stderr)
        return 2
    try:
        text = rewrite(args.readme.read_text(encoding="utf-8"), record)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    args.readme.write_text(text, encoding="utf-8")
    print(f"{args.readme}: demo numbers from {path} ({record['date']}, {record['cpu']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
