"""`ductor` imports the module of the subcommand that runs and no other, so that `ductor
chat` and `ductor --help` answer quickly; every subcommand still parses as before."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ductor.cli.main import main, subcommand

REPO = Path(__file__).resolve().parents[2]
EVERY_COMMAND = ("init", "agent", "status", "logs", "chat", "cron", "outbox", "doctor")


def modules_after(code: str) -> set[str]:
    """The modules loaded in a fresh interpreter after running ``code``."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib")}
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(done.stdout.split())


def test_the_subcommand_is_found_after_the_options_of_ductor_itself() -> None:
    assert subcommand(["--config-dir", "/x", "-v", "chat", "main", "-m", "hi"]) == "chat"
    assert subcommand(["--system", "status"]) == "status"
    assert subcommand(["--state-dir", "cron", "doctor"]) == "doctor"  # a value, not a command
    assert subcommand(["--help"]) is None


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    shown = capsys.readouterr().out
    for command in EVERY_COMMAND:
        assert f"    {command} " in shown, command


def test_a_subcommand_gets_its_own_arguments_after_options_of_ductor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--config-dir", str(tmp_path), "chat", "nosuch", "-m", "hello"])
    err = capsys.readouterr().err
    assert code != 0
    assert "nosuch" in err and str(tmp_path) in err  # chat ran, with that config dir


def test_chat_loads_neither_the_other_subcommands_nor_the_config_schema() -> None:
    loaded = modules_after(
        "from ductor.cli.main import build_parser\n"
        "build_parser('chat').parse_args(['chat', 'main', '-m', 'hi'])"
    )
    assert "ductor.cli.chat" in loaded
    others = {f"ductor.cli.{name}" for name in ("init", "cron", "outbox", "doctor", "logs")}
    assert not loaded & others
    assert not {"ductor.config.schema", "ductor.config.load", "asyncio"} & loaded


def test_help_imports_no_subcommand_module_but_the_overviews() -> None:
    loaded = modules_after(
        "from ductor.cli.main import build_parser\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    build_parser(None).parse_args(['--help'])"
    )
    modules = {f"ductor.cli.{name}" for name in EVERY_COMMAND if name != "agent"}
    assert loaded & modules == {"ductor.cli.status"}  # `ductor` alone shows the overview
