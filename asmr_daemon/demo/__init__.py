"""Bundled demo data: ja->zh pairs of short ASMR lines and a script made of them.

``asmr-daemon demo`` and the test kit train the tiny model on ``pairs.tsv`` and translate
``script.txt``; its long lines are two or three pairs in a row, so the segmenter splits them and the
translation is the concatenation of the sentence translations.
"""

from __future__ import annotations

from pathlib import Path

from asmr_daemon.training_data import TrainingPair

DEMO_DIR = Path(__file__).resolve().parent
PAIRS_FILE = DEMO_DIR / "pairs.tsv"
SCRIPT_FILE = DEMO_DIR / "script.txt"


def load_pairs(path: Path = PAIRS_FILE) -> list[TrainingPair]:
    """``source<TAB>target`` lines (blank lines and ``#`` comments skipped) as TrainingPairs."""
    pairs = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0] or not fields[1]:
            raise ValueError(f"{path}:{number}: expected 'source<TAB>target', got {line!r}")
        pairs.append(TrainingPair(fields[0], fields[1]))
    return pairs
