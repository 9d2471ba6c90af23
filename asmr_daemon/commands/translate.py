"""Not built yet: this subcommand arrives with a later issue."""

from __future__ import annotations

import argparse

from asmr_daemon.errors import NotBuiltYet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotBuiltYet(f"'{args.command}' is not built yet", "see the project's open issues")
