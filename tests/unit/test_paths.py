from __future__ import annotations

from pathlib import Path

import pytest

from ductor import paths
from ductor.errors import UsageError
from ductor.paths import Mode, resolve


def user_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path / "run"), **extra}


def test_explicit_directories_win_over_systemd_and_xdg(tmp_path: Path) -> None:
    env = user_env(tmp_path, STATE_DIRECTORY="/from/systemd", XDG_CONFIG_HOME="/xdg")
    p = resolve(Mode.USER, env, state_dir=tmp_path / "s", config_dir=tmp_path / "c")
    assert p.state_dir == tmp_path / "s"
    assert p.config_dir == tmp_path / "c"


def test_ductor_variables_win_over_systemd_directories(tmp_path: Path) -> None:
    env = user_env(tmp_path, DUCTOR_STATE_DIR="/mine", STATE_DIRECTORY="/systemd")
    assert resolve(Mode.USER, env).state_dir == Path("/mine")


def test_systemd_directories_are_used_inside_a_unit(tmp_path: Path) -> None:
    env = user_env(
        tmp_path,
        STATE_DIRECTORY="/var/lib/ductor:/var/lib/other",
        CACHE_DIRECTORY="/var/cache/ductor",
        CONFIGURATION_DIRECTORY="/etc/ductor",
        RUNTIME_DIRECTORY="/run/ductor",
        CREDENTIALS_DIRECTORY="/run/credentials/x",
    )
    p = resolve(Mode.USER, env)
    assert p.state_dir == Path("/var/lib/ductor")  # the first of several
    assert p.cache_dir == Path("/var/cache/ductor")
    assert p.config_dir == Path("/etc/ductor")
    assert p.runtime_dir == Path("/run/ductor")
    assert p.credentials_dir == Path("/run/credentials/x")


def test_the_credentials_of_a_cron_run_are_found_though_its_unit_name_has_a_colon(
    tmp_path: Path,
) -> None:
    env = user_env(tmp_path, CREDENTIALS_DIRECTORY="/run/credentials/ductor-cron@ops:ping.service")
    p = resolve(Mode.SYSTEM, env)
    assert p.credentials_dir == Path("/run/credentials/ductor-cron@ops:ping.service")


def test_user_mode_falls_back_to_xdg_then_home(tmp_path: Path) -> None:
    env = user_env(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    p = resolve(Mode.USER, env)
    assert p.config_dir == tmp_path / "cfg" / "ductor"
    assert p.cache_dir == tmp_path / ".cache" / "ductor"
    assert p.data_dir == tmp_path / ".local" / "share" / "ductor"
    assert p.runtime_dir == tmp_path / "run" / "ductor"
    assert p.agent_socket("main") == tmp_path / "run" / "ductor" / "main" / "agent.sock"


def test_relative_xdg_values_are_ignored_as_the_spec_says(tmp_path: Path) -> None:
    p = resolve(Mode.USER, user_env(tmp_path, XDG_CONFIG_HOME="relative/dir"))
    assert p.config_dir == tmp_path / ".config" / "ductor"


def test_user_state_follows_the_systemd_version_the_units_will_see(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paths, "systemd_version", lambda: 252)
    assert resolve(Mode.USER, user_env(tmp_path)).state_dir == tmp_path / ".config" / "ductor"
    monkeypatch.setattr(paths, "systemd_version", lambda: 256)
    assert resolve(Mode.USER, user_env(tmp_path)).state_dir == (
        tmp_path / ".local" / "state" / "ductor"
    )
    monkeypatch.setattr(paths, "systemd_version", lambda: None)
    assert resolve(Mode.USER, user_env(tmp_path)).state_dir == (
        tmp_path / ".local" / "state" / "ductor"
    )


def test_system_mode_uses_the_documented_defaults(tmp_path: Path) -> None:
    p = resolve(Mode.SYSTEM, {"HOME": str(tmp_path)})
    assert p.config_dir == Path("/etc/ductor")
    assert p.state_dir == Path("/var/lib/ductor")
    assert p.runtime_dir == Path("/run/ductor")
    assert p.agent_credentials("main") == Path("/etc/ductor/credentials/main")


def test_mode_comes_from_ductor_mode(tmp_path: Path) -> None:
    assert resolve(env={"DUCTOR_MODE": "system"}).mode is Mode.SYSTEM
    assert resolve(env=user_env(tmp_path)).mode is Mode.USER
    with pytest.raises(UsageError, match="DUCTOR_MODE"):
        resolve(env={"DUCTOR_MODE": "sideways"})


def test_agent_files_live_where_the_design_says(tmp_path: Path) -> None:
    p = resolve(Mode.USER, user_env(tmp_path, DUCTOR_STATE_DIR=str(tmp_path / "st")))
    assert p.global_config == p.config_dir / "ductor.toml"
    assert p.agent_config("main") == p.config_dir / "agents" / "main.toml"
    assert p.agent_credentials("main") == p.config_dir / "credentials" / "main"
    assert p.workspace("main") == tmp_path / "st" / "main" / "workspace"
    assert p.spool("main") == tmp_path / "st" / "main" / "spool"


@pytest.mark.parametrize("name", ["main", "research", "a1", "my-bot", "x_y"])
def test_valid_agent_names_are_accepted(name: str) -> None:
    assert paths.validate_agent_name(name) == name


@pytest.mark.parametrize("name", ["", "Main", "1abc", "a/b", "a.b", "x" * 33, "agents", "../x"])
def test_invalid_agent_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(UsageError, match="agent name"):
        paths.validate_agent_name(name)
