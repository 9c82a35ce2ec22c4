"""ductor.agents: the drop-ins that `ductor agent sync` derives from an agent's config."""

from __future__ import annotations

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
