"""What every subcommand's parser shares: help that keeps examples and says defaults, errors
that suggest the closest command, choice or flag, and the small argument types."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re
import shutil
import typing
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from harness.console import ENGINE_LOG, quiet
from harness.errors import HarnessError, did_you_mean
from harness.seeding import replicate_seeds
from harness.sweep.config import RunConfig

LOGS = "logs"
VERBOSE = "debug logging, and the engines' and libraries' own output on the console"


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and adds "(default: ...)" where there is one to say."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" not in text and action.option_strings and action.default not in (None, False, [])
                and action.default is not argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors suggest the closest command, choice or flag."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        #: The subcommands' parsers by name (filled by :func:`command`).
        self.commands: dict[str, Parser] = {}

    def error(self, message: str) -> None:  # type: ignore[override]
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = re.findall(r"'([^']*)'", choice.group(2))
            message += did_you_mean(choice.group(1), options)
        super().error(message)

    def flags(self) -> list[str]:
        """Every option string this parser takes."""
        return [flag for action in self._actions for flag in action.option_strings]

    def unknown_flags(self, extras: Sequence[str]) -> None:
        """Exit with the unknown arguments named, each with its closest flag."""
        hints = [f"{extra}{did_you_mean(extra.split('=')[0], self.flags())}" for extra in extras]
        self.error(f"unrecognized arguments: {'; '.join(hints)}")


def command(parser: Parser, commands: Any, name: str, summary: str, description: str,
            examples: str = "") -> Parser:
    """A subcommand of ``parser`` with its one-line summary, its description and its examples;
    it takes ``-v`` too (after the command, where users type it)."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples.strip().splitlines()) if examples else None
    sub = commands.add_parser(name, help=summary, description=description, epilog=epilog, formatter_class=Formatter)
    sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE)
    parser.commands[name] = sub
    return sub


def typed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser that raises ``ValueError`` with a message of its own."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = parse.__name__
    return convert


def comma_list(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


def seed_list(text: str) -> list[int]:
    """``0,1,2``: distinct non-negative integers."""
    try:
        seeds = [int(part) for part in comma_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not replicate_seeds(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct non-negative integers, got {text!r}")
    return seeds


def ylim(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH (e.g. 0,1), got {text!r}") from None
    if not low < high:
        raise argparse.ArgumentTypeError(f"LOW must be below HIGH, got {text!r}")
    return low, high


def engine_log(output: str | Path) -> Path:
    """Where a command writing ``output`` sends the engines' and libraries' output."""
    return Path(output) / LOGS / ENGINE_LOG


@contextlib.contextmanager
def quiet_into(output: str | Path, *, verbose: bool = False) -> Iterator[None]:
    """:func:`harness.console.quiet` into ``output``'s engine log for a command writing
    ``output``. A command refused before it wrote anything (a misspelt task, a missing
    checkpoint folder or dataset) leaves no output folder behind: one it created that holds
    nothing but the engine log is removed (empty folders above it that it created stay)."""
    log_file = engine_log(output)
    folder = Path(output)
    new = not folder.exists()
    try:
        with quiet(log_file, verbose=verbose):
            yield
    except HarnessError:
        if new and folder.is_dir() and [p for p in folder.rglob("*") if p.is_file()] == [log_file]:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _value_type(field: dataclasses.Field) -> Any:
    """The type a setting's flag reads: its annotation without None (``int | None`` reads int)."""
    hint = typing.get_type_hints(RunConfig)[field.name]
    options = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
    return options[0] if options[0] in (int, float, str) else str


def setting_flags(name: str) -> list[str]:
    """The flags of the :class:`~harness.sweep.config.RunConfig` setting ``name``: ``--name``
    (dashes for underscores) and its aliases."""
    field = next(f for f in dataclasses.fields(RunConfig) if f.name == name)
    return ["--" + name.replace("_", "-"), *field.metadata["aliases"]]


def in_typed_flags(message: str, given: Sequence[str], argv: Sequence[str]) -> str:
    """A run config's error (``"limit: must be at least 1"``) with the setting's name replaced
    by the flag the user typed (``"--limit: ..."``, ``"-o: ..."``) when it came from a flag."""
    name, colon, rest = message.partition(":")
    if not colon or name not in given:
        return message
    flags = setting_flags(name)
    typed = next((arg.split("=")[0] for arg in argv if arg.split("=")[0] in flags), flags[0])
    return f"{typed}:{rest}"


def add_setting(parser: Any, name: str) -> None:
    """The flag of the :class:`~harness.sweep.config.RunConfig` setting ``name``, as its field
    declares it (help, metavar, choices, how the text is read), its default said in the help.
    The flag's own default is None (empty for a repeatable one): a flag not given leaves the
    run config's value, or the config file's, alone."""
    field = next(f for f in dataclasses.fields(RunConfig) if f.name == name)
    meta = field.metadata
    flags = setting_flags(name)
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    text = meta["help"]
    if "default" not in text and default not in (None, False, [], {}):
        text += f" (default: {_shown(default)})"
    options: dict[str, Any] = {"help": text, "dest": name}
    if default is False:  # a switch: given means True
        parser.add_argument(*flags, action="store_true", default=None, **options)
        return
    if default is True:  # on unless --no-NAME
        parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=None, **options)
        return
    if meta["metavar"]:
        options["metavar"] = meta["metavar"]
    if meta["choices"]:
        options["choices"] = meta["choices"]
    options["type"] = typed(meta["parse"]) if meta["parse"] else _value_type(field)
    if meta["repeat"]:
        parser.add_argument(*flags, action="append", default=[], **options)
    else:
        parser.add_argument(*flags, default=None, **options)


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The run settings the user gave as flags (those not given are left out)."""
    names = {f.name for f in dataclasses.fields(RunConfig)}
    return {name: value for name, value in vars(args).items() if name in names and value not in (None, [])}
