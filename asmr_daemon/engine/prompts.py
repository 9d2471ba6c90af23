"""Prompt text for one segment. The engine, the trainer and the remote backend all call this,
so a LoRA sees at inference exactly the prompt format it was trained on.

The template has a ``{source}`` placeholder and may place ``{glossary}`` and ``{context}``
itself; when it does not, non-empty glossary and context blocks are put in front of the
source text, inside the question (Sakura-style), so the answer stays the translation alone.
Placeholders are replaced literally (no ``str.format``) so templates may contain braces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from asmr_daemon.config import DEFAULT_TEMPLATE
from asmr_daemon.errors import ConfigError


@dataclass(frozen=True)
class GlossaryEntry:
    source: str
    target: str
    note: str = ""


@dataclass(frozen=True)
class ContextLine:
    """A preceding source line, with its translation when already known. Never output itself."""

    source: str
    translation: str | None = None


def validate_template(template: str) -> str:
    if "{source}" not in template:
        raise ConfigError(f"[prompt] template {template!r} has no {{source}} placeholder",
                          "put {source} where the Japanese text goes")
    return template


def format_glossary(entries: Sequence[GlossaryEntry]) -> str:
    if not entries:
        return ""
    lines = [f"{e.source}->{e.target}" + (f" #{e.note}" if e.note else "") for e in entries]
    return "根据以下术语表：\n" + "\n".join(lines) + "\n"


def format_context(context: Sequence[ContextLine]) -> str:
    if not context:
        return ""
    lines = [c.source if c.translation is None else f"{c.source}（{c.translation}）" for c in context]
    return "上文（仅供参考，不要翻译）：\n" + "\n".join(lines) + "\n"


def build_prompt(source: str, *, template: str = DEFAULT_TEMPLATE,
                 context: Sequence[ContextLine] = (), glossary: Sequence[GlossaryEntry] = ()) -> str:
    """The full prompt text for translating ``source`` (one line or sentence)."""
    validate_template(template)
    glossary_text, context_text = format_glossary(glossary), format_context(context)
    prefix = ""
    if "{glossary}" in template:
        template = template.replace("{glossary}", glossary_text)
    else:
        prefix += glossary_text
    if "{context}" in template:
        template = template.replace("{context}", context_text)
    else:
        prefix += context_text
    if prefix:
        prefix += "原文：\n"
    return template.replace("{source}", prefix + source)
