"""An editor connected before a reload uses the reloaded settings (issue 10: "after SIGHUP,
editors keep the old settings"): each connection's translator is a view of the shared one,
not a copy taken when it connected."""

from __future__ import annotations

import dataclasses

from asmr_daemon.config import load_settings
from asmr_daemon.lsp.translate import SessionTranslator, Translator


def test_a_connection_sees_settings_and_adapter_switch_replaced_after_it_connected(tmp_path) -> None:
    before = load_settings(None, {})
    shared = Translator(engine="the engine", settings=before)  # type: ignore[arg-type]
    session = SessionTranslator(shared, engine="its fair share")  # type: ignore[arg-type]
    assert session.settings is before and session.engine == "its fair share"

    glossary = tmp_path / "glossary.tsv"
    glossary.write_text("お兄ちゃん\t哥哥\n", encoding="utf-8")
    after = dataclasses.replace(before, prompt=dataclasses.replace(before.prompt, glossary=glossary, context_lines=2))
    shared.settings = after  # what Service.reload does
    shared.use_adapter = len  # type: ignore[assignment]

    assert session.settings is after
    assert session.use_adapter is len
    found = session.glossary(None)
    assert found is not None and [(e.source, e.target) for e in found.entries] == [("お兄ちゃん", "哥哥")]
