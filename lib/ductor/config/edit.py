"""Changing keys of a config file while keeping every other byte of it.

The new value is checked against the schema first; ``textedit`` changes the bytes of that
one key. Before anything is written the result is parsed again and must hold exactly the
old data plus the change, and it must not bring a problem the file did not have before
(so an unrelated old mistake does not block an edit). The write is atomic, keeps the
file's mode, and goes through a symlink to its target. Edits of files in one directory
are serialised with a lock on the directory.
"""

from __future__ import annotations

import copy
import dataclasses
import fcntl
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ductor import atomic
from ductor.config.load import (
    Layer,
    evaluate,
    layer_from_text,
    parse_toml,
    read_layer,
    read_text,
    secret_advice,
)
from ductor.config.scan import KeyPath, dotted, parse_key, scan
from ductor.config.textedit import remove_from_text, set_in_text
from ductor.config.unknown import SecretAdvice, unknown_key
from ductor.config.validate import Checker, Kind, Spec, describe, expected, fields_of, spec_at
from ductor.errors import ConfigError, DuctorError

NEW_FILE_MODE = 0o644
Change = Callable[[str, dict[str, Any]], tuple[str, dict[str, Any]]]


def set_value(
    path: Path, key: str | Sequence[str], value: Any, *, under: Sequence[Path] = ()
) -> None:
    """Set ``key`` (dotted, e.g. ``"streaming.edit_interval_seconds"``) in config ``path``.

    Creates the file and the table if needed. ``under`` are the files this one overlays
    (the global file when editing an agent's), so checks across keys see the merged
    result. Raises ConfigError, and leaves the file alone, if the edit is invalid.
    """
    set_values(path, [(key, value)], under=under)


