"""Self-contained HTML pages: inline CSS, images embedded as data URIs, opens offline."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Iterable, Sequence

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1b1b1b; background: #fff; margin: 0; line-height: 1.45; }
main { max-width: 1320px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; margin-top: 1.5em; }
.meta { color: #555; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.92em; max-width: 980px; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.6em 0 1.2em; }
th, td { border: 1px solid #d6d6d6; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td { font-variant-numeric: tabular-nums; }
.found { color: #a33b00; font-weight: 600; }
.none { color: #444; font-weight: 600; }
pre { white-space: pre-wrap; word-break: break-word; background: #f7f7f7; padding: 6px 8px; margin: 0.3em 0;
      font-size: 0.88em; max-width: 980px; }
td pre { background: none; padding: 0; margin: 0; }
.why { color: #555; font-size: 0.9em; }
.warning { background: #fff4e5; border-left: 4px solid #d55e00; padding: 8px 12px; margin: 1em 0; }
.warning ul { margin: 0.3em 0; padding-left: 1.2em; }
"""


def escape(text: object) -> str:
    """``text`` as HTML text."""
    return html.escape(str(text))


def page(title: str, parts: Iterable[str]) -> str:
    """A whole page: ``parts`` are HTML, the title is text."""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{escape(title)}</title>\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<style>{CSS}</style>\n'
            f'</head>\n<body>\n<main>\n{"".join(parts)}</main>\n</body>\n</html>\n')


def figure(path: Path, caption: str) -> str:
    """A PNG file embedded as a data URI, with its caption."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>\n")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table; header cells are text, body cells are HTML (escape them with :func:`escape`)."""
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>\n" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"


def warnings(messages: Sequence[str]) -> str:
    """A highlighted list of warnings; empty when there are none."""
    if not messages:
        return ""
    items = "".join(f"<li>{escape(message)}</li>" for message in messages)
    return f'<div class="warning"><strong>Warning</strong><ul>{items}</ul></div>\n'
