"""Regenerate the README's pictures from a finished demo and a first look at the bundled model.

    python docs/screenshots.py --demo results/demo --first-look results/smollm2

Writes into docs/images/: ``demo-context-reliance.png`` (the demo comparison's conflict-probe
figure), ``demo-compare.png`` (the top of compare.html as headless Chromium shows it: the
browser test's own driver, tests/browser.py), ``demo-report.png`` (the top of the standard
run's report.html) and ``smollm2-context-reliance.png`` (the first look's by-task figure).
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from browser import find_browser, open_page  # noqa: E402  (the tests' CDP driver)

IMAGES = HERE / "images"


def _top_of(page: Path, target: Path, browser: str, height: int) -> None:
    from PIL import Image

    shot = open_page(page, browser).screenshot
    image = Image.open(io.BytesIO(shot))
    image.crop((0, 0, image.width, min(height, image.height))).save(target, optimize=True)
    print(f"{target}: top {min(height, image.height)} px of {page}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("results/demo"))
    parser.add_argument("--first-look", type=Path, default=Path("results/smollm2"))
    parser.add_argument("--height", type=int, default=1500, help="pixels of each page's top to keep")
    options = parser.parse_args()
    browser = find_browser()
    if browser is None:
        raise SystemExit("no Chromium: sudo apt-get install chromium (or make browser)")
    shutil.copy(options.demo / "compare" / "plots" / "world_conflict.png", IMAGES / "demo-context-reliance.png")
    _top_of(options.demo / "compare" / "compare.html", IMAGES / "demo-compare.png", browser, options.height)
    _top_of(options.demo / "results" / "standard" / "seed-0" / "report.html", IMAGES / "demo-report.png", browser, options.height)
    if options.first_look.is_dir():
        shutil.copy(options.first_look / "plots" / "context_reliance_by_task.png", IMAGES / "smollm2-context-reliance.png")


if __name__ == "__main__":
    main()
