"""Checking raw TOML data against the schema, and building AgentConfig from checked data.

A check reports each Problem (a key path and the "expected ..., got ..." text) and keeps
going, so a doctor sees them all; the loader turns Problems into ConfigErrors that carry
the file and the line of the key. The schema dataclasses' type hints say what each key
holds (``int | None`` means "inherited when left out"); their field metadata the rest.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Union, get_args, get_origin, get_type_hints

from ductor.config import schema
from ductor.config.checks import INT64_MAX, NO_RULE, Rule
from ductor.config.scan import KeyPath
from ductor.config.schema import AgentConfig, ChatTarget
from ductor.config.unknown import Problem, SecretAdvice, close_match, unknown_key


class Kind(Enum):
    BOOL = "true or false"
    INT = "an integer"
    FLOAT = "a number"
    STR = "a string"
    LIST = "an array"
    MAP = "a table of strings"
    TABLE = "a table"
    TABLES = "an array of tables"


@dataclass(frozen=True)
class Spec:
    kind: Kind
    rule: Rule = NO_RULE
    item: Spec | None = None  # LIST
    cls: type[Any] | None = None  # TABLE, TABLES


def _spec(tp: Any, rule: Rule) -> Spec:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = [arg for arg in get_args(tp) if arg is not type(None)]
        return _spec(inner[0], rule)  # None only ever means "not in the file"
    simple = {bool: Kind.BOOL, int: Kind.INT, float: Kind.FLOAT, str: Kind.STR}
    if tp in simple:
        return Spec(simple[tp], rule)
    if origin is tuple:
        item = get_args(tp)[0]
        if isinstance(item, type) and dataclasses.is_dataclass(item):
            return Spec(Kind.TABLES, cls=item)
        item_rule = dataclasses.replace(rule, unique=False)
        return Spec(Kind.LIST, rule, item=_spec(item, item_rule))
    if origin is Mapping:
        return Spec(Kind.MAP, rule, item=Spec(Kind.STR, rule))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return Spec(Kind.TABLE, cls=tp)
    raise TypeError(f"unsupported schema type {tp!r}")


_FIELDS: dict[type[Any], dict[str, Spec]] = {}


def fields_of(cls: type[Any]) -> dict[str, Spec]:
    """The spec of every field of a schema dataclass, by TOML key."""
    specs = _FIELDS.get(cls)
    if specs is None:
        hints = get_type_hints(cls)
        specs = {f.name: _spec(hints[f.name], schema.rule_of(f)) for f in dataclasses.fields(cls)}
        _FIELDS[cls] = specs
    return specs


def spec_at(parts: tuple[str, ...]) -> Spec | None:
    """The spec of a dotted key, or None if the schema has no such key."""
    spec = Spec(Kind.TABLE, cls=AgentConfig)
    for part in parts:
        if spec.kind is Kind.MAP and spec.item is not None:
            spec = spec.item
            continue
        if spec.kind is not Kind.TABLE or spec.cls is None:
            return None
        found = fields_of(spec.cls).get(part)
        if found is None:
            return None
        spec = found
    return spec


# -- describing what was expected and what was found --------------------------------


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def expected(spec: Spec, *, with_rule: bool = True) -> str:
    rule = spec.rule
    if spec.kind is Kind.LIST and spec.item is not None:
        items = {Kind.INT: "integers", Kind.FLOAT: "numbers", Kind.STR: "strings"}
        text = f"an array of {items.get(spec.item.kind, 'values')}"
        if with_rule and (spec.item.rule.choices or spec.item.rule.min is not None):
            text += ", each " + expected(spec.item)
        return text
    if with_rule and rule.choices:
        return "one of " + ", ".join(f'"{choice}"' for choice in rule.choices)
    text = spec.kind.value
    if with_rule and spec.kind in (Kind.INT, Kind.FLOAT):
        if rule.min is not None and rule.max is not None:
            text += f" from {_number(rule.min)} to {_number(rule.max)}"
        elif rule.min is not None:
            text += f" >= {_number(rule.min)}"
    return text


def describe(value: object) -> str:
    """What a TOML value is, for "got ..." (long strings are not shown: they may be secrets)."""
    if isinstance(value, bool):
        return "boolean " + ("true" if value else "false")
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, str):
        if len(value) > 32:
            return f"a string of {len(value)} characters"
        import json

        return "string " + json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if value is None:
        return "nothing"
    return "a date/time"


def _shown(value: object) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(value) if isinstance(value, int) else repr(value)
    return describe(value)


# -- checking ------------------------------------------------------------------------


class Checker:
    """Checks one file's data; collects problems and returns the usable part of the data."""

    def __init__(self, advice: SecretAdvice) -> None:
        self.advice = advice
        self.problems: list[Problem] = []

    def fail(self, path: KeyPath, detail: str) -> None:
        self.problems.append(Problem(path, detail))

    def table(self, cls: type[Any], raw: Mapping[str, Any], path: KeyPath) -> dict[str, Any]:
        specs = fields_of(cls)
        clean: dict[str, Any] = {}
        for key, value in raw.items():
            spec = specs.get(key)
            if spec is None:
                self.problems.append(unknown_key((*path, key), list(specs), self.advice))
                continue
            ok, checked = self.value(spec, value, (*path, key))
            if ok:
                clean[key] = checked
        if issubclass(cls, ChatTarget):
            self.chat_target(raw, clean, path)
        return clean

    def value(self, spec: Spec, value: Any, path: KeyPath) -> tuple[bool, Any]:
        kind = spec.kind
        if kind in (Kind.TABLE, Kind.MAP) and not isinstance(value, dict):
            return self.type_error(spec, value, path)
        if kind in (Kind.LIST, Kind.TABLES) and not isinstance(value, list):
            return self.type_error(spec, value, path)
        if kind is Kind.TABLE and spec.cls is not None:
            return True, self.table(spec.cls, value, path)
        if kind is Kind.TABLES and spec.cls is not None:
            items = []
            for index, item in enumerate(value):
                if not isinstance(item, dict):
                    self.fail((*path, index), f"expected a table, got {describe(item)}")
                    continue
                items.append(self.table(spec.cls, item, (*path, index)))
            return True, items
        if kind in (Kind.LIST, Kind.MAP) and spec.item is not None:
            return self.collection(spec, spec.item, value, path)
        return self.scalar(spec, value, path)

    def collection(self, spec: Spec, item: Spec, value: Any, path: KeyPath) -> tuple[bool, Any]:
        ok = True
        pairs = value.items() if isinstance(value, dict) else enumerate(value)
        checked: dict[Any, Any] = {}
        for key, element in pairs:
            good, checked[key] = self.scalar(item, element, (*path, key))
            ok = ok and good
        if isinstance(value, dict):
            return ok, checked
        items = list(checked.values())
        if ok and spec.rule.unique:
            for index, element in enumerate(items):
                if element in items[:index]:
                    self.fail(
                        (*path, index), f"expected each value once, got {_shown(element)} again"
                    )
                    ok = False
        return ok, items

    def scalar(self, spec: Spec, value: Any, path: KeyPath) -> tuple[bool, Any]:
        kind, rule = spec.kind, spec.rule
        if kind is Kind.BOOL:
            good = isinstance(value, bool)
        elif kind is Kind.INT:
            good = isinstance(value, int) and not isinstance(value, bool)
        elif kind is Kind.FLOAT:
            good = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            good = isinstance(value, str)
        if not good:
            return self.type_error(spec, value, path)
        if kind is Kind.FLOAT:
            value = float(value)
            if not math.isfinite(value):
                return self.fail_value(spec, value, path)
        if kind in (Kind.INT, Kind.FLOAT):
            low = -INT64_MAX if rule.min is None else rule.min
            high = INT64_MAX if rule.max is None else rule.max
            if not low <= value <= high:
                return self.fail_value(spec, value, path)
        if rule.choices and value not in rule.choices:
            detail = f"expected {expected(spec)}, got {describe(value)}"
            suggestion = close_match(value, list(rule.choices))
            if suggestion is not None and len(value) <= 32:
                detail += f' (did you mean "{suggestion}"?)'
            self.fail(path, detail)
            return False, value
        if rule.check is not None:
            wanted = rule.check(value)
            if wanted is not None:
                self.fail(path, f"{wanted}, got {describe(value)}")
                return False, value
        return True, value

    def type_error(self, spec: Spec, value: Any, path: KeyPath) -> tuple[bool, Any]:
        self.fail(path, f"expected {expected(spec, with_rule=False)}, got {describe(value)}")
        return False, value

    def fail_value(self, spec: Spec, value: Any, path: KeyPath) -> tuple[bool, Any]:
        self.fail(path, f"expected {expected(spec)}, got {_shown(value)}")
        return False, value

    def chat_target(self, raw: Mapping[str, Any], clean: dict[str, Any], path: KeyPath) -> None:
        """An enabled target must say where to deliver (unless its key was already wrong)."""
        if not clean.get("enabled", True):
            return
        transport = clean.get("transport", "telegram")
        if transport == "telegram" and not clean.get("chat_id") and raw.keys() == clean.keys():
            got = _shown(clean["chat_id"]) if "chat_id" in clean else "none"
            self.fail(
                (*path, "chat_id"),
                "expected the chat id of the Telegram user or group (such as"
                f" -1001234567890) for an enabled telegram target, got {got}",
            )
        if transport == "matrix" and not clean.get("room") and raw.keys() == clean.keys():
            got = describe(clean["room"]) if "room" in clean else "none"
            self.fail(
                (*path, "room"),
                'expected the room id or alias (such as "!abc:example.org") for an'
                f" enabled matrix target, got {got}",
            )


