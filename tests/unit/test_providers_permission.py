"""Every permission mode the config accepts reaches the CLIs: none is silently dropped."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ductor.config.schema import PERMISSION_MODES
from ductor.providers import claude, codex, gemini
from ductor.providers.request import PermissionMode, TurnRequest


@pytest.mark.parametrize("mode", PERMISSION_MODES)
def test_every_configurable_permission_mode_is_one_the_runner_passes_on(mode: str) -> None:
    assert PermissionMode(mode).value == mode


def test_dont_ask_is_passed_to_claude_as_its_own_permission_mode() -> None:
    argv = claude.build_argv(TurnRequest(prompt="x", permission_mode=PermissionMode("dontAsk")))
    assert argv[argv.index("--permission-mode") + 1] == "dontAsk"


@pytest.mark.parametrize("build", [codex.build_argv, gemini.build_argv])
def test_dont_ask_runs_codex_and_gemini_with_their_own_settings(
    build: Callable[[TurnRequest], list[str]],
) -> None:
    default = build(TurnRequest(prompt="x"))
    assert build(TurnRequest(prompt="x", permission_mode=PermissionMode.DONT_ASK)) == default