def set_values(
    path: Path, values: Iterable[tuple[str | Sequence[str], Any]], *, under: Sequence[Path] = ()
) -> None:
    """Several ``set_value`` edits, checked together and written once."""
    advice = _advice_for(path)
    edits: list[tuple[tuple[str, ...], Any, Spec]] = []
    for key, value in values:
        parts = _parts(key)
        spec = _settable_spec(path, parts, advice)
        checker = Checker(advice)
        _, checked = checker.value(spec, _plain(value), parts)
        if checker.problems:
            problem = checker.problems[0]
            raise ConfigError(problem.detail, file=path, key=dotted(problem.path))
        edits.append((parts, checked, spec))

    def change(text: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        for parts, checked, spec in edits:
            text, data = set_in_text(text, parts, checked, spec), _with(data, parts, checked)
        return text, data

    _edit(path, [parts for parts, _, _ in edits], under, advice, change)


def remove_value(path: Path, key: str | Sequence[str], *, under: Sequence[Path] = ()) -> bool:
    """Remove ``key`` (a value or a whole table) from config ``path``; False if absent."""
    parts = _parts(key)
    if not path.exists():
        return False
    removed = False

    def change(text: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        nonlocal removed
        if not _contains(data, parts):
            return text, data
        removed = True
        return remove_from_text(scan(text), parts), _without(data, parts)

    _edit(path, [parts], under, _advice_for(path), change)
    return removed


def value_from_text(key: str | Sequence[str], text: str) -> Any:
    """A value for ``key`` from command-line text: ``"3"`` -> 3, ``"a,b"`` -> ["a", "b"]."""
    import tomllib

    parts = _parts(key)
    spec = spec_at(parts)
    if spec is None or spec.kind in (Kind.TABLE, Kind.MAP):
        raise ConfigError("not a key that can be set", key=dotted(parts))
    stripped = text.strip()
    if spec.kind in (Kind.LIST, Kind.TABLES) and stripped.startswith("["):
        try:
            return tomllib.loads(f"v = {stripped}")["v"]
        except tomllib.TOMLDecodeError:
            raise ConfigError(f"expected a TOML array, got {text!r}", key=dotted(parts)) from None
    if spec.kind is Kind.LIST and spec.item is not None:
        item = spec.item
        return [
            _scalar_from_text(item, word.strip(), parts)
            for word in stripped.split(",")
            if word.strip()
        ]
    return _scalar_from_text(spec, stripped if spec.kind is not Kind.STR else text, parts)


def _scalar_from_text(spec: Spec, text: str, parts: tuple[str, ...]) -> Any:
    words = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
    try:
        if spec.kind is Kind.BOOL:
            return words[text.lower()]
        if spec.kind is Kind.INT:
            return int(text)
        if spec.kind is Kind.FLOAT:
            return float(text)
    except (KeyError, ValueError):
        detail = f"expected {expected(spec, with_rule=False)}, got {describe(text)}"
        raise ConfigError(detail, key=dotted(parts)) from None
    return text


# -- the edit cycle -------------------------------------------------------------------


def _edit(
    path: Path,
    keys: list[tuple[str, ...]],
    under: Sequence[Path],
    advice: SecretAdvice,
    change: Change,
) -> None:
    target = Path(os.path.realpath(path))  # edit through a symlink, do not replace it
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the directory: {exc.strerror}", file=target.parent
        ) from None
    with _locked(target.parent):
        text = read_text(target)
        exists = text is not None
        text = text or ""
        data = parse_toml(text, path)
        try:
            new_text, expected = change(text, data)
        except ConfigError as error:
            if error.file is not None:
                raise
            raise ConfigError(error.detail, file=path, key=error.key) from None
        if new_text == text:
            return
        if parse_toml(new_text, path) != expected:
            raise ConfigError(
                "cannot change this key without touching others; please edit the file by hand",
                file=path,
                key=", ".join(dotted(parts) for parts in keys),
            )
        _refuse_new_problems(path, text, new_text, keys=keys, under=under, advice=advice)
        mode, owner = NEW_FILE_MODE, None
        if exists:
            st = target.stat()
            mode = stat.S_IMODE(st.st_mode)
            owner = (st.st_uid, st.st_gid) if os.geteuid() == 0 else None
        _write(target, _with_bom(target, new_text), mode, owner)


def _write(target: Path, text: str, mode: int, owner: tuple[int, int] | None) -> None:
    try:
        temp = atomic.write_temp_file(
            target.parent, text.encode("utf-8"), name=target.name, mode=mode
        )
        if owner is not None:
            os.chown(temp, *owner)
        atomic.replace_file(temp, target)
    except OSError as exc:
        raise DuctorError(f"cannot write {target}: {exc.strerror or exc}") from exc


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise read-modify-write cycles in ``directory`` (``/model`` racing ``ductor
    config set``). The lock is on the directory: the files are replaced by rename, so a
    lock on them would not outlive the first write."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _with_bom(target: Path, text: str) -> str:
    try:
        with open(target, "rb") as handle:
            had_bom = handle.read(3) == b"\xef\xbb\xbf"
    except OSError:
        had_bom = False
    return "\ufeff" + text if had_bom else text


def _refuse_new_problems(
    path: Path,
    old: str,
    new: str,
    *,
    keys: list[tuple[str, ...]],
    under: Sequence[Path],
    advice: SecretAdvice,
) -> None:
    lower: list[Layer] = [
        layer for layer in (read_layer(f, advice) for f in under) if layer is not None
    ]

    def problems(text: str) -> list[ConfigError]:
        _, errors = evaluate([*lower, layer_from_text(path, text, advice)])
        return [error for error in errors if error.file == path]

    before = {(error.key, error.detail) for error in problems(old)}
    for error in problems(new):
        if (error.key, error.detail) not in before:
            edited = error.key in {dotted(parts) for parts in keys}
            line = None if edited else error.line  # the edited line is not in the file
            raise ConfigError(error.detail, file=path, key=error.key, line=line)


def _parts(key: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(key, str):
        try:
            return parse_key(key)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return tuple(key)


def _advice_for(path: Path) -> SecretAdvice:
    if path.parent.name == "agents":
        return secret_advice(path.parent.parent / "credentials", path.stem)
    return secret_advice(path.parent / "credentials", "AGENT")


def _settable_spec(path: Path, parts: tuple[str, ...], advice: SecretAdvice) -> Spec:
    spec = spec_at(parts)
    if spec is None:
        parent = spec_at(parts[:-1])
        siblings = list(fields_of(parent.cls)) if parent and parent.cls else []
        problem = unknown_key(parts, siblings, advice)
        raise ConfigError(problem.detail, file=path, key=dotted(parts))
    if spec.kind in (Kind.TABLE, Kind.MAP):
        raise ConfigError(
            f"this is a table: set its keys one by one, such as {dotted(parts)}.NAME",
            file=path,
            key=dotted(parts),
        )
    return spec


def _plain(value: Any) -> Any:
    """TOML-shaped data from tuples, mappings and config dataclasses."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        defaults = type(value)()
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) != getattr(defaults, f.name)
        }
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _contains(data: Any, parts: KeyPath) -> bool:
    for part in parts:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _without(data: dict[str, Any], parts: tuple[str, ...]) -> dict[str, Any]:
    out = copy.deepcopy(data)
    node = out
    for part in parts[:-1]:
        node = node[part]
    del node[parts[-1]]
    return out


def _with(data: dict[str, Any], parts: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    node = out
    for depth, part in enumerate(parts[:-1], start=1):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            where = dotted(parts[:depth])
            raise ConfigError(f"cannot set this key: {where} is not a table in this file")
    node[parts[-1]] = value
    return out
