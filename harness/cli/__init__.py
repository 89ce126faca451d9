"""The ``harness`` command line: :func:`main` builds the parser of every subcommand
(:func:`build_parser`) and runs the one asked for."""

from harness.cli.main import build_parser, evaluate_main, main

__all__ = ["build_parser", "evaluate_main", "main"]
