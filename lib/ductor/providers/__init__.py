"""The CLI providers: argv in, normalised events out.

Nothing here spawns a process or knows about messengers. For one turn a runner asks the
provider's :class:`ProviderSpec` for the argv, the stdin text and the provider's part of
the environment (to merge with :func:`~ductor.providers.env.child_env`), then feeds the
child's stdout lines to a fresh parser. See docs/providers.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ductor.providers import claude, codex, gemini
from ductor.providers.request import PermissionMode, Provider, TurnRequest
from ductor.providers.stream import StreamParser

__all__ = ["PermissionMode", "Provider", "ProviderSpec", "TurnRequest", "spec_for"]


class ProviderEnv(Protocol):
    def __call__(self, request: TurnRequest, *, is_root: bool) -> dict[str, str]: ...


@dataclass(frozen=True)
class ProviderSpec:
    provider: Provider
    executable: str  # the default executable name, looked up in PATH
    build_argv: Callable[[TurnRequest, str], list[str]]
    stdin_text: Callable[[TurnRequest], str | None]  # None: stdin is closed (/dev/null)
    provider_env: ProviderEnv  # variables to pass as child_env(provider_env=...)
    new_parser: Callable[[str], StreamParser]  # (model asked for) -> parser


_SPECS = {
    Provider.CLAUDE: ProviderSpec(
        Provider.CLAUDE,
        claude.EXECUTABLE,
        claude.build_argv,
        claude.stdin_text,
        claude.provider_env,
        claude.ClaudeParser,
    ),
    Provider.CODEX: ProviderSpec(
        Provider.CODEX,
        codex.EXECUTABLE,
        codex.build_argv,
        codex.stdin_text,
        codex.provider_env,
        codex.CodexParser,
    ),
    Provider.GEMINI: ProviderSpec(
        Provider.GEMINI,
        gemini.EXECUTABLE,
        gemini.build_argv,
        gemini.stdin_text,
        gemini.provider_env,
        gemini.GeminiParser,
    ),
}


def spec_for(provider: Provider | str) -> ProviderSpec:
    """The provider's argv builder, stdin, environment and parser."""
    return _SPECS[Provider(provider)]
