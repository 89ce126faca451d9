"""The errors a user can cause, one type each; the CLI catches :class:`HarnessError` alone.

Every message names the file and the field (or the flag) at fault. Each type also derives
from the built-in exception it refines (``ValueError`` for bad input, ``RuntimeError`` for
an engine or model that does not behave), so code that catches those keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HarnessError(Exception):
    """Something the user can fix; the message says what and where."""


class TaskError(HarnessError, ValueError):
    """A task or data file is unusable; the message names the file and the field."""


class RunError(HarnessError, ValueError):
    """A run cannot start or resume as asked; the message says which setting."""


class CheckpointError(HarnessError, ValueError):
    """A ``--checkpoints`` spec that cannot be resolved; the message names the entry."""


class ReportError(HarnessError, ValueError):
    """A results folder (or set of them) that cannot be reported as asked."""


class FinetuneError(HarnessError, ValueError):
    """A finetuning run cannot start as configured; the message says which setting."""


class DemoError(HarnessError, ValueError):
    """``harness demo`` settings that cannot be run; the message names the setting."""


class BundledModelError(HarnessError, RuntimeError):
    """The bundled model is not installed or cannot be converted."""


class EngineMismatchError(HarnessError, RuntimeError):
    """A freshly started engine disagrees with transformers on the canary sequence."""


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`` (did you mean 'a' or 'b'?)`` with the (at most two) known names closest to a
    misspelt ``word``; empty when none is close. Every "unknown name" message ends its
    offending word with it."""
    close = difflib.get_close_matches(word, list(dict.fromkeys(known)), n=2)
    return f" (did you mean {' or '.join(repr(name) for name in close)}?)" if close else ""
