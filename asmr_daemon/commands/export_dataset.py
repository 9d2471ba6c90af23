"""Export the human corrections kept in the translation memory as training data (JSON Lines).

Corrections are what you typed over the model's output (an editor's bilingual layout, saved) or
recorded through the engine; with ``--include-accepted`` the model outputs that passed the checks
are added too (a correction always wins for the same line). Duplicates are dropped.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT.jsonl", type=Path, help="where to write the pairs (replaced atomically)")
    parser.add_argument("--include-accepted", action="store_true",
                        help="also export model translations that passed the checks")
    parser.add_argument("--state-dir", metavar="DIR", help="the daemon's state dir (default: from the settings)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from asmr_daemon.config import load_settings
    from asmr_daemon.dataset import pairs_from_memory, write_dataset
    from asmr_daemon.engine.memory import TranslationMemory
    from asmr_daemon.errors import DatasetError
    from asmr_daemon.preflight import check_output_file
    from asmr_daemon.runtime import MEMORY_FILE

    settings = load_settings(Path(args.config) if args.config else None,
                             {("paths", "state_dir"): args.state_dir})
    out = check_output_file(args.out, "output")
    path = Path(os.path.abspath(settings.paths.state_dir)) / MEMORY_FILE
    if not path.is_file():
        raise DatasetError(f"no translation memory at {path}: nothing was translated or corrected yet",
                           "pass the daemon's --state-dir")
    memory = TranslationMemory(path)
    try:
        pairs = pairs_from_memory(memory, include_accepted=args.include_accepted)
    finally:
        memory.close()
    if not pairs:
        what = "corrections or accepted translations" if args.include_accepted else "corrections"
        raise DatasetError(f"the translation memory at {path} has no {what} yet",
                           "correct translations in your editor (bilingual layout, then save)")
    count = write_dataset(out, pairs)
    Console(stderr=True).print(f"wrote {count} pair(s) to {out}")
    return 0
