"""Build training data (JSON Lines) from a bilingual script -- each Japanese line followed by its
Chinese line -- or from a script and its translation (two files, one translation line per text
line, in the same order)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", type=Path, help="a bilingual script, or the Japanese script")
    parser.add_argument("translation", metavar="FILE2", type=Path, nargs="?",
                        help="the Chinese translation of FILE, line-aligned (text line n <-> text line n)")
    parser.add_argument("-o", "--output", metavar="OUT.jsonl", type=Path, required=True,
                        help="where to write the pairs (replaced atomically)")
    parser.add_argument("--skip-unpaired", action="store_true",
                        help="bilingual script: leave out Japanese lines without a translation instead of failing")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from asmr_daemon.dataset import (
        deduplicate,
        pairs_from_aligned,
        pairs_from_bilingual,
        write_dataset,
    )
    from asmr_daemon.errors import DatasetError, InputError
    from asmr_daemon.preflight import check_input_files, check_output_file, naming
    from asmr_daemon.scripts import read_script

    inputs = check_input_files([args.file] + ([args.translation] if args.translation else []))
    out = check_output_file(args.output, "-o")

    def read(path: Path):
        try:
            return read_script(path)
        except InputError as exc:
            raise DatasetError(naming(path, exc.message), exc.hint) from None

    args.file, args.translation = inputs[0], (inputs[1] if len(inputs) > 1 else None)
    if args.translation is None:
        pairs = pairs_from_bilingual(read(args.file), name=str(args.file), skip_unpaired=args.skip_unpaired)
    else:
        pairs = pairs_from_aligned(read(args.file), read(args.translation),
                                   source_name=str(args.file), target_name=str(args.translation))
    pairs = deduplicate(pairs)
    count = write_dataset(out, pairs)
    Console(stderr=True).print(f"wrote {count} pair(s) to {out}")
    return 0
