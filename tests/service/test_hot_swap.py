"""Hot adapter switch: ``LocalBackend.with_adapter`` / ``Engine.use_adapter`` in process, then the
real daemon switched by the editor command, ``asmr-daemon use-adapter`` and SIGHUP.

Adapter B is trained here (``asmr-daemon train``, six pairs) to give *other* translations than the
kit's adapter A for the same sources -- each source gets the next pair's target -- so which
adapter answered is visible in every output.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from kit import Kit
from lsprotocol import types
from poll import apoll_until, poll_until
from pytest_lsp import LanguageClient, make_test_lsp_client

from asmr_daemon.cli import main
from asmr_daemon.dataset import read_dataset, write_dataset
from asmr_daemon.lsp.endpoint import default_socket_path
from asmr_daemon.training_data import TrainingPair

from .notify import NotifyListener

pytestmark = pytest.mark.slow

SOURCES = ["今日もお疲れさまでした。", "外は寒かったでしょう？", "次は左耳です。", "また明日ね。",
           "温かいお茶を淹れましたよ。", "おやすみなさい、お兄ちゃん。"]
T = 120


def a_target(kit: Kit, source: str) -> str:
    return next(p.target for p in kit.pairs if p.source == source)


def b_pairs(kit: Kit) -> list[TrainingPair]:
    """Each source with the *next* source's (A) translation: B answers differently from A everywhere."""
    return [TrainingPair(s, a_target(kit, SOURCES[(i + 1) % len(SOURCES)])) for i, s in enumerate(SOURCES)]


