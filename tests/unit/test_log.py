from __future__ import annotations

import io
import logging

import pytest

from ductor import log


@pytest.fixture(autouse=True)
def _restore_root_logger() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield None
    root.handlers[:] = handlers
    root.setLevel(level)


def test_journal_lines_carry_syslog_priorities_on_every_line() -> None:
    out = io.StringIO()
    logger = log.setup("DEBUG", stream=out, journal=True)
    logger.error("broken\nsecond line")
    logger.warning("careful")
    logger.info("fine")
    logger.debug("detail")
    lines = out.getvalue().splitlines()
    assert lines == [
        "<3>ductor: broken",
        "<3>second line",
        "<4>ductor: careful",
        "<6>ductor: fine",
        "<7>ductor: detail",
    ]


def test_terminal_format_is_readable() -> None:
    out = io.StringIO()
    log.setup("INFO", stream=out, journal=False).info("hello")
    assert out.getvalue().split(" ", 1)[1] == "INFO    ductor: hello\n"


def test_registered_secrets_never_reach_a_log_line() -> None:
    out = io.StringIO()
    logger = log.setup("INFO", stream=out, journal=True)
    log.register_secret("123456:SECRET-TOKEN-VALUE")
    logger.info("token is %s", "123456:SECRET-TOKEN-VALUE")
    assert "SECRET" not in out.getvalue()
    assert "***" in out.getvalue()


def test_journal_is_detected_only_when_journal_stream_names_our_stderr(tmp_path: object) -> None:
    with open(__file__) as stream:
        import os

        st = os.fstat(stream.fileno())
        assert log.stream_is_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not log.stream_is_journal(stream, {"JOURNAL_STREAM": "1:2"})
        assert not log.stream_is_journal(stream, {})
