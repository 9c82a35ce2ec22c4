"""Model discovery from the installed CLIs: a real process speaking codex app-server's
JSON-RPC (tests/fakecli/codex_app_server.py), and a gemini-cli package tree on disk."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from ductor import __version__, clipath
from ductor.errors import TemporaryError
from ductor.providers import discovery
from ductor.providers.discovery import discover_codex, discover_gemini, model_catalog
from ductor.providers.models import ModelInfo
from ductor.providers.request import Provider

FAKE_APP_SERVER = Path(__file__).resolve().parents[1] / "fakecli" / "codex_app_server.py"


def fake_codex(directory: Path) -> Path:
    """A ``codex`` executable that runs the fake app-server with this interpreter."""
    directory.mkdir(parents=True, exist_ok=True)
    codex = directory / "codex"
    codex.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_APP_SERVER}" "$@"\n')
    codex.chmod(0o755)
    return codex


def server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "FAKE_APP_SERVER_PIDFILE": str(tmp_path / "server.pid"),
        "FAKE_APP_SERVER_RECORD": str(tmp_path / "requests.jsonl"),
        **extra,
    }


def assert_server_gone(tmp_path: Path) -> None:
    """The server's pid no longer exists: killed *and* reaped (a zombie would still
    answer signal 0 and keep its /proc entry)."""
    pid = int((tmp_path / "server.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not Path(f"/proc/{pid}").exists()


def process_state(stat: Path) -> str:
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def test_discover_codex_maps_the_listed_models_with_their_efforts_and_default(
    tmp_path: Path,
) -> None:
    models = discover_codex(fake_codex(tmp_path / "bin"), env=server_env(tmp_path))

    assert [m.id for m in models] == ["gpt-5.5", "gpt-5.4-mini", "gpt-5.3-codex-spark"]
    assert models[0] == ModelInfo(
        id="gpt-5.5",
        display_name="GPT-5.5",
        description="Latest frontier agentic coding model.",
        efforts=("low", "medium", "high", "xhigh"),
        default_effort="medium",
        is_default=True,
    )
    assert models[1].efforts == ("medium", "high")
    assert not models[1].is_default
    assert models[2].efforts == ()
    assert models[2].default_effort == "low"


def test_discover_codex_sends_initialize_with_ductor_version_then_model_list(
    tmp_path: Path,
) -> None:
    discover_codex(fake_codex(tmp_path / "bin"), env=server_env(tmp_path))

    lines = (tmp_path / "requests.jsonl").read_text().splitlines()
    requests = [json.loads(line) for line in lines]
    assert requests == [
        {
            "jsonrpc": "2.0",
            "method": "initialize",
            "id": 1,
            "params": {"clientInfo": {"name": "ductor", "version": __version__}},
        },
        {"jsonrpc": "2.0", "method": "model/list", "id": 2, "params": {}},
    ]


def test_discover_codex_skips_notifications_and_server_requests_before_the_answer(
    tmp_path: Path,
) -> None:
    # The fake sends a notification with a "data" list and a request of its own with
    # id 2 before its answer; neither may be taken for the model list.
    models = discover_codex(fake_codex(tmp_path / "bin"), env=server_env(tmp_path))

    assert "bogus" not in {m.id for m in models}
    assert len(models) == 3


def test_discover_codex_stops_and_reaps_the_server_after_the_answer(tmp_path: Path) -> None:
    discover_codex(fake_codex(tmp_path / "bin"), env=server_env(tmp_path))

    assert_server_gone(tmp_path)


def test_discover_codex_when_model_list_fails_raises_temporary_error_with_the_reason(
    tmp_path: Path,
) -> None:
    env = server_env(tmp_path, FAKE_APP_SERVER_MODE="error")

    with pytest.raises(TemporaryError, match=r"model/list with error -32603: model list failed"):
        discover_codex(fake_codex(tmp_path / "bin"), env=env)
    assert_server_gone(tmp_path)


def test_discover_codex_when_server_never_answers_times_out_and_kills_it(
    tmp_path: Path,
) -> None:
    env = server_env(tmp_path, FAKE_APP_SERVER_MODE="hang")
    started = time.monotonic()

    with pytest.raises(TemporaryError, match=r"did not answer model/list within 1 s"):
        discover_codex(fake_codex(tmp_path / "bin"), env=env, timeout=1)
    assert time.monotonic() - started < 10
    assert_server_gone(tmp_path)


def test_discover_codex_kills_a_server_that_ignores_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discovery, "_TERM_GRACE", 0.2)
    env = server_env(tmp_path, FAKE_APP_SERVER_MODE="hang", FAKE_APP_SERVER_IGNORE_SIGTERM="1")

    with pytest.raises(TemporaryError):
        discover_codex(fake_codex(tmp_path / "bin"), env=env, timeout=1)
    assert_server_gone(tmp_path)


def test_discover_codex_also_stops_what_the_server_started(tmp_path: Path) -> None:
    # npm's `codex` is a node script that runs the native binary as its child; here a
    # shell that does not exec stands in for it, and the fake server is the grandchild.
    wrapper = tmp_path / "codex"
    wrapper.write_text(f'#!/bin/sh\n"{sys.executable}" "{FAKE_APP_SERVER}" "$@"\n')
    wrapper.chmod(0o755)

    with pytest.raises(TemporaryError):
        discover_codex(wrapper, env=server_env(tmp_path, FAKE_APP_SERVER_MODE="hang"), timeout=1)

    # Not our child, so init reaps it: wait until it is gone or a zombie.
    stat = Path(f"/proc/{int((tmp_path / 'server.pid').read_text())}/stat")
    deadline = time.monotonic() + 5
    while (state := process_state(stat)) not in ("gone", "Z"):
        assert time.monotonic() < deadline, f"the app-server grandchild is still {state}"
        time.sleep(0.05)


def test_discover_codex_when_the_server_exits_early_says_so_with_its_stderr(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "codex"
    broken.write_text('#!/bin/sh\necho "codex: not logged in" >&2\nexit 3\n')
    broken.chmod(0o755)

    with pytest.raises(TemporaryError, match=r"exit code 3.*not logged in"):
        discover_codex(broken, env=dict(os.environ))


def test_discover_codex_when_the_executable_is_missing_raises_temporary_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(TemporaryError, match="cannot start"):
        discover_codex(tmp_path / "no-such-codex", env={})


MODELS_JS = """\
/**
 * @license
 * Copyright 2025 Google LLC
 */
