"""ift-harness: evaluate every checkpoint of an instruction-finetuning run on context-reliance probes.

The command line only parses arguments and calls the library (everything here is a Python
call too: see the README). Commands that write a folder take ``--output/-o``; engine and
library logs go to ``<output>/logs/engine.log`` unless ``-v`` is given. One module a group
of subcommands: :mod:`~harness.cli.tasks`, :mod:`~harness.cli.evaluate`,
:mod:`~harness.cli.reports`, :mod:`~harness.cli.training`.
"""

from __future__ import annotations

import importlib.metadata
import sys
from typing import Sequence

from harness.cli import evaluate, reports, tasks, training
from harness.cli.parsing import VERBOSE, Formatter, Parser
from harness.console import setup_logging
from harness.errors import HarnessError


def _version() -> str:
    try:
        return importlib.metadata.version("ift-harness")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def build_parser() -> Parser:
    """The ``harness`` parser with every subcommand."""
    parser = Parser(prog="harness", description=__doc__.split("\n\n")[0], formatter_class=Formatter,
                    epilog="run 'harness COMMAND --help' for a command's options and examples")
    parser.add_argument("--version", action="version", version=f"ift-harness {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for group in (tasks, evaluate, reports, training):
        group.add(parser, commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``harness`` command."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        parser.commands[args.command].unknown_flags(extras)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what was typed, for messages that quote it
    setup_logging(args.verbose)
    try:
        return args.run(args)
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (exit 130)", file=sys.stderr)
        return 130


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``evaluate`` command (the same as ``harness evaluate``)."""
    return main(["evaluate", *(sys.argv[1:] if argv is None else argv)])
