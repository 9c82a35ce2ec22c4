"""Loading an agent's configuration: defaults, then ductor.toml, then agents/NAME.toml.

Each file is checked on its own (so an error names the file it is in, with the line of
the key), then the files are merged table by table (arrays are replaced, not appended)
and the checks that involve several keys run on the result.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ductor.config import schema
from ductor.config.scan import KeyPath, ScannedDocument, dotted, parse_key, scan
from ductor.config.schema import AgentConfig
from ductor.config.secrets import check_secret_files
from ductor.config.unknown import Problem, SecretAdvice
from ductor.config.validate import CROSS_CHECKS, Checker, build, merge
from ductor.errors import ConfigError
from ductor.paths import Paths, validate_agent_name

_TOMLLIB_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")
_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*')"""
_KEY_LINE = re.compile(rf"^\s*({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")
_HEADER_LINE = re.compile(r"^\s*\[\[?\s*([^\]#]+?)\s*\]\]?\s*(?:#.*)?$")


def secret_advice(credentials_root: Path, agent: str) -> SecretAdvice:
    """How to store a secret found in a config file (the value itself is never shown)."""

    def advice(name: str | None) -> str:
        intro = "secrets must not be stored in config files: delete this line and put the value"
        if name is None:
            return (
                f"{intro} in a file of its own under {credentials_root / agent}/,"
                " readable only by you (`chmod 600 FILE`)"
            )
        if name.isupper():  # an environment variable the CLI reads: the agent's .env
            file = credentials_root / agent / ".env"
            return (
                f"{intro} into {file} as the line {name}=VALUE instead, readable only by you"
                f" (`chmod 600 {file}`)"
            )
        file = credentials_root / agent / name
        return f"{intro} alone in {file} instead, readable only by you (`chmod 600 {file}`)"

    return advice


@dataclass
class Layer:
    """One config file: its text, the checked part of its data and its problems."""

    file: Path
    text: str
    data: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    fatal: ConfigError | None = None
    _doc: ScannedDocument | None = None

    def line_of(self, path: KeyPath) -> int | None:
        if self._doc is None:
            try:
                self._doc = scan(self.text)
            except (ValueError, IndexError):  # not expected on text tomllib accepted
                return None
        return self._doc.line_of(path)

    def error(self, problem: Problem) -> ConfigError:
        return ConfigError(
            problem.detail,
            file=self.file,
            key=dotted(problem.path),
            line=self.line_of(problem.path),
        )

    def errors(self) -> list[ConfigError]:
        if self.fatal is not None:
            return [self.fatal]
        errors = [self.error(problem) for problem in self.problems]
        return sorted(errors, key=lambda error: error.line or 0)


MAX_CONFIG_BYTES = 16 * 1024 * 1024


def read_text(file: Path) -> str | None:
    """The text of a config file without a byte-order mark; None if it does not exist.

    Only a regular file is read (a symlink to one is fine): a FIFO would block the
    reading unit at start for ever, a device would feed it without end.
    """
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read this file: {exc.strerror or exc}", file=file) from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ConfigError("not a regular file (a FIFO, device or directory?)", file=file)
        try:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read this file: {exc.strerror or exc}", file=file) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"larger than {MAX_CONFIG_BYTES} bytes", file=file)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("expected UTF-8 text", file=file, line=line) from None
    return text.removeprefix("\ufeff")


def parse_toml(text: str, file: Path) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(str(exc), text, file) from None


def _syntax_error(message: str, text: str, file: Path) -> ConfigError:
    match = _TOMLLIB_POSITION.search(message)
    reason = message[: match.start()] if match else message
    line: int | None = None
    if match and match.group(1):
        line = int(match.group(1))
        reason += f" (column {match.group(2)})"
    elif match:
        line = text.count("\n") + (0 if text.endswith("\n") else 1)
    return ConfigError(
        f"invalid TOML: {reason}", file=file, key=_key_on_line(text, line), line=line
    )


def _key_on_line(text: str, line: int | None) -> str | None:
    """Best guess of the dotted key a broken line defines (its table plus its key)."""
    if line is None:
        return None
    lines = text.splitlines()
    if not 0 < line <= len(lines):
        return None
    key = _KEY_LINE.match(lines[line - 1])
    if key is None:
        return None
    local = re.sub(r"\s*\.\s*", ".", key.group(1))
    for above in reversed(lines[: line - 1]):
        header = _HEADER_LINE.match(above)
        if header:
            return f"{header.group(1).strip()}.{local}"
    return local