export const PREVIEW_GEMINI_MODEL = 'gemini-3-pro-preview';
export const DEFAULT_GEMINI_MODEL = 'gemini-2.5-pro';
export const DEFAULT_GEMINI_FLASH_MODEL = 'gemini-2.5-flash';
export const DEFAULT_GEMINI_FLASH_LITE_MODEL = 'gemini-2.5-flash-lite';
export const VALID_GEMINI_MODELS = new Set([
    PREVIEW_GEMINI_MODEL,
    DEFAULT_GEMINI_MODEL,
    DEFAULT_GEMINI_FLASH_MODEL,
    DEFAULT_GEMINI_FLASH_LITE_MODEL,
    "gemini-3.1-pro-preview",
]);
export const PREVIEW_GEMINI_MODEL_AUTO = 'auto-gemini-3';
export const DEFAULT_GEMINI_EMBEDDING_MODEL = 'gemini-embedding-001';
export const IMAGE_MODEL = 'gemini-2.5-flash-image';
export function isGemini2Model(model) {
    return model === 'gemini-2.0-flash' || /^gemini-2(\\.|$)/.test(model);
}
"""


def gemini_package(prefix: Path, *, models_js: str | None = MODELS_JS) -> Path:
    """A global npm install under ``prefix``: the cli package, its core package nested
    inside it, and ``<prefix>/bin/gemini`` a symlink to the cli's entry point."""
    package = prefix / "lib" / "node_modules" / "@google" / "gemini-cli"
    (package / "dist").mkdir(parents=True)
    (package / "dist" / "index.js").write_text(
        "#!/usr/bin/env node\nimport { DEFAULT_GEMINI_MODEL } from '@google/gemini-cli-core';\n"
        "console.log('gemini-1.5-pro', DEFAULT_GEMINI_MODEL);\n"
    )
    (package / "dist" / "index.js").chmod(0o755)  # npm makes the bin target executable
    (package / "package.json").write_text('{"name": "@google/gemini-cli"}\n')
    if models_js is not None:
        config = package / "node_modules" / "@google" / "gemini-cli-core" / "dist" / "src"
        (config / "config").mkdir(parents=True)
        (config / "config" / "models.js").write_text(models_js)
    (prefix / "bin").mkdir()
    gemini = prefix / "bin" / "gemini"
    gemini.symlink_to(
        Path("..", "lib", "node_modules", "@google", "gemini-cli", "dist", "index.js")
    )
    return gemini


def test_discover_gemini_reads_the_valid_models_of_the_core_package(tmp_path: Path) -> None:
    gemini = gemini_package(tmp_path / "prefix")

    models = discover_gemini(gemini)

    assert [m.id for m in models] == [
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-2.5-pro",
        "gemini-3-pro-preview",
        "gemini-3.1-pro-preview",
    ]
    assert all(m == ModelInfo(m.id) for m in models)


def test_discover_gemini_without_a_valid_set_takes_every_quoted_id_of_models_js(
    tmp_path: Path,
) -> None:
    models_js = MODELS_JS.split("export const VALID_GEMINI_MODELS", maxsplit=1)[0]
    models_js += "const DUPLICATE = 'gemini-2.5-pro';\n"
    gemini = gemini_package(tmp_path / "prefix", models_js=models_js)

    assert [m.id for m in discover_gemini(gemini)] == [
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-2.5-pro",
        "gemini-3-pro-preview",
    ]


