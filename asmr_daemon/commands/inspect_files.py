"""Show how script files are read and what of them would reach the model, before spending GPU
time: per file the detected encoding and format, per line the decision (translate / keep, and
why) with the exact segments the model would get, and any repairs or warnings. No model is
loaded. ``--json`` prints the stable JSON form (documented in the README). Exit code 1 when a
file is refused."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", metavar="FILE", type=Path, nargs="+", help="script files (.txt .srt .vtt .lrc .ass .docx .pdf)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from asmr_daemon.config import load_settings
    from asmr_daemon.scripts.inspection import render_text, report

    settings = load_settings(Path(args.config) if args.config else None)
    result = report(list(args.files), max_bytes=settings.watch.max_file_bytes)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        for file in result["files"]:
            print("\n".join(render_text(file)))
    return 0 if all(file["ok"] for file in result["files"]) else 1
