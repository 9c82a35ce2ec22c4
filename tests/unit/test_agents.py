"""ductor.agents: the drop-ins that `ductor agent sync` derives from an agent's config."""

from __future__ import annotations

from pathlib import Path

import pytest

from ductor.agents import limits_dropin
from ductor.config import LimitsConfig


def test_limits_from_the_config_become_service_settings() -> None:
    text = limits_dropin(LimitsConfig(memory_max="2G", tasks_max=256, cpu_weight=50))
    assert text.splitlines() == ["[Service]", "MemoryMax=2G", "TasksMax=256", "CPUWeight=50"]


def test_no_limits_means_no_drop_in() -> None:
    assert limits_dropin(LimitsConfig()) == ""


def test_only_the_limits_that_are_set_are_written() -> None:
    assert limits_dropin(LimitsConfig(tasks_max=64)).splitlines() == ["[Service]", "TasksMax=64"]


def test_a_config_reload_reaches_every_running_unit_of_the_agent_the_daemon_included() -> None:
    from collections.abc import Iterable, Sequence
    from dataclasses import dataclass

    from ductor.agents import reloadable_units
    from ductor.paths import Mode
    from ductor.units import Manager

    running = {
        "ductor-agent@my\\x2dbot.service": ("active", "yes"),
        "ductor-telegram@my\\x2dbot.service": ("active", "yes"),
        "ductor-matrix@my\\x2dbot.service": ("inactive", "yes"),
        "ductor-cron@my\\x2dbot:daily.service": ("active", "no"),
    }

    @dataclass(frozen=True)
    class Units(Manager):
        def list_units(self, patterns: Iterable[str], *, all_units: bool = True) -> list[str]:
            import fnmatch

            return [u for u in running if any(fnmatch.fnmatch(u, p) for p in patterns)]

        def show(self, units: Sequence[str], properties: Sequence[str]) -> list[dict[str, str]]:
            return [
                {"Id": u, "ActiveState": running[u][0], "CanReload": running[u][1]} for u in units
            ]

    assert reloadable_units(Units(Mode.USER), "my-bot") == [
        "ductor-agent@my\\x2dbot.service",
        "ductor-telegram@my\\x2dbot.service",
    ]


def test_removing_an_agent_disables_its_group_heartbeats_and_leaves_other_agents_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fnmatch
    from collections.abc import Iterable
    from dataclasses import dataclass

    from ductor import agents, paths
    from ductor.run import Result
    from ductor.units import Manager

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    env = {
        "DUCTOR_CONFIG_DIR": str(tmp_path / "config"),
        "DUCTOR_STATE_DIR": str(tmp_path / "state"),
        "HOME": str(tmp_path),
    }
    layout = paths.resolve(env=env)
    layout.agents_config_dir.mkdir(parents=True)
    heartbeat = (
        "[heartbeat]\nenabled = true\n"
        "[[heartbeat.group_targets]]\nchat_id = -100111\n"
        "[[heartbeat.group_targets]]\nchat_id = -100222\n"
    )
    layout.agent_config("main").write_text(heartbeat)
    layout.agent_config("main2").write_text(heartbeat)
    unit_dir = tmp_path / "xdg" / "systemd" / "user"
    ours = ["ductor-heartbeat@main.timer", "ductor-heartbeat@main:1.timer"]
    ours.append("ductor-heartbeat@main:2.timer")
    theirs = ["ductor-heartbeat@main2.timer", "ductor-heartbeat@main2:1.timer"]
    for unit in ours + theirs:
        (unit_dir / f"{unit}.d").mkdir(parents=True)
        (unit_dir / f"{unit}.d" / "10-ductor.conf").write_text("[Timer]\nOnActiveSec=30min\n")
    calls: list[tuple[str, ...]] = []

    @dataclass(frozen=True)
    class Units(Manager):
        def systemctl(self, *args: str, check: bool = True, timeout: float = 90) -> Result:
            calls.append(args)
            return Result(("systemctl", *args), 0, "", "")

        def list_units(self, patterns: Iterable[str], *, all_units: bool = True) -> list[str]:
            return [u for u in ours + theirs if any(fnmatch.fnmatch(u, p) for p in patterns)]

    agents.remove(layout, Units(paths.Mode.USER), "main", purge=False)

    disabled = {c[-1] for c in calls if c[:2] == ("disable", "--now")}
    assert set(ours) <= disabled
    assert not disabled & set(theirs)
    for unit in ours:
        assert not (unit_dir / f"{unit}.d").exists()
    for unit in theirs:
        assert (unit_dir / f"{unit}.d" / "10-ductor.conf").is_file()