@pytest.fixture(scope="module")
def adapter_b(tiny_kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("adapter-b")
    data = root / "b.jsonl"
    write_dataset(data, b_pairs(tiny_kit))
    out = root / "adapter"
    assert main(["train", str(data), "--base-model", str(tiny_kit.base_dir), "--out", str(out), "--device", "cpu",
                 "--epochs", "40", "--lr", "3e-3", "--batch-size", "2"]) == 0
    return out


# -- in process ---------------------------------------------------------------------------------


def greedy(backend, sources: list[str]) -> list[str]:
    from asmr_daemon.engine.prompts import build_prompt

    prompts = [backend.encode(build_prompt(s)) for s in sources]
    return [backend.decode(ids) for ids in backend.generate(prompts, max_new_tokens=[32] * len(prompts))]


def test_local_backends_share_one_base_and_keep_their_own_adapter(tiny_kit: Kit, adapter_b: Path) -> None:
    from asmr_daemon.engine import loading
    from asmr_daemon.engine.backend import LocalBackend
    from asmr_daemon.errors import AdapterError

    loaded = loading.load_model(tiny_kit.base_dir, tiny_kit.adapter_dir, device="cpu", progress=False)
    loads = loading.BASE_LOADS
    a = LocalBackend(loaded)
    b = a.with_adapter(adapter_b)
    assert loading.BASE_LOADS == loads  # preparing B read the adapter only
    assert b.identity != a.identity and b.identity.split("+")[0] == a.identity.split("+")[0] == loaded.identity
    assert "adapter-" not in str(loaded.model.peft_config)  # not attached before its first use
    want_a = [a_target(tiny_kit, s) for s in SOURCES]
    want_b = [p.target for p in b_pairs(tiny_kit)]
    assert greedy(b, SOURCES) == want_b
    assert greedy(a, SOURCES) == want_a  # both adapters live side by side, each call picks its own
    assert greedy(b, SOURCES[:2]) == want_b[:2]
    assert loading.BASE_LOADS == loads
    a.retire()  # the engine does this once nothing waits for A any more
    assert list(loaded.model.peft_config) == [b.adapter_name]
    assert greedy(b, SOURCES[:1]) == want_b[:1]
    with pytest.raises(AdapterError, match="does not exist"):
        b.with_adapter(Path("/nonexistent/adapter"))


def test_a_base_without_adapter_gets_one_and_the_old_backend_still_runs_the_bare_base(tiny_kit: Kit, adapter_b: Path) -> None:
    from asmr_daemon.engine.backend import LocalBackend
    from asmr_daemon.engine.loading import load_model

    loaded = load_model(tiny_kit.base_dir, None, device="cpu", progress=False)
    bare = LocalBackend(loaded)
    before = greedy(bare, SOURCES[:3])
    b = bare.with_adapter(adapter_b)
    assert greedy(b, SOURCES[:3]) == [p.target for p in b_pairs(tiny_kit)[:3]]  # wraps the model in peft
    assert greedy(bare, SOURCES[:3]) == before  # adapters disabled for the bare backend


def test_engine_use_adapter_keys_new_requests_with_the_new_identity(tiny_kit: Kit, adapter_b: Path, tmp_path: Path) -> None:
    from asmr_daemon.config import load_settings
    from asmr_daemon.runtime import build_engine

    settings = load_settings(None, {("model", "base_model"): tiny_kit.base_dir, ("model", "adapter"): tiny_kit.adapter_dir,
                                    ("model", "device"): "cpu", ("paths", "state_dir"): tmp_path / "state"})
    runtime = build_engine(settings, progress=False)
    engine = runtime.engine
    try:
        source = SOURCES[2]
        assert engine.submit(source).result(T).text == a_target(tiny_kit, source)
        old = engine.identity
        new = engine.use_adapter(adapter_b)
        assert new == engine.identity != old
        assert engine.lookup(source) is None  # A's cached output is not served for B
        assert engine.submit(source).result(T).text == b_pairs(tiny_kit)[2].target
        assert engine.use_adapter(tiny_kit.adapter_dir) == old  # and back (the base is never reloaded)
        assert engine.submit(source).result(T).origin == "memory"
        assert engine.stats["adapter_switches"] == 2
    finally:
        runtime.close()


# -- the real daemon ------------------------------------------------------------------------------


class Daemon:
    def __init__(self, kit: Kit, tmp_path: Path) -> None:
        self.config = tmp_path / "config.toml"
        self.state = tmp_path / "state"
        self.set_adapter(kit.adapter_dir)
        self.log_path = tmp_path / "daemon.log"
        self._log = self.log_path.open("w")
        self.base, self.inbox = kit.base_dir, tmp_path / "inbox"
        # A fake systemd: the STATUS= lines it is sent (AF_UNIX paths are short: not in tmp_path).
        self.seen = 0  # notify messages already matched
        self.notify = NotifyListener(Path(tempfile.mkdtemp(prefix="asmr-notify-", dir="/tmp")) / "notify.sock")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "asmr_daemon", "serve", "--config", str(self.config),
             "--base-model", str(kit.base_dir), "--device", "cpu", "--inbox", str(self.inbox),
             "--outbox", str(tmp_path / "outbox"), "--state-dir", str(self.state)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "NOTIFY_SOCKET": str(self.notify.path)})
        deadline = time.monotonic() + 300
        while (self.status() or {}).get("phase") != "ready" or not default_socket_path().exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"daemon did not start: {self.log_path.read_text()}")
            time.sleep(0.2)

    def set_adapter(self, adapter: Path) -> None:
        # batch_size 1: the document below takes one model call per segment, long enough that the
        # switch surely happens while it is being translated.
        self.config.write_text(f'[model]\nadapter = "{adapter}"\n\n[engine]\nbatch_size = 1\n', encoding="utf-8")

    def status(self) -> dict | None:
        try:
            return json.loads((self.state / "status.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def wait_for_adapter(self, adapter: Path) -> None:
        """The status record, ``asmr-daemon status`` and systemd's STATUS line all name ``adapter``."""
        poll_until(lambda: (self.status() or {}).get("model", {}).get("adapter") == str(adapter), T,
                   lambda: f"status showing {adapter}: {self.log_path.read_text()}")
        self.seen = 1 + self.notify.wait_for(f"STATUS=ready: {self.base} + {adapter}, watching {self.inbox}", T,
                                             self.proc, start=self.seen)
        shown = subprocess.run([sys.executable, "-m", "asmr_daemon", "status", "--state-dir", str(self.state)],
                               capture_output=True, text=True, timeout=T, env={**os.environ, "COLUMNS": "1000"})
        assert f"adapter {adapter}" in " ".join(shown.stdout.replace("│", " ").split()), shown.stdout

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()
        self.notify.close()
        shutil.rmtree(self.notify.path.parent, ignore_errors=True)


@pytest.fixture
def daemon(tiny_kit: Kit, adapter_b: Path, tmp_path: Path):
    d = Daemon(tiny_kit, tmp_path)
    yield d
    d.stop()


async def editor() -> LanguageClient:
    client = make_test_lsp_client()
    client.applied = []  # type: ignore[attr-defined]

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        client.applied.append(params)  # type: ignore[attr-defined]
        return types.ApplyWorkspaceEditResult(applied=True)

    await client.start_io(sys.executable, "-m", "asmr_daemon", "lsp", env=dict(os.environ))
    await client.initialize_session(types.InitializeParams(capabilities=types.ClientCapabilities(
        workspace=types.WorkspaceClientCapabilities(apply_edit=True),
        window=types.WindowClientCapabilities(work_done_progress=True),
        text_document=types.TextDocumentClientCapabilities(
            synchronization=types.TextDocumentSyncClientCapabilities(did_save=True)))))
    return client


def open_doc(client: LanguageClient, name: str, text: str) -> str:
    uri = f"file:///tmp/asmr-hot-swap/{name}"
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="plaintext", version=1, text=text)))
    return uri


async def hover(client: LanguageClient, source: str, name: str) -> str:
    uri = open_doc(client, name, source + "\n")
    result = await asyncio.wait_for(client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=0, character=0))), T)
    return result.contents.value


