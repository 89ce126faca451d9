"""What a user sees: the harness's own lines on the console, everything else in a log file.

Engines and libraries talk a lot (vLLM's configuration dumps, compiler notices, loading and
shard-writing bars, child processes that print straight to the terminal). Inside
:func:`quiet`, file descriptors 1 and 2 — and so every library, warning and child process —
go to a log file (``<output>/logs/engine.log``), while the ``harness`` logger and the
progress bars keep writing to the terminal's standard error through :func:`console`, and
:func:`say` (results, summaries) to its standard output. ``verbose`` (``-v``) leaves
everything on the terminal, as it was.

:func:`progress` is a tqdm bar on a terminal and, when the console is not one (a redirected
log, CI), a plain line every :data:`PLAIN_EVERY` seconds instead of carriage-return frames.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence, TextIO

from tqdm.auto import tqdm

log = logging.getLogger("harness")

#: Seconds between the plain progress lines written when the console is not a terminal.
PLAIN_EVERY = 30.0
ENGINE_LOG = "engine.log"
_FORMAT = "%(levelname)s %(name)s: %(message)s"

_console: TextIO | None = None  # the terminal's standard error, inside quiet()
_output: TextIO | None = None  # the terminal's standard output, inside quiet()


def console() -> TextIO:
    """Where the harness's log lines and progress bars go: the terminal's standard error,
    also inside :func:`quiet`."""
    return _console or sys.stderr


def say(text: str) -> None:
    """A line for the user (a result, a summary, a table) on standard output, also inside
    :func:`quiet`."""
    print(text, file=_output or sys.stdout, flush=True)


def aligned(rows: Sequence[Sequence[str]]) -> str:
    """Rows as text columns padded to their widest cell, the first row a header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


class _ConsoleHandler(logging.StreamHandler):
    """Writes to :func:`console` as it is when a line is logged, never to a stream kept from
    an earlier moment: standard error is swapped by notebooks, test runners and
    :func:`quiet`, and the one swapped out may be closed by then."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(_FORMAT))

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return console()

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler.__init__ sets it; the console is looked up instead
        pass


def setup_logging(verbose: bool) -> None:
    """The harness logger on the console (debug with ``verbose``); other libraries' warnings
    on standard error."""
    harness = logging.getLogger("harness")
    harness.handlers[:] = [_ConsoleHandler()]
    harness.setLevel(logging.DEBUG if verbose else logging.INFO)
    harness.propagate = False
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format=_FORMAT)


def _handler(stream: TextIO) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s" if stream is not sys.stderr else _FORMAT))
    return handler


def _silence_library_bars() -> None:
    """transformers', huggingface_hub's and datasets' own bars: noise in a log file."""
    for module, function in (("transformers.utils.logging", "disable_progress_bar"),
                             ("huggingface_hub.utils", "disable_progress_bars"),
                             ("datasets.utils.logging", "disable_progress_bar")):
        try:
            getattr(__import__(module, fromlist=[function]), function)()
        except (ImportError, AttributeError):
            continue


def redirect_output(path: str | Path) -> None:
    """Point file descriptors 1 and 2 of this process (and so of every library and child
    process) at ``path``, appended to; Python's own streams are flushed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(target, 1)
    os.dup2(target, 2)
    os.close(target)


@contextlib.contextmanager
def quiet(log_file: str | Path | None, *, verbose: bool = False) -> Iterator[None]:
    """Send everything but the harness's own lines to ``log_file`` for the duration (module
    docstring); ``verbose`` or no ``log_file``: change nothing."""
    global _console, _output
    if verbose or log_file is None or _console is not None:
        yield
        return
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    output = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
    redirect_output(log_file)
    _console, _output = terminal, output
    harness = logging.getLogger("harness")
    handlers = harness.handlers[:]
    harness.handlers[:] = [_handler(terminal), _handler(sys.stderr)]  # the log file keeps them too
    _silence_library_bars()
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr, terminal, output):
            stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for descriptor in saved:
            os.close(descriptor)
        harness.handlers[:] = handlers
        _console = _output = None
        terminal.close()
        output.close()


class _PlainProgress:
    """A progress line every :data:`PLAIN_EVERY` seconds, for consoles that are not terminals."""

    def __init__(self, total: int, desc: str, unit: str):
        self.total, self.desc, self.unit = total, desc, unit
        self.n, self.postfix = 0, ""
        self.start = self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= PLAIN_EVERY:
            self._line()

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def refresh(self) -> None:
        pass

    def _line(self) -> None:
        self.last = time.monotonic()
        rate = self.n / max(self.last - self.start, 1e-9)
        log.info("%s: %d/%d %s (%.1f %s/s)%s", self.desc, self.n, self.total, self.unit, rate, self.unit,
                 f"; {self.postfix}" if self.postfix else "")

    def close(self) -> None:
        pass

    def __enter__(self) -> "_PlainProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(total: int, desc: str, *, unit: str = "ex", enabled: bool = True) -> Any:
    """A progress display: a tqdm bar on a terminal, plain periodic lines otherwise."""
    stream = console()
    if enabled and not stream.isatty():
        return _PlainProgress(total, desc, unit)
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=stream, leave=False)
