"""The reports in a real browser: headless Chromium opens report.html and compare.html of a
small run, every image loads, nothing but the page itself is requested, and a screenshot is
taken (kept under the test's folder for a look)."""

from __future__ import annotations

import pytest
from browser import INSTALL_HINT, find_browser, open_page
from handmade import context_run, rich_run

from harness.reports.compare import compare
from harness.reports.report import write_report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> str:
    found = find_browser()
    if found is None:
        pytest.skip(INSTALL_HINT)
    return found


def test_report_and_compare_open_in_chromium(tmp_path, browser):
    run = rich_run(tmp_path / "run")
    other = context_run(tmp_path / "other", [20, 60, 30])
    write_report(other)
    for page_file, title in ((write_report(run), "Report: run"),
                             (compare([run, other], output=tmp_path / "compare"), "Comparison: run, other")):
        page = open_page(page_file, browser)
        assert page.title == title
        assert page.images and all(loaded and width > 0 for loaded, width in page.images), page.images
        # The page itself, and data: URIs (the embedded images) only: nothing from a network.
        assert page.requests[0] == page_file.resolve().as_uri()
        assert all(url.startswith("data:") for url in page.requests[1:]), page.requests
        assert page.screenshot[:8] == b"\x89PNG\r\n\x1a\n" and len(page.screenshot) > 20_000
        (page_file.parent / f"{page_file.stem}-screenshot.png").write_bytes(page.screenshot)
