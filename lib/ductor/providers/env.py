"""The environment a CLI child process gets: clean, explicit, documented.

A child sees only what it needs (see docs/providers.md, "Environment"):

1. an allowlist from the parent environment: the basics of a login session, proxies and
   CA bundles, and the variables the three CLIs read for auth and configuration;
2. the agent's ``.env`` secrets; a name that is also set in the parent environment takes
   the parent's value (the system environment wins over ``.env``);
3. ``DUCTOR_AGENT_NAME``, ``DUCTOR_CHAT_ID``, ``DUCTOR_TOPIC_ID``, ``DUCTOR_TRANSPORT``,
   ``DUCTOR_TASK_ID``, ``DUCTOR_AGENT_SOCKET``, and the configured transcription commands
   (``DUCTOR_TRANSCRIBE_COMMAND``, ``DUCTOR_VIDEO_TRANSCRIBE_COMMAND``) where they apply
   (never taken from the parent or ``.env``);
4. the provider's own settings (``IS_SANDBOX``, ``GEMINI_CLI_NO_RELAUNCH``, ...).

Whatever the source, the service manager's variables never reach a child: a CLI that
inherited ``NOTIFY_SOCKET`` or ``LISTEN_FDS`` could talk to systemd as if it were the
agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Exact names passed through from the parent environment.
ALLOWED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",  # Gemini writes its error reports there
        "SSH_AUTH_SOCK",  # git over ssh from the agent's tools
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "all_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
        "NODE_EXTRA_CA_CERTS",
        "NODE_OPTIONS",
        "CODEX_HOME",
        "CODEX_API_KEY",
        "CLOUD_ML_REGION",  # Claude Code on Vertex AI
        "DISABLE_TELEMETRY",  # Claude Code switches
        "DISABLE_AUTOUPDATER",
        "DISABLE_ERROR_REPORTING",
    }
)

# Name prefixes passed through: locale, XDG base directories, and the auth and
# configuration variables of Claude Code (ANTHROPIC_*, CLAUDE_*, AWS_* for Bedrock),
# Codex (OPENAI_*, CODEX_*) and Gemini (GEMINI_*, GOOGLE_*). They are passed to every CLI,
# not only "their" one: an agent may call another CLI as a tool, and all of them run as
# the same user, who can read every CLI's stored credentials anyway.
ALLOWED_PREFIXES = (
    "LC_",
    "XDG_",
    "ANTHROPIC_",
    "CLAUDE_",
    "AWS_",
    "OPENAI_",
    "CODEX_",
    "GEMINI_",
    "GOOGLE_",
)

# Never passed, whatever asks for them: the service manager's protocol with this process.
FORBIDDEN_NAMES = frozenset(
    {
        "NOTIFY_SOCKET",
        "INVOCATION_ID",
        "JOURNAL_STREAM",
        "MAINPID",
        "MANAGERPID",
        "SYSTEMD_EXEC_PID",
        "CREDENTIALS_DIRECTORY",
    }
)
FORBIDDEN_PREFIXES = ("LISTEN_", "WATCHDOG_")

IDENTITY_NAMES = frozenset(
    {
        "DUCTOR_AGENT_NAME",
        "DUCTOR_CHAT_ID",
        "DUCTOR_TOPIC_ID",
        "DUCTOR_TRANSPORT",
        "DUCTOR_TASK_ID",
        "DUCTOR_AGENT_SOCKET",
        "DUCTOR_TRANSCRIBE_COMMAND",
        "DUCTOR_VIDEO_TRANSCRIBE_COMMAND",
    }
)


@dataclass(frozen=True)
class ChildIdentity:
    """Who a CLI run works for; tool scripts in the workspace read it for routing."""

    agent_name: str
    chat_id: str | int | None = None
    topic_id: str | int | None = None
    transport: str | None = None  # "tg", "mx", ...
    task_id: str | None = None
    socket: str | None = None  # the agent's socket, for the task tool scripts
    # transcription.audio_command / video_command, for the media tool scripts
    transcribe_command: str | None = None
    video_transcribe_command: str | None = None

    def variables(self) -> dict[str, str]:
        pairs = {
            "DUCTOR_AGENT_NAME": self.agent_name,
            "DUCTOR_CHAT_ID": self.chat_id,
            "DUCTOR_TOPIC_ID": self.topic_id,
            "DUCTOR_TRANSPORT": self.transport,
            "DUCTOR_TASK_ID": self.task_id,
            "DUCTOR_AGENT_SOCKET": self.socket,
            "DUCTOR_TRANSCRIBE_COMMAND": self.transcribe_command,
            "DUCTOR_VIDEO_TRANSCRIBE_COMMAND": self.video_transcribe_command,
        }
        return {name: str(value) for name, value in pairs.items() if value not in (None, "")}


def is_allowed(name: str) -> bool:
    return name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES)


def is_forbidden(name: str) -> bool:
    return name in FORBIDDEN_NAMES or name.startswith(FORBIDDEN_PREFIXES)


def child_env(
    parent: Mapping[str, str],
    *,
    identity: ChildIdentity | None = None,
    secrets: Mapping[str, str] | None = None,
    provider_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The complete environment for a CLI child process (see the module docstring).

    ``parent`` is the agent's own environment (``os.environ``), ``secrets`` the agent's
    ``.env`` and ``provider_env`` what the provider module asks for.
    """
    env = {name: value for name, value in parent.items() if is_allowed(name)}
    for name, value in (secrets or {}).items():
        if name in IDENTITY_NAMES:
            continue
        env[name] = parent.get(name, value)
    if identity is not None:
        env.update(identity.variables())
    env.update(provider_env or {})
    return {name: value for name, value in env.items() if not is_forbidden(name)}
