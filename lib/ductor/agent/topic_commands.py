"""Commands about forum topics: the project line of ``/status``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ductor.agent.execute import SEP

if TYPE_CHECKING:
    from ductor.agent.core import Agent


def project_lines(agent: Agent, key: str) -> list[str]:
    """``/status``: the project folder this topic works in, if it has one."""
    project = agent.turn_env().project(key)
    if project is None:
        return []
    state = "" if project.exists else " (missing: messages here are refused until it exists)"
    return [f'**Project** {SEP} {project.path}{state} (project_roots."{project.entry}")']
