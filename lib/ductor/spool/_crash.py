"""The crash hook that lets tests kill the library between two steps.

With ``DUCTOR_SPOOL_CRASH_AT=<point>`` in its environment, a process SIGKILLs itself
when the spool reaches that point: no cleanup, no flush, exactly what ``kill -9`` or a
power cut (minus the page cache) does. tests/process/test_spool_crash.py uses it to
prove that every step is crash-safe. Unset (always, in production) it costs one string
comparison per step. The points are listed in docs/spool.md.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "DUCTOR_SPOOL_CRASH_AT"
_crash_at = os.environ.get(CRASH_ENV, "")


def crash_point(name: str) -> None:
    if _crash_at == name:
        os.kill(os.getpid(), signal.SIGKILL)
