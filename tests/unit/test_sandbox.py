"""The per-agent sandbox: the drop-in ``ductor agent sync`` writes from ``[sandbox]``,
and the config errors a user gets for it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from ductor import sandbox
from ductor.agent import prompt
from ductor.config import AgentConfig, load_agent_config, validate_all
from ductor.config.schema import SandboxConfig
from ductor.paths import Mode, Paths
from ductor.units import Manager


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def paths(home: Path) -> Paths:
    return Paths(
        mode=Mode.USER,
        config_dir=home / ".config/ductor",
        state_dir=home / ".config/ductor",
        runtime_dir=Path("/run/user/1000/ductor"),
        cache_dir=home / ".cache/ductor",
        data_dir=home / ".local/share/ductor",
    )


def env(home: Path) -> dict[str, str]:
    return {"HOME": str(home), "PATH": "/usr/bin:/bin"}


def write_agent(paths: Paths, text: str) -> Path:
    file = paths.agent_config("main")
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text, encoding="utf-8")
    return file


def workspace_config(**values: object) -> AgentConfig:
    return AgentConfig(
        sandbox=SandboxConfig(mode="workspace", mounts=("/srv/data", "/srv/ref:ro")),
        project_roots={"web": "/home/u/src/web"},
        **values,  # type: ignore[arg-type]
    )


def test_home_mode_writes_no_sandbox_drop_in(paths: Paths, home: Path) -> None:
    assert sandbox.dropin(paths, "main", AgentConfig(), env(home)) == ""


def test_workspace_mode_empties_the_home_and_binds_back_only_the_allowed_folders(
    paths: Paths, home: Path
) -> None:
    text = sandbox.dropin(paths, "main", workspace_config(), env(home))
    lines = text.splitlines()
    assert "ProtectHome=tmpfs" in lines
    assert "ReadWritePaths=" in lines  # the hardening's -%h is taken back
    assert f'TemporaryFileSystem="{home}:ro" "{home}/.config/ductor:ro"' in lines
    binds = next(line for line in lines if line.startswith("BindPaths=-/")).removeprefix(
        "BindPaths="
    )
    for folder in (
        paths.agent_state("main"),
        home / ".claude",
        home / ".claude.json",
        home / ".codex",
        home / ".gemini",
        Path("/home/u/src/web"),
        Path("/srv/data"),
    ):
        assert f"-{folder}" in binds.split(), folder
    assert f"-{home}/secret" not in text
    read_only = next(line for line in lines if line.startswith("BindReadOnlyPaths="))
    read_only = read_only.removeprefix("BindReadOnlyPaths=")
    assert "-/srv/ref" in read_only.split()
    assert "PrivateNetwork=yes" not in lines


def test_paths_with_spaces_and_percent_signs_reach_systemd_unchanged(
    paths: Paths, home: Path
) -> None:
    config = AgentConfig(sandbox=SandboxConfig(mode="workspace", mounts=("/srv/my data",)))
    config = AgentConfig(sandbox=config.sandbox, project_roots={"p": "/srv/100%"})
    text = sandbox.dropin(paths, "main", config, env(home))
    assert '"-/srv/my data"' in text
    assert "-/srv/100%%" in text


def test_doctor_and_status_say_what_the_cli_can_see(paths: Paths, home: Path) -> None:
    shown = [m.describe() for m in sandbox.mounts(paths, "main", workspace_config(), env(home))]
    assert f"{home}/.config/ductor/main (read-write: the agent's workspace and state)" in shown
    assert "/srv/ref (read-only: sandbox.mounts)" in shown
    assert sandbox.summary(workspace_config()).startswith("workspace")
    assert sandbox.summary(AgentConfig()).startswith("home")


def test_the_cli_is_told_which_folders_it_can_reach(paths: Paths) -> None:
    sentence = sandbox.prompt_sentence(paths.workspace("main"), workspace_config())
    assert "sandbox" in sentence and "/home/u/src/web" in sentence and "/srv/ref" in sentence
    assert sandbox.prompt_sentence(paths.workspace("main"), AgentConfig()) == ""
    appended = prompt.system_prompt_append(paths.workspace("main"), sandbox=sentence)
    assert appended.startswith("You run in a sandbox")


def test_sync_writes_the_drop_in_for_scheduled_cron_jobs_and_removes_stale_ones(
    tmp_path: Path,
) -> None:
    units = tmp_path / "units"
    timer = units / "ductor-cron@main:daily.timer.d"
    timer.mkdir(parents=True)
    (timer / "10-ductor.conf").write_text("[Timer]\n", encoding="utf-8")
    assert sandbox.sync_cron(units, "main", "[Service]\nProtectHome=tmpfs\n", command="c")
    written = units / "ductor-cron@main:daily.service.d" / sandbox.DROPIN_NAME
    assert "ProtectHome=tmpfs" in written.read_text(encoding="utf-8")
    assert not (units / "ductor-cron@main2:daily.service.d").exists()
    assert sandbox.sync_cron(units, "main", "", command="c")
    assert not written.exists()


def test_no_network_is_refused_naming_the_provider_and_its_api(paths: Paths) -> None:
    file = write_agent(paths, 'provider = "codex"\n\n[sandbox]\nnetwork = "none"\n')
    errors = validate_all(paths, "main")
    assert len(errors) == 1, errors
    error = errors[0]
    assert (error.file, error.key) == (file, "sandbox.network")
    assert "codex" in str(error) and "api.openai.com" in str(error)


def test_a_relative_mount_is_refused_with_file_key_and_line(paths: Paths) -> None:
    file = write_agent(paths, '[sandbox]\nmode = "workspace"\nmounts = ["data"]\n')
    errors = validate_all(paths, "main")
    assert len(errors) == 1, errors
    assert (errors[0].file, errors[0].key, errors[0].line) == (file, "sandbox.mounts[0]", 3)
    assert "absolute path" in str(errors[0])


def test_a_valid_sandbox_table_loads(paths: Paths) -> None:
    write_agent(paths, '[sandbox]\nmode = "workspace"\nmounts = ["/srv/a", "/srv/b:ro"]\n')
    config = load_agent_config(paths, "main")
    assert config.sandbox == SandboxConfig(mode="workspace", mounts=("/srv/a", "/srv/b:ro"))


class FakeManager(Manager):
    """The user's manager, with the running units given and reloads counted."""

    running: tuple[str, ...] = ()
    reloads: list[int]

    def list_units(self, patterns: Iterable[str], *, all_units: bool = True) -> list[str]:
        return list(self.running)

    def daemon_reload(self) -> None:
        self.reloads.append(1)


