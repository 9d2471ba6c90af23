"""Every subcommand driven with wrong paths, ports and options: one line naming what is wrong and
what to do, exit non-zero, no traceback, nothing written (#12 item 1, catch-all)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from kit import Kit

from asmr_daemon.cli import SUBCOMMANDS, main

from .conftest import cli, one_line_error

pytestmark = pytest.mark.slow


def cases(tmp: Path, kit: Kit) -> list[tuple[list[str], list[str]]]:
    """(argv, texts the error line must contain). ``{tmp}`` paths do not exist unless made here."""
    a_file = tmp / "a-file.txt"
    a_file.write_text("x\n", encoding="utf-8")
    folder = tmp / "folder"
    folder.mkdir()
    missing = tmp / "missing"
    base = ["--base-model", str(kit.base_dir)]
    return [
        (["serve", "--base-model", str(missing), "--state-dir", str(tmp / "s1")],
         [f"model directory {missing} does not exist", "give the checkpoint directory"]),
        (["serve", *base, "--lsp-tcp", "localhost", "--state-dir", str(tmp / "s2")],
         ["'localhost' is not HOST:PORT", "for example 127.0.0.1:9257"]),
        (["serve", *base, "--inbox", str(a_file), "--state-dir", str(tmp / "s3")],
         [f"inbox {a_file} is a file, not a folder", "give a folder"]),
        (["translate", str(missing)], [f"script {missing} does not exist", "check the path"]),
        (["translate", str(kit.script), "-o", str(a_file), *base], [f"-o {a_file} is a file, not a folder"]),
        (["translate", str(folder), *base], [f"script {folder} is a folder, not a file"]),
        (["lsp", "--socket", str(missing / "lsp.sock")], [f"no daemon is running (socket {missing / 'lsp.sock'})",
                                                          "use --standalone"]),
        (["lsp", "--standalone", "--base-model", str(missing)], [f"model directory {missing} does not exist"]),
        (["convert", str(missing), str(tmp / "dst")], [f"model directory {missing} does not exist"]),
        (["convert", str(kit.base_dir), str(a_file)], [f"output directory {a_file} is a file, not a folder"]),
        (["train", str(missing), *base, "--out", str(tmp / "adapter")], [f"data set {missing} does not exist"]),
        (["train", str(a_file), *base, "--out", str(a_file)], [f"--out {a_file} is a file, not a folder"]),
        (["train", str(a_file), *base, "--out", str(tmp / "adapter"), "--resume-from", str(missing)],
         [f"adapter directory {missing} does not exist"]),
        (["export-dataset", str(folder)], [f"{folder} is a folder", "give a file name"]),
        (["import-pairs", str(missing), "-o", str(tmp / "p.jsonl")], [f"input {missing} does not exist"]),
        (["import-pairs", str(kit.script), "-o", str(folder)], [f"-o {folder} is a folder", "give a file name"]),
        (["use-adapter", str(missing)], [f"adapter directory {missing} does not exist"]),
        (["status", "--state-dir", str(a_file)], [f"state dir {a_file} is a file, not a folder"]),
        (["install-service", "--config", str(missing)], [f"config file {missing} does not exist", "--config"]),
        (["demo", "--script", str(missing)], [f"--script {missing} does not exist", "check the path"]),
    ]


def test_every_subcommand_refuses_bad_arguments_in_one_line(tiny_kit: Kit, tmp_path: Path) -> None:
    table = cases(tmp_path, tiny_kit)
    # doctor answers with a table and inspect with a line per file: both below.
    assert {argv[0] for argv, _ in table} | {"doctor", "inspect"} == set(SUBCOMMANDS)
    before = sorted(p for p in tmp_path.rglob("*"))
    for argv, texts in table:
        result = cli(*argv)
        assert result.returncode != 0, (argv, result.stdout, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr, (argv, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith(f"asmr-daemon {argv[0]}: ")]
        assert len(errors) == 1, (argv, result.stderr)
        assert "(" in errors[0] and errors[0].rstrip().endswith(")") or "use --standalone" in errors[0], errors[0]
        for text in texts:
            assert text in errors[0], (argv, errors[0])
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written by any of them


def test_inspect_reports_a_missing_file_without_a_traceback(tmp_path: Path) -> None:
    result = cli("inspect", tmp_path / "missing.txt")
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert f"{tmp_path / 'missing.txt'}" in result.stdout + result.stderr


def test_doctor_with_a_missing_model_fails_with_rows_not_a_traceback(tmp_path: Path) -> None:
    result = cli("doctor", "--base-model", tmp_path / "missing", "--adapter", tmp_path / "nope")
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert f"model directory {tmp_path / 'missing'} does not exist" in result.stdout
    assert "skipped: needs a usable base model" in result.stdout


def test_a_port_in_use_and_a_taken_socket_are_refused_before_loading(tiny_kit: Kit, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--base-model", tiny_kit.base_dir, "--lsp-tcp", f"127.0.0.1:{port}",
                     "--state-dir", tmp_path / "s1", "--inbox", tmp_path / "in", "--outbox", tmp_path / "out")
    line = one_line_error(result, "serve")
    assert f"port {port} on 127.0.0.1 is already in use" in line and "choose another --lsp-tcp" in line
    path = tmp_path / "other.sock"
    with socket.socket(socket.AF_UNIX) as other_daemon:
        other_daemon.bind(str(path))
        other_daemon.listen()
        result = cli("serve", "--base-model", tiny_kit.base_dir, "--lsp-socket", path,
                     "--state-dir", tmp_path / "s2", "--inbox", tmp_path / "in", "--outbox", tmp_path / "out")
    line = one_line_error(result, "serve")
    assert f"another asmr-daemon already serves editors on {path}" in line and "--lsp-socket PATH" in line
    assert "loading model" not in result.stderr
    assert not (tmp_path / "s1").exists() and not (tmp_path / "s2").exists()


def test_an_unexpected_error_is_one_line_unless_asmr_debug(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import asmr_daemon.commands.status as status

    def broken(args: object) -> int:
        raise KeyError("heartbeat")

    monkeypatch.setattr(status, "run", broken)
    monkeypatch.delenv("ASMR_DEBUG", raising=False)
    assert main(["status"]) == 1
    assert capsys.readouterr().err == ("asmr-daemon status: error: unexpected KeyError: 'heartbeat' (this is a bug: "
                                       "run again with ASMR_DEBUG=1 to see the traceback, and report it)\n")
    monkeypatch.setenv("ASMR_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["status"])


def test_os_errors_name_the_absolute_path_without_errno(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import asmr_daemon.commands.status as status

    monkeypatch.chdir(tmp_path)

    def missing(args: object) -> int:
        open("work")  # noqa: SIM115 - the error is the point
        return 0

    monkeypatch.setattr(status, "run", missing)
    assert main(["status"]) == 1
    err = capsys.readouterr().err
    assert err == f"asmr-daemon status: error: {tmp_path / 'work'}: no such file or directory (check the path and try again)\n"
    assert "Errno" not in err


def test_train_refuses_an_existing_file_as_out_before_training(tiny_kit: Kit, tmp_path: Path) -> None:
    from asmr_daemon.dataset import write_dataset

    data = tmp_path / "data.jsonl"
    write_dataset(data, tiny_kit.pairs)
    out = tmp_path / "precious.txt"
    out.write_text("hours of work\n", encoding="utf-8")
    result = cli("train", data, "--base-model", tiny_kit.base_dir, "--out", out, "--device", "cpu", "--epochs", "1")
    line = one_line_error(result, "train")
    assert f"--out {out} is a file, not a folder" in line
    assert "epoch" not in result.stderr and "training on" not in result.stderr  # nothing was trained
    assert out.read_text(encoding="utf-8") == "hours of work\n"
