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