def fake_manager(*running: str) -> FakeManager:
    manager = FakeManager(Mode.USER)
    object.__setattr__(manager, "running", running)
    object.__setattr__(manager, "reloads", [])
    return manager


def test_a_task_of_a_sandboxed_agent_starts_in_the_agents_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    units = tmp_path / "systemd" / "user"
    agent = units / "ductor-agent@main.service.d"
    agent.mkdir(parents=True)
    (agent / sandbox.DROPIN_NAME).write_text("[Service]\nProtectHome=tmpfs\n", encoding="utf-8")
    old = units / "ductor-task@main:old.service.d"
    busy = units / "ductor-task@main:busy.service.d"
    for folder in (old, busy):
        folder.mkdir()
        (folder / sandbox.DROPIN_NAME).write_text("x", encoding="utf-8")
    manager = fake_manager("ductor-task@main:busy.service")
    sandbox.fence_task(manager, "main", "ductor-task@main:new.service")
    new = units / "ductor-task@main:new.service.d" / sandbox.DROPIN_NAME
    assert new.read_text(encoding="utf-8") == "[Service]\nProtectHome=tmpfs\n"
    assert not old.exists()  # a finished task's drop-in goes
    assert (busy / sandbox.DROPIN_NAME).exists()  # a running one keeps it
    assert manager.reloads == [1]


def test_a_task_of_an_agent_without_sandbox_costs_no_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    manager = fake_manager()
    sandbox.fence_task(manager, "main", "ductor-task@main:new.service")
    assert manager.reloads == []
    assert not (tmp_path / "systemd" / "user" / "ductor-task@main:new.service.d").exists()


def test_a_task_whose_sandbox_cannot_be_written_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    units = tmp_path / "systemd" / "user"
    agent = units / "ductor-agent@main.service.d"
    agent.mkdir(parents=True)
    (agent / sandbox.DROPIN_NAME).write_text("[Service]\n", encoding="utf-8")
    (units / "ductor-task@main:new.service.d").write_text("not a folder", encoding="utf-8")
    with pytest.raises(OSError):
        sandbox.fence_task(fake_manager(), "main", "ductor-task@main:new.service")
