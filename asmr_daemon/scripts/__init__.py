"""Scripts: reading (decoding; txt, srt, vtt, lrc, ass parsing; docx/pdf extraction), segmentation, writing.

Data flows one way: ``read_script``/``parse_text`` -> ``Document`` of ``Line``s (TEXT lines
carry ``segments``) -> translations keyed by line index -> ``render``/``write_translation``.
"""

from asmr_daemon.scripts.classify import classify, is_sound_line
from asmr_daemon.scripts.decoding import Decoded, decode_bytes
from asmr_daemon.scripts.formats import format_for_path, parse_text, render
from asmr_daemon.scripts.model import Document, Line, LineKind
from asmr_daemon.scripts.reader import read_script
from asmr_daemon.scripts.segment import Segmenter, get_segmenter
from asmr_daemon.scripts.writer import (
    atomic_write_bytes,
    output_name,
    write_translation,
)

__all__ = [
    "Decoded",
    "Document",
    "Line",
    "LineKind",
    "Segmenter",
    "atomic_write_bytes",
    "classify",
    "decode_bytes",
    "format_for_path",
    "get_segmenter",
    "is_sound_line",
    "output_name",
    "parse_text",
    "read_script",
    "render",
    "write_translation",
]
