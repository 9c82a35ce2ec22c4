"""The real Claude Code, Codex and Gemini CLIs, and what each needs to talk to its stub.

``installed(cli)`` is the pinned executable that tests/install-clis puts in .cache/npm
(installed on first use). Where it cannot be installed (no npm, no registry) the test is
skipped with the reason, except under CI (CI=true), where it fails: CI must never pass
by silently skipping the real CLIs.

``stub_for(cli)`` starts the model API stub of that CLI (tests/stubs/); ``cli_env(cli,
stub, home)`` is the environment that sends the CLI to it and keeps the CLI's
configuration and sessions under ``home``.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.process.conftest import claude_env, skip_or_fail
from tests.stubs.anthropic_api import AnthropicStub
from tests.stubs.gemini_api import GeminiStub, gemini_home
from tests.stubs.openai_api import OpenAIStub

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_CLIS = REPO_ROOT / "tests" / "install-clis"
INSTALL_TIMEOUT = 600  # seconds; a cold npm install of all three takes about 30

CLIS = ("claude", "codex", "gemini")
# A model each pinned CLI knows (the stubs answer any).
MODELS = {"claude": "claude-sonnet-4-5", "codex": "gpt-5.5", "gemini": "gemini-2.5-flash"}

Stub = AnthropicStub | OpenAIStub | GeminiStub


@functools.cache
def _install(cli: str) -> tuple[Path | None, str]:
    try:
        done = subprocess.run(
            [str(INSTALL_CLIS), cli],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, f"tests/install-clis could not run: {error}"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        detail = (done.stderr.strip() or done.stdout.strip())[-1000:]
        return None, f"tests/install-clis {cli} failed ({done.returncode}): {detail}"
    binary = Path(lines[-1].split(" ", 1)[1])
    if not os.access(binary, os.X_OK):
        return None, f"tests/install-clis printed {binary}, which is not executable"
    return binary, ""


def installed(cli: str) -> Path:
    """The pinned ``cli``, installed if needed; skips (fails under CI) when it cannot be."""
    binary, problem = _install(cli)
    if binary is None:
        skip_or_fail(problem)
    return binary


def stub_for(cli: str) -> Stub:
    """A started stub of ``cli``'s model API (the caller closes it)."""
    kind: Any = {"claude": AnthropicStub, "codex": OpenAIStub, "gemini": GeminiStub}[cli]
    stub: Stub = kind().start()
    return stub


def cli_env(cli: str, stub: Stub, home: Path) -> dict[str, str]:
    """The environment that sends ``cli`` to ``stub``, with ``home`` as its home.

    API errors fail at once (no retries): a test of an error waits for no back-off.
    """
    if cli == "claude":
        assert isinstance(stub, AnthropicStub)
        return claude_env(stub, home, CLAUDE_CODE_MAX_RETRIES="0")
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "PATH": os.environ.get("PATH", os.defpath),
    }
    if cli == "codex":
        codex_home = home / ".codex"
        codex_home.mkdir(parents=True, exist_ok=True)
        (codex_home / "config.toml").write_text(
            'model_provider = "stub"\n'
            "\n"
            "[model_providers.stub]\n"
            'name = "stub"\n'
            f'base_url = "{stub.base_url}/v1"\n'
            'env_key = "OPENAI_API_KEY"\n'
            'wire_api = "responses"\n'
            "request_max_retries = 0\n"
            "stream_max_retries = 0\n",
            encoding="utf-8",
        )
        # The key is a fake the stub accepts, not a secret.
        return env | {"CODEX_HOME": str(codex_home), "OPENAI_API_KEY": "sk-fake"}
    gemini_home(home, max_attempts=1)
    return env | {
        "GEMINI_CLI_HOME": str(home),
        "GEMINI_API_KEY": "fake-key",
        "GOOGLE_GEMINI_BASE_URL": stub.base_url,
    }