def test_discover_gemini_finds_a_local_install_through_node_modules_bin(tmp_path: Path) -> None:
    # npm install (not -g) hoists the core package next to the cli, and the models live
    # in a bundle chunk of the cli's dist/ rather than in the core package.
    package = tmp_path / "node_modules" / "@google" / "gemini-cli"
    (package / "dist" / "chunks").mkdir(parents=True)
    (package / "dist" / "gemini.js").write_text("import './chunks/chunk-1.js';\n")
    (package / "dist" / "chunks" / "chunk-1.js").write_text(
        'var TOKEN_LIMITS = { "gemini-1.5-pro": 2097152 };\n'
        'var DEFAULT_GEMINI_MODEL = "gemini-2.5-pro";\n'
        'var PREVIEW_GEMINI_FLASH_MODEL = "gemini-3-flash-preview";\n'
        "var VALID_GEMINI_MODELS = /* @__PURE__ */ new Set([\n"
        "  DEFAULT_GEMINI_MODEL,\n  PREVIEW_GEMINI_FLASH_MODEL\n]);\n"
    )
    (tmp_path / "node_modules" / ".bin").mkdir()
    gemini = tmp_path / "node_modules" / ".bin" / "gemini"
    gemini.symlink_to(Path("..", "@google", "gemini-cli", "dist", "gemini.js"))

    assert [m.id for m in discover_gemini(gemini)] == ["gemini-2.5-pro", "gemini-3-flash-preview"]


def test_discover_gemini_when_the_package_has_no_model_list_raises_temporary_error(
    tmp_path: Path,
) -> None:
    gemini = gemini_package(tmp_path / "prefix", models_js=None)

    with pytest.raises(TemporaryError, match="found no model list in the gemini-cli package"):
        discover_gemini(gemini)


def test_discover_gemini_when_models_js_is_garbled_raises_temporary_error(
    tmp_path: Path,
) -> None:
    gemini = gemini_package(tmp_path / "prefix", models_js="\x00\ufffd truncated downlo")

    with pytest.raises(TemporaryError, match="found no model list"):
        discover_gemini(gemini)


def test_discover_gemini_when_not_in_a_gemini_cli_package_raises_temporary_error(
    tmp_path: Path,
) -> None:
    lonely = tmp_path / "bin" / "gemini"
    lonely.parent.mkdir()
    lonely.write_text("#!/bin/sh\n")

    with pytest.raises(TemporaryError, match="not part of an installed @google/gemini-cli"):
        discover_gemini(lonely)


def catalog_env(tmp_path: Path, bin_dir: Path) -> dict[str, str]:
    bin_dir.mkdir(parents=True, exist_ok=True)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path / "home")}


def test_model_catalog_discovers_with_the_cli_found_on_path_and_writes_the_caches(
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "prefix" / "bin"
    fake_codex(bin_dir)
    gemini_link = gemini_package(tmp_path / "gemini-prefix")
    (bin_dir / "gemini").symlink_to(gemini_link)
    catalog = model_catalog(tmp_path / "config", env=catalog_env(tmp_path, bin_dir))

    codex_ids = catalog[Provider.CODEX].refresh()
    gemini_ids = catalog[Provider.GEMINI].refresh()

    assert [m.id for m in codex_ids] == ["gpt-5.5", "gpt-5.4-mini", "gpt-5.3-codex-spark"]
    assert "gemini-3.1-pro-preview" in {m.id for m in gemini_ids}  # not in the fallback
    cached = json.loads((tmp_path / "config" / "codex_models.json").read_text())
    assert cached["models"][0]["supported_efforts"] == ["low", "medium", "high", "xhigh"]
    cached = json.loads((tmp_path / "config" / "gemini_models.json").read_text())
    assert [m["id"] for m in cached["models"]] == [m.id for m in gemini_ids]


def test_model_catalog_when_codex_is_missing_keeps_the_cached_list(tmp_path: Path) -> None:
    env = catalog_env(tmp_path, tmp_path / "empty-bin")
    if clipath.find_cli("codex", env) is not None:
        pytest.skip("a codex is installed system-wide, so it cannot be missing here")
    cache = tmp_path / "config" / "codex_models.json"
    cache.parent.mkdir()
    cache.write_text(
        json.dumps(
            {
                "last_updated": "2026-11-20T12:00:00+00:00",
                "models": [{"id": "gpt-cached", "supported_efforts": ["high"]}, "gpt-other"],
            }
        )
    )
    before = cache.read_bytes()

    models = model_catalog(tmp_path / "config", env=env)[Provider.CODEX].refresh()

    assert [m.id for m in models] == ["gpt-cached", "gpt-other"]
    assert models[0].efforts == ("high",)
    assert cache.read_bytes() == before


def test_model_catalog_says_which_cli_is_not_installed(tmp_path: Path) -> None:
    env = catalog_env(tmp_path, tmp_path / "empty-bin")
    if clipath.find_cli("gemini", env) is not None:
        pytest.skip("a gemini is installed system-wide, so it cannot be missing here")
    gemini = model_catalog(tmp_path / "config", env=env)[Provider.GEMINI]

    with pytest.raises(TemporaryError, match="gemini is not installed"):
        gemini.discover()
    assert not (tmp_path / "config").exists()
