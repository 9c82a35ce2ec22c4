"""The clean environment a CLI child process gets."""

from __future__ import annotations

from ductor.providers.env import ChildIdentity, child_env

SYSTEMD = {
    "NOTIFY_SOCKET": "/run/systemd/notify",
    "LISTEN_PID": "1",
    "LISTEN_FDS": "1",
    "LISTEN_FDNAMES": "agent.sock",
    "WATCHDOG_USEC": "30000000",
    "WATCHDOG_PID": "1",
    "INVOCATION_ID": "abc",
    "JOURNAL_STREAM": "8:123",
    "CREDENTIALS_DIRECTORY": "/run/credentials/ductor-agent@main.service",
}
PARENT = {
    "PATH": "/usr/bin",
    "HOME": "/home/u",
    "USER": "u",
    "LANG": "C.UTF-8",
    "LC_TIME": "de_DE.UTF-8",
    "XDG_RUNTIME_DIR": "/run/user/1000",
    "TZ": "Europe/Berlin",
    "ANTHROPIC_API_KEY": "sk-a",
    "OPENAI_API_KEY": "sk-o",
    "CODEX_HOME": "/home/u/.codex",
    "GEMINI_API_KEY": "g",
    "GOOGLE_CLOUD_PROJECT": "p",
    "CLAUDE_CODE_MAX_RETRIES": "2",
    "HTTPS_PROXY": "http://proxy:3128",
    "TELEGRAM_TOKEN": "123:secret",
    "PYTHONPATH": "/opt/ductor/lib",
    "TERM": "xterm-256color",
    **SYSTEMD,
}


def test_child_keeps_session_basics_and_cli_credentials() -> None:
    env = child_env(PARENT)

    for name in (
        "PATH",
        "HOME",
        "USER",
        "LANG",
        "LC_TIME",
        "XDG_RUNTIME_DIR",
        "TZ",
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "CODEX_HOME",
        "GEMINI_API_KEY",
        "GOOGLE_CLOUD_PROJECT",
        "CLAUDE_CODE_MAX_RETRIES",
        "HTTPS_PROXY",
    ):
        assert env[name] == PARENT[name]


def test_child_never_sees_the_service_managers_variables() -> None:
    env = child_env(PARENT, secrets=SYSTEMD, provider_env={"NOTIFY_SOCKET": "/x"})

    assert not set(env) & set(SYSTEMD)


def test_child_does_not_inherit_the_agents_own_unrelated_variables() -> None:
    env = child_env(PARENT)

    assert "TELEGRAM_TOKEN" not in env
    assert "PYTHONPATH" not in env
    assert "TERM" not in env


def test_dotenv_secrets_are_added_but_the_system_environment_wins() -> None:
    secrets = {"GITHUB_TOKEN": "from-dotenv", "OPENAI_API_KEY": "dotenv-key", "PYTHONPATH": "/e"}

    env = child_env(PARENT, secrets=secrets)

    assert env["GITHUB_TOKEN"] == "from-dotenv"
    assert env["OPENAI_API_KEY"] == "sk-o"
    assert env["PYTHONPATH"] == "/opt/ductor/lib"


def test_identity_variables_are_set_where_they_apply_and_cannot_be_spoofed() -> None:
    identity = ChildIdentity(agent_name="main", chat_id=-100123, topic_id=7, transport="tg")
    spoofed = {"DUCTOR_CHAT_ID": "666", "DUCTOR_TASK_ID": "t-evil"}

    env = child_env({**PARENT, "DUCTOR_TOPIC_ID": "9"}, identity=identity, secrets=spoofed)

    ductor = {k: v for k, v in env.items() if k.startswith("DUCTOR_")}
    assert ductor == {
        "DUCTOR_AGENT_NAME": "main",
        "DUCTOR_CHAT_ID": "-100123",
        "DUCTOR_TOPIC_ID": "7",
        "DUCTOR_TRANSPORT": "tg",
    }


def test_task_runs_carry_their_task_id() -> None:
    env = child_env({}, identity=ChildIdentity(agent_name="research", task_id="a1b2"))

    assert env == {"DUCTOR_AGENT_NAME": "research", "DUCTOR_TASK_ID": "a1b2"}


def test_provider_settings_override_everything_else() -> None:
    env = child_env(
        {"IS_SANDBOX": "0"}, secrets={"IS_SANDBOX": "0"}, provider_env={"IS_SANDBOX": "1"}
    )

    assert env == {"IS_SANDBOX": "1"}