def layer_from_text(file: Path, text: str, advice: SecretAdvice) -> Layer:
    try:
        raw = parse_toml(text, file)
    except ConfigError as error:
        return Layer(file, text, fatal=error)
    checker = Checker(advice)
    data = checker.table(AgentConfig, raw, ())
    return Layer(file, text, data, checker.problems)


def read_layer(file: Path, advice: SecretAdvice) -> Layer | None:
    try:
        text = read_text(file)
    except ConfigError as error:
        return Layer(file, "", fatal=error)
    return None if text is None else layer_from_text(file, text, advice)


def _contains(data: dict[str, Any], path: KeyPath) -> bool:
    node: Any = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def evaluate(layers: Sequence[Layer]) -> tuple[AgentConfig, list[ConfigError]]:
    """The merged configuration of ``layers`` (lowest first) and every problem found."""
    errors: list[ConfigError] = []
    merged: dict[str, Any] = {}
    for layer in layers:
        errors.extend(layer.errors())
        merged = merge(merged, layer.data)
    config: AgentConfig = build(AgentConfig, merged)
    for check in CROSS_CHECKS:
        details = check(config)
        if details:
            errors.append(_attribute(details, layers))
    return config, errors


def _attribute(details: dict[str, str], layers: Sequence[Layer]) -> ConfigError:
    """Blame the highest file that sets one of the keys involved."""
    for layer in reversed(layers):
        for key, detail in details.items():
            path = parse_key(key)
            if _contains(layer.data, path):
                return layer.error(Problem(path, detail))
    key, detail = next(iter(details.items()))
    return ConfigError(detail, key=key)


def layers_of(paths: Paths, name: str) -> list[Layer]:
    """Agent ``name``'s config files that exist, lowest first, each checked on its own."""
    validate_agent_name(name)
    advice = secret_advice(paths.config_dir / "credentials", name)
    layers = [read_layer(file, advice) for file in (paths.global_config, paths.agent_config(name))]
    return [layer for layer in layers if layer is not None]


def load_agent_config(paths: Paths, name: str) -> AgentConfig:
    """The effective config of agent ``name``; raises the first problem as ConfigError."""
    config, errors = evaluate(layers_of(paths, name))
    if errors:
        raise errors[0]
    return config


def validate_all(paths: Paths, name: str) -> list[ConfigError]:
    """Every problem of agent ``name``'s config files and stored secrets (for a doctor)."""
    _, errors = evaluate(layers_of(paths, name))
    return errors + check_secret_files(paths, name)


def validate_global(paths: Paths) -> list[ConfigError]:
    """Every problem of the global file on its own (defaults overlaid by it)."""
    layer = read_layer(
        paths.global_config, secret_advice(paths.config_dir / "credentials", "AGENT")
    )
    _, errors = evaluate([layer] if layer is not None else [])
    return errors


def load_files(files: Sequence[Path], *, agent: str = "AGENT") -> AgentConfig:
    """The config that ``files`` (lowest first; missing ones skipped) make together."""
    advice = secret_advice(files[0].parent / "credentials" if files else Path("credentials"), agent)
    layers = [layer for layer in (read_layer(file, advice) for file in files) if layer is not None]
    config, errors = evaluate(layers)
    if errors:
        raise errors[0]
    return config


# -- what changed, and does it need a restart ------------------------------------------


def get_value(config: AgentConfig, key: str) -> Any:
    """The value of a dotted schema key, e.g. ``get_value(config, "streaming.enabled")``."""
    node: Any = config
    for part in key.split("."):
        node = getattr(node, part)
    return node


def is_hot(key: str) -> bool:
    """True if a change of ``key`` applies on reload (indexes like ``[0]`` are ignored)."""
    base = re.sub(r"\[\d+\].*$", "", key)
    return base in schema.HOT_KEYS


def changed_keys(old: AgentConfig, new: AgentConfig) -> list[str]:
    """The dotted keys whose value differs between two configs."""
    return [key for key in schema.SCHEMA_KEYS if get_value(old, key) != get_value(new, key)]


def restart_needed(old: AgentConfig, new: AgentConfig) -> list[str]:
    """Changed keys that only take effect after the agent's units restart."""
    return [key for key in changed_keys(old, new) if key not in schema.HOT_KEYS]
