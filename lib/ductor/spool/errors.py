"""What can go wrong with the spool, as exceptions that say which envelope and why."""

from __future__ import annotations

from ductor.errors import DuctorError


class SpoolError(DuctorError):
    """A spool operation that cannot be done as asked."""


class EnvelopeError(SpoolError):
    """An envelope (in memory or in a file) has a bad field; ``field`` names it."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class UnknownEnvelopeError(SpoolError):
    """No envelope with this id in the states the operation looked in."""


class NotClaimedError(SpoolError):
    """The envelope is not in ``cur/``: it was never claimed, or someone else moved it."""


class WakeSocketBusyError(SpoolError):
    """Another live reader already listens on this queue's ``wake.sock``."""