# -- building --------------------------------------------------------------------------


def build(cls: type[Any], data: Mapping[str, Any]) -> Any:
    """An instance of ``cls`` from checked data; missing keys keep their defaults."""
    kwargs: dict[str, Any] = {}
    for name, spec in fields_of(cls).items():
        if name in data:
            kwargs[name] = _convert(spec, data[name])
    return cls(**kwargs)


def _convert(spec: Spec, value: Any) -> Any:
    if spec.kind is Kind.TABLE:
        return build(spec.cls or object, value)
    if spec.kind is Kind.TABLES:
        return tuple(build(spec.cls or object, item) for item in value)
    if spec.kind is Kind.LIST:
        return tuple(value)
    if spec.kind is Kind.MAP:
        return types.MappingProxyType(dict(value))
    return value


def merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge per table; arrays (also arrays of tables) are replaced, not appended."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


# -- checks across keys (on the merged result) ----------------------------------------

CrossCheck = Callable[[AgentConfig], dict[str, str] | None]


def _compaction_target(config: AgentConfig) -> dict[str, str] | None:
    c = config.memory.compaction
    if c.target_lines <= c.trigger_lines:
        return None
    return {
        "memory.compaction.target_lines": "expected at most memory.compaction.trigger_lines"
        f" ({c.trigger_lines}), got {c.target_lines}",
        "memory.compaction.trigger_lines": "expected at least memory.compaction.target_lines"
        f" ({c.target_lines}), got {c.trigger_lines}",
    }


def _streaming_chars(config: AgentConfig) -> dict[str, str] | None:
    s = config.streaming
    if s.min_chars <= s.max_chars:
        return None
    return {
        "streaming.min_chars": f"expected at most streaming.max_chars ({s.max_chars}),"
        f" got {s.min_chars}",
        "streaming.max_chars": f"expected at least streaming.min_chars ({s.min_chars}),"
        f" got {s.max_chars}",
    }


#: Where each provider's CLI sends its prompts: without a network it cannot answer.
PROVIDER_APIS = {
    "claude": "api.anthropic.com",
    "codex": "api.openai.com",
    "gemini": "generativelanguage.googleapis.com",
}


def _sandbox_network(config: AgentConfig) -> dict[str, str] | None:
    api = PROVIDER_APIS.get(config.provider)
    if config.sandbox.network != "none" or api is None:
        return None
    return {
        "sandbox.network": f'expected "host": provider {config.provider} needs its API'
        f" ({api}), which a sandbox without network cannot reach"
    }


CROSS_CHECKS: tuple[CrossCheck, ...] = (_compaction_target, _streaming_chars, _sandbox_network)
