"""Asking the installed CLIs which models they have: Codex through ``codex app-server``,
Gemini by reading the model constants out of the installed gemini-cli package.

Both raise TemporaryError when they cannot tell; :class:`DiscoveredModels` then keeps the
last known list, so :func:`model_catalog` is what the rest of ductor uses.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import selectors
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from ductor import __version__, clipath
from ductor.errors import TemporaryError
from ductor.providers.env import child_env
from ductor.providers.models import CODEX_FALLBACK, GEMINI_FALLBACK, DiscoveredModels, ModelInfo
from ductor.providers.request import Provider

log = logging.getLogger(__name__)

_MODEL_LIST_ID = 2
_REQUESTS = (
    {
        "jsonrpc": "2.0",
        "method": "initialize",
        "id": 1,
        "params": {"clientInfo": {"name": "ductor", "version": __version__}},
    },
    {"jsonrpc": "2.0", "method": "model/list", "id": _MODEL_LIST_ID, "params": {}},
)
# How long app-server gets to exit on SIGTERM before the whole group is killed.
_TERM_GRACE = 2.0


def discover_codex(
    executable: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> list[ModelInfo]:
    """The models ``codex app-server`` lists (JSON-RPC ``initialize``, then ``model/list``).

    ``env`` is the server's whole environment (default: a clean CLI environment built
    from ours). The server does not exit by itself; it is stopped and reaped, together
    with anything it started, however the exchange ends.
    """
    argv = [os.fspath(executable), "app-server"]
    child = dict(env) if env is not None else cli_env(os.environ)
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryFile() as stderr:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=child,
                start_new_session=True,  # a process group of its own, to stop it whole
            )
        except OSError as exc:
            raise TemporaryError(f"cannot start {argv[0]} app-server: {exc}") from exc
        try:
            reply = _exchange(proc, deadline, timeout)
        except TemporaryError as exc:
            raise TemporaryError(f"{exc}{_stderr_tail(stderr)}") from None
        finally:
            _stop(proc)
    return _models_from(reply)


def _exchange(proc: subprocess.Popen[bytes], deadline: float, timeout: float) -> object:
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b"".join(json.dumps(r).encode() + b"\n" for r in _REQUESTS))
        proc.stdin.flush()
    except BrokenPipeError:
        pass  # it exited already; reading its output to the end says how
    fd = proc.stdout.fileno()
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                found, result = _reply(line)
                if found:
                    return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TemporaryError(
                    f"codex app-server did not answer model/list within {timeout:g} s"
                )
            if not selector.select(remaining):
                continue
            if not (chunk := os.read(fd, 65536)):
                with contextlib.suppress(subprocess.TimeoutExpired):  # for its exit code
                    proc.wait(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
                status = "" if proc.returncode is None else f" (exit code {proc.returncode})"
                raise TemporaryError(f"codex app-server ended before answering model/list{status}")
            buffer += chunk


def _reply(line: bytes) -> tuple[bool, object]:
    """(True, result) for the answer to model/list; notifications and requests are skipped."""
    try:
        message = json.loads(line)
    except ValueError:
        log.debug("codex app-server: ignoring a line that is not JSON: %.200r", line)
        return False, None
    if not isinstance(message, dict) or "method" in message:
        return False, None  # a notification, or a request from the server to us
    if message.get("id") not in (1, _MODEL_LIST_ID):
        return False, None
    error = message.get("error")
    if error is not None:
        what = "initialize" if message.get("id") == 1 else "model/list"
        detail = error.get("message", error) if isinstance(error, dict) else error
        code = f" {error['code']}" if isinstance(error, dict) and "code" in error else ""
        raise TemporaryError(f"codex app-server answered {what} with error{code}: {detail}")
    if message.get("id") == 1:
        return False, None
    return True, message.get("result")


def _models_from(result: object) -> list[ModelInfo]:
    data = result.get("data") if isinstance(result, dict) else None
    if not isinstance(data, list):
        raise TemporaryError('codex app-server answered model/list without a "data" list')
    models = []
    for entry in data:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
            log.warning("codex app-server: ignoring a model without an id: %.200r", entry)
            continue
        efforts = entry.get("supportedReasoningEfforts")
        models.append(
            ModelInfo(
                id=entry["id"],
                display_name=_text(entry.get("displayName")),
                description=_text(entry.get("description")),
                efforts=tuple(filter(None, map(_effort, efforts)))
                if isinstance(efforts, list)
                else (),
                default_effort=_text(entry.get("defaultReasoningEffort")),
                is_default=entry.get("isDefault") is True,
            )
        )
    return models


def _effort(entry: object) -> str:
    return _text(entry.get("reasoningEffort")) if isinstance(entry, dict) else _text(entry)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=_TERM_GRACE)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
    _signal_group(proc.pid, signal.SIGKILL)  # whatever the server started and left behind
    if proc.stdout is not None:
        proc.stdout.close()


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _stderr_tail(stderr: IO[bytes]) -> str:
    stderr.seek(0)
    lines = stderr.read().decode(errors="replace").strip().splitlines()
    return f"; its stderr ends: {lines[-1][:300]}" if lines else ""


# A model id as a JavaScript string literal: 'gemini-2.5-pro', "gemini-3-pro-preview".
_QUOTED_ID = r"""(?P<quote>['"`])(?P<id>gemini-[0-9][0-9a-z.\-]*)(?P=quote)"""
_ASSIGNED_ID = re.compile(r"(?<![\w$])(?P<name>[A-Za-z_$][\w$]*)\s*=\s*" + _QUOTED_ID)
_VALID_SET = re.compile(r"VALID_GEMINI_MODELS\s*=\s*new\s+Set\(\s*\[(.*?)\]", re.DOTALL)
_SET_MEMBER = re.compile(_QUOTED_ID + r"|(?P<name>[A-Za-z_$][\w$.]*)")
_DEFINES_MODELS = re.compile(r"DEFAULT_GEMINI_MODEL\s*=\s*['\"`]gemini-|VALID_GEMINI_MODELS\s*=")
_CLI_PACKAGE = Path("@google", "gemini-cli")
_CORE_MODELS = Path("@google", "gemini-cli-core", "dist", "src", "config", "models.js")


def discover_gemini(executable: str | os.PathLike[str]) -> list[ModelInfo]:
    """The models the installed gemini-cli accepts, read from its JavaScript (never run)."""
    package = _gemini_package(Path(executable))
    if package is None:
        raise TemporaryError(
            f"{os.fspath(executable)} is not part of an installed @google/gemini-cli package;"
            " cannot read its model list"
        )
    problems: list[str] = []
    for source in _model_sources(package):
        try:
            text = source.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            problems.append(f"{source}: {exc.strerror or exc}")
            continue
        if not _DEFINES_MODELS.search(text):
            continue
        ids = _gemini_ids(text, whole_module=source.name == "models.js")
        if ids:
            log.debug("gemini models read from %s: %s", source, ", ".join(ids))
            return [ModelInfo(model_id) for model_id in ids]
    detail = f" ({'; '.join(problems)})" if problems else ""
    raise TemporaryError(f"found no model list in the gemini-cli package {package}{detail}")


def _gemini_package(executable: Path) -> Path | None:
    """``@google/gemini-cli`` from its ``gemini`` symlink, or from the npm layout around it."""
    resolved = executable.resolve()
    for directory in (resolved, *resolved.parents):
        if directory.name == "gemini-cli" and directory.parent.name == "@google":
            return directory
    above_bin = executable.absolute().parent.parent  # <prefix>, or node_modules above .bin
    guesses = (above_bin / "lib" / "node_modules" / _CLI_PACKAGE, above_bin / _CLI_PACKAGE)
    return next((guess for guess in guesses if guess.is_dir()), None)


def _model_sources(package: Path) -> list[Path]:
    """Where the model constants may be: the core package's models.js (nested, or hoisted
    next to the cli by npm), then the cli's own compiled or bundled files."""
    scripts = [p for top in ("dist", "bundle") for p in (package / top).rglob("*.*js")]
    scripts.sort(key=lambda path: (path.name != "models.js", path))
    core = (package / "node_modules" / _CORE_MODELS, package.parent.parent / _CORE_MODELS)
    return [path for path in (*core, *scripts) if path.is_file()]


def _gemini_ids(text: str, *, whole_module: bool) -> list[str]:
    """The ids in ``VALID_GEMINI_MODELS``; failing that, every id in a module of model
    constants, or the values of the ``*MODEL*`` constants in a bundle."""
    constants = {match["name"]: match["id"] for match in _ASSIGNED_ID.finditer(text)}
    ids: list[str] = []
    if (valid := _VALID_SET.search(text)) is not None:
        for member in _SET_MEMBER.finditer(valid[1]):
            name = (member["name"] or "").rsplit(".", 1)[-1]  # exports.X, models_1.X
            if model_id := member["id"] or constants.get(name):
                ids.append(model_id)
    if not ids and whole_module:
        ids = [match["id"] for match in re.finditer(_QUOTED_ID, text)]
    if not ids:
        ids = [value for name, value in constants.items() if "MODEL" in name.upper()]
    return sorted(set(ids))


def cli_env(source: Mapping[str, str]) -> dict[str, str]:
    """The clean environment a discovery runs a CLI in, with the PATH the units give it
    (a node CLI must find ``node`` where nvm put it)."""
    return {**child_env(source), "PATH": clipath.unit_path(source)}


def cli_installed(provider: Provider, env: Mapping[str, str]) -> bool:
    """The provider's CLI is on the PATH the units give it. Discovering the models of a
    CLI that is not installed is pointless, and not an error worth a warning."""
    return clipath.find_cli(provider.value, env) is not None


def _installed(provider: Provider, env: Mapping[str, str]) -> Path:
    if (found := clipath.find_cli(provider.value, env)) is None:
        raise TemporaryError(
            f"{provider.value} is not installed (looked in {clipath.unit_path(env)})"
        )
    return found


def model_catalog(
    cache_dir: Path, *, env: Mapping[str, str] | None = None
) -> dict[Provider, DiscoveredModels]:
    """The discovered model lists of Codex and Gemini, cached in ``cache_dir``."""
    source = os.environ if env is None else env

    def codex() -> Sequence[ModelInfo]:
        return discover_codex(_installed(Provider.CODEX, source), env=cli_env(source))

    def gemini() -> Sequence[ModelInfo]:
        return discover_gemini(_installed(Provider.GEMINI, source))

    sources = {Provider.CODEX: (codex, CODEX_FALLBACK), Provider.GEMINI: (gemini, GEMINI_FALLBACK)}
    return {
        provider: DiscoveredModels(provider, cache_dir / f"{provider}_models.json", find, fallback)
        for provider, (find, fallback) in sources.items()
    }
