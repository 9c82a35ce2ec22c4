"""Which models exist, which CLI runs each, and the ``@model`` / ``@provider`` directives.

Claude's models are a static list. Codex and Gemini models are discovered from the
installed CLI (the discovery itself is injected: it runs a process, which this module
never does) and kept in a JSON cache, ``{"last_updated": ISO-8601, "models": [...]}``.
A failed or empty discovery never replaces the last known list, so a model a user picked
does not vanish from ``/model`` because the CLI hiccuped once; before the first
discovery the built-in fallback list is used, and it is never written to the cache.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from ductor import atomic
from ductor.errors import DuctorError
from ductor.providers.request import Provider

log = logging.getLogger(__name__)

CLAUDE_ALIASES = ("opus", "opus[1m]", "sonnet", "sonnet[1m]", "haiku", "fable")
# Full ids seen in the recorded transcripts; any other "claude-*" id works as well.
CLAUDE_MODEL_IDS = ("claude-opus-5-5", "claude-sonnet-4-5", "claude-haiku-5-5")
CLAUDE_MODELS = CLAUDE_ALIASES + CLAUDE_MODEL_IDS
CLAUDE_EFFORTS = ("low", "medium", "high", "xhigh", "max")

GEMINI_ALIASES = ("auto", "pro", "flash", "flash-lite")
CODEX_DEFAULT_EFFORTS = ("low", "medium", "high", "xhigh")


@dataclass(frozen=True)
class ModelInfo:
    id: str
    display_name: str = ""
    description: str = ""
    efforts: tuple[str, ...] = ()  # supported reasoning efforts; () = none or unknown
    default_effort: str = ""
    is_default: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "display_name": self.display_name,
            "description": self.description,
            "supported_efforts": list(self.efforts),
            "default_effort": self.default_effort,
            "is_default": self.is_default,
        }

    @classmethod
    def from_json(cls, data: object) -> ModelInfo | None:
        """A model from its cache entry (or a bare id string); None if unusable."""
        if isinstance(data, str) and data:
            return cls(id=data)
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
            return None
        efforts = data.get("supported_efforts")
        return cls(
            id=data["id"],
            display_name=_str(data.get("display_name")),
            description=_str(data.get("description")),
            efforts=tuple(e for e in efforts if isinstance(e, str))
            if isinstance(efforts, list)
            else (),
            default_effort=_str(data.get("default_effort")),
            is_default=data.get("is_default") is True,
        )


CODEX_FALLBACK = (
    ModelInfo("gpt-5.5", efforts=CODEX_DEFAULT_EFFORTS, is_default=True),
    ModelInfo("gpt-5.4", efforts=CODEX_DEFAULT_EFFORTS),
    ModelInfo("gpt-5.4-mini", efforts=CODEX_DEFAULT_EFFORTS),
    ModelInfo("gpt-5.3-codex-spark", efforts=CODEX_DEFAULT_EFFORTS),
)
GEMINI_FALLBACK = tuple(
    ModelInfo(model_id)
    for model_id in (
        "gemini-2.5-flash",
        "gemini-2.5-pro",
        "gemini-3-pro-preview",
        "gemini-3.1-flash-lite",
        "gemini-3.1-pro-preview",
        "gemini-3.5-flash",
    )
)


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class DiscoveredModels:
    """The model list of a CLI that can tell which models it has (Codex, Gemini)."""

    provider: Provider
    cache_file: Path
    discover: Callable[[], Sequence[ModelInfo]]
    fallback: Sequence[ModelInfo]
    max_age: timedelta = timedelta(hours=24)
    clock: Callable[[], datetime] = _utcnow
    _models: tuple[ModelInfo, ...] | None = field(default=None, init=False, repr=False)
    _updated: datetime | None = field(default=None, init=False, repr=False)

    def models(self) -> tuple[ModelInfo, ...]:
        """The last known list: memory, then the cache file, then the fallback."""
        if self._models is None:
            self._load()
        return self._models or tuple(self.fallback)

    def ids(self) -> tuple[str, ...]:
        return tuple(model.id for model in self.models())

    def get(self, model_id: str) -> ModelInfo | None:
        return next((m for m in self.models() if m.id == model_id), None)

    @property
    def last_updated(self) -> datetime | None:
        if self._models is None:
            self._load()
        return self._updated

    def is_stale(self) -> bool:
        updated = self.last_updated
        return updated is None or self.clock() - updated > self.max_age

    def refresh(self) -> tuple[ModelInfo, ...]:
        """Run the discovery; keep the last known list when it fails or finds nothing."""
        try:
            found = tuple(self.discover())
        except DuctorError as exc:  # expected trouble (not installed, no answer): one line
            log.warning(
                "%s model discovery failed (%s); keeping the last known list", self.provider, exc
            )
            return self.models()
        except Exception:
            log.warning(
                "%s model discovery failed; keeping the last known list",
                self.provider,
                exc_info=True,
            )
            return self.models()
        unique = tuple({m.id: m for m in found if m.id}.values())
        if not unique:
            log.warning(
                "%s model discovery found no models; keeping the last known list", self.provider
            )
            return self.models()
        self._models, self._updated = unique, self.clock()
        self._save()
        return unique

    def refresh_if_stale(self) -> tuple[ModelInfo, ...]:
        return self.refresh() if self.is_stale() else self.models()

    def _load(self) -> None:
        self._models, self._updated = (), None
        try:
            data = atomic.read_json(self.cache_file)
        except FileNotFoundError:
            return
        except (OSError, atomic.CorruptFileError) as exc:
            log.warning("ignoring unreadable model cache %s: %s", self.cache_file, exc)
            return
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            log.warning('ignoring model cache %s: no "models" list', self.cache_file)
            return
        models = (ModelInfo.from_json(entry) for entry in data["models"])
        self._models = tuple(m for m in models if m is not None)
        try:
            self._updated = datetime.fromisoformat(_str(data.get("last_updated")))
        except ValueError:
            self._updated = None

    def _save(self) -> None:
        assert self._models is not None and self._updated is not None
        payload = {
            "last_updated": self._updated.isoformat(),
            "models": [m.to_json() for m in self._models],
        }
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(self.cache_file, payload)


def provider_for_model(model: str, *, gemini_ids: Iterable[str] = ()) -> Provider:
    """The CLI that runs ``model``: Claude and Gemini names are known, the rest is Codex."""
    name = model.strip().lower()
    if name in CLAUDE_MODELS or name.startswith("claude-"):
        return Provider.CLAUDE
    if (
        name in GEMINI_ALIASES
        or name.startswith(("gemini-", "auto-gemini-"))
        or name in {g.lower() for g in gemini_ids}
    ):
        return Provider.GEMINI
    return Provider.CODEX


def efforts_for(model: str, codex_models: Sequence[ModelInfo] = CODEX_FALLBACK) -> tuple[str, ...]:
    """The reasoning efforts ``model`` accepts; () when its CLI has no such setting."""
    provider = provider_for_model(model)
    if provider is Provider.CLAUDE:
        return CLAUDE_EFFORTS
    if provider is Provider.GEMINI:
        return ()
    info = next((m for m in codex_models if m.id == model), None)
    return info.efforts if info is not None and info.efforts else CODEX_DEFAULT_EFFORTS


def known_model_ids(*discovered: Iterable[str]) -> frozenset[str]:
    """Every model id a directive may name: the static lists plus discovered ids."""
    ids = {*CLAUDE_MODELS, *GEMINI_ALIASES}
    ids.update(m.id for m in (*CODEX_FALLBACK, *GEMINI_FALLBACK))
    for source in discovered:
        ids.update(source)
    return frozenset(ids)


def canonical_model(name: str, known: Iterable[str]) -> str | None:
    """``name`` as the CLI knows it (case as listed), or None when no CLI has it.

    Any full ``claude-...`` id is accepted: Claude Code resolves ids the static list does
    not name, and refusing a new model would be worse than one failed turn.
    """
    wanted = name.strip()
    by_lower = {m.lower(): m for m in known}
    if wanted.lower() in by_lower:
        return by_lower[wanted.lower()]
    if wanted.lower().startswith("claude-") and len(wanted) > len("claude-"):
        return wanted
    return None


class Directives(NamedTuple):
    model: str | None
    provider: Provider | None
    text: str


_DIRECTIVE = re.compile(r"@([A-Za-z][A-Za-z0-9_.\[\]-]*)(?=\s|$)")


def parse_directives(text: str, known_models: Iterable[str] | None = None) -> Directives:
    """Leading ``@model`` and ``@provider`` tokens of a message, and the text after them.

    Only tokens at the very start count ("email @opus" has none). Parsing stops at the
    first ``@word`` that is neither a known model nor a provider name, which stays in
    the text (it may name a session). A model implies its provider; ``@codex`` alone
    leaves the model to the caller (the session's model for that provider, or its
    default). Matching ignores case.
    """
    by_lower = {m.lower(): m for m in (known_models or known_model_ids())}
    providers = {p.value: p for p in Provider}
    model: str | None = None
    provider: Provider | None = None
    rest = text.lstrip()
    found = False
    while (match := _DIRECTIVE.match(rest)) is not None:
        word = match.group(1).lower()
        if word in providers:
            provider = providers[word]
        elif word in by_lower:
            model = by_lower[word]
        else:
            break
        found = True
        rest = rest[match.end() :].lstrip()
    if not found:
        return Directives(None, None, text)
    if model is not None:
        provider = provider_for_model(model)
    return Directives(model, provider, rest)