async def use_adapter_cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "asmr_daemon", "use-adapter", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), T)
    return proc.returncode, out.decode()


async def test_daemon_switches_adapters_without_reloading_the_base(daemon: Daemon, tiny_kit: Kit, adapter_b: Path) -> None:
    """A -> B by the editor command, B -> A' by ``asmr-daemon use-adapter``, A' -> B by SIGHUP.

    In-flight argument: ``asmr.translateDocument`` submits every segment of the script to the engine
    *before* its first ``$/progress`` report (``translate_document`` submits, then reports 0/total
    while it waits). We switch only after that report, so every segment of the document was keyed
    with A's identity, and the engine runs a request on the backend it was submitted to -- the
    document must come back entirely in A's translation (the kit's expected file), however the
    batches and the switch interleave. ``batch_size = 1`` makes the document take one model call per
    segment, so the switch really lands while it is still being translated (asserted too).
    """
    client = await editor()
    try:
        script = tiny_kit.script.read_text(encoding="utf-8")
        uri = open_doc(client, "script.txt", script)
        document = asyncio.ensure_future(client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="asmr.translateDocument", arguments=[uri, "replace"])))
        def reported() -> bool:
            return any(isinstance(getattr(r, "kind", None), str) and r.kind == "report"
                       for reports in client.progress_reports.values() for r in reports)

        await apoll_until(lambda: reported() or document.done(), T, "a progress report", interval=0.01)
        assert reported(), "translateDocument finished without a progress report"

        switched = await asyncio.wait_for(client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="asmr.useAdapter", arguments=[str(adapter_b)])), T)
        still_translating = not document.done()
        assert switched["adapter"] == str(adapter_b) and switched["identity"]

        assert (await asyncio.wait_for(document, T))["applied"] is True
        (edit,) = client.applied[0].edit.changes[uri]
        assert edit.new_text == tiny_kit.expected.read_text(encoding="utf-8")  # all A
        assert still_translating, "the document finished before the switch: the test proved nothing"

        b = b_pairs(tiny_kit)
        assert await hover(client, SOURCES[0], "h1.txt") == b[0].target  # new requests: B
        daemon.wait_for_adapter(adapter_b)
        assert daemon.status()["model"]["identity"] == switched["identity"]

        # A bad directory: an LSP error carrying the message; the daemon keeps B.
        with pytest.raises(Exception, match="does not exist"):
            await client.workspace_execute_command_async(types.ExecuteCommandParams(
                command="asmr.useAdapter", arguments=[str(adapter_b / "missing")]))

        # The command line: a bad directory fails with the daemon's message, a good one switches.
        rc, out = await use_adapter_cli(str(adapter_b / "missing"))
        assert rc == 1 and "does not exist" in out
        rc, out = await use_adapter_cli(str(tiny_kit.native_adapter_dir))  # A, under native names
        assert rc == 0 and "identity" in out, out
        assert await hover(client, SOURCES[1], "h2.txt") == a_target(tiny_kit, SOURCES[1])
        daemon.wait_for_adapter(tiny_kit.native_adapter_dir)

        # SIGHUP after editing [model] adapter in the config.
        daemon.set_adapter(adapter_b)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for_adapter(adapter_b)
        assert await hover(client, SOURCES[3], "h3.txt") == b[3].target

        # Corrections saved in the editor (bilingual layout) reach export-dataset.
        bilingual = open_doc(client, "bi.txt", f"{SOURCES[4]}\n温茶泡好啦！\n")
        client.text_document_did_save(types.DidSaveTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=bilingual)))
        exported = daemon.state.parent / "corrections.jsonl"
        await apoll_until(lambda: main(["export-dataset", str(exported), "--state-dir", str(daemon.state)]) == 0, T,
                          "the correction to reach the memory", interval=0.2)
        assert read_dataset(exported) == [TrainingPair(SOURCES[4], "温茶泡好啦！")]
    finally:
        await client.shutdown_session()
        await client.stop()

    assert daemon.status()["model"]["base_loads"] == 1  # three switches, one base load
    # engine counters reach the status with the next heartbeat
    await apoll_until(lambda: (daemon.status() or {}).get("engine", {}).get("adapter_switches") == 3, 30,
                      lambda: f"3 adapter switches in {daemon.status()}", interval=0.5)
    log = daemon.log_path.read_text()
    assert log.count("loading model") == 1 and "the base model was not reloaded" in log


def test_use_adapter_without_a_daemon_is_a_clear_error(tiny_kit: Kit, tmp_path: Path, capsys) -> None:
    assert main(["use-adapter", str(tiny_kit.native_adapter_dir)]) == 1
    assert "no daemon is running" in capsys.readouterr().err
    # A folder that is no adapter is told before any daemon is asked.
    assert main(["use-adapter", str(tmp_path)]) == 1
    assert f"{tmp_path} is not a peft adapter directory" in capsys.readouterr().err
