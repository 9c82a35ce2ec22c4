"""`ductor outbox` against a real spool in a temporary state directory (no agent runs)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ductor.cli.main import main
from ductor.spool import (
    Button,
    Envelope,
    Execution,
    ExecutionStatus,
    Kind,
    Payload,
    Routing,
    Spool,
    State,
)

AGENT = "main"


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Spool:
    """An agent `main` (its config file is all `ductor` needs to know it) and its spool."""
    config = tmp_path / "config"
    (config / "agents").mkdir(parents=True)
    (config / "agents" / f"{AGENT}.toml").write_text("")
    monkeypatch.setenv("DUCTOR_CONFIG_DIR", str(config))
    monkeypatch.setenv("DUCTOR_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("DUCTOR_MODE", raising=False)
    return Spool(tmp_path / "state" / AGENT / "spool")


def envelope(
    envelope_id: str,
    text: str,
    *,
    transport: str = "tg",
    kind: Kind = Kind.CRON,
    broadcast: bool = False,
    age: timedelta = timedelta(minutes=5),
) -> Envelope:
    routing = (
        Routing(transport, broadcast=True, origin="heartbeat")
        if broadcast
        else Routing(transport, chat_id=123, topic_id=7, origin="cron job daily-news")
    )
    return Envelope.create(
        agent=AGENT,
        kind=kind,
        routing=routing,
        payload=Payload(
            text=text,
            files=(Path("/srv/out/news.pdf"),),
            buttons=((Button("More", "cron:news:more"), Button("Stop", "cron:news:stop")),),
            metadata={"job_id": "daily-news"},
        ),
        execution=Execution(status=ExecutionStatus.OK),
        envelope_id=envelope_id,
        now=datetime.now(UTC) - age,
    )


@pytest.fixture
def filled(spool: Spool) -> Spool:
    """pending, retrying, failed (tg), delivered (tg, done/), delivered (mx)."""
    tg = spool.outbox("tg")
    for env in (
        envelope("a-pending", "Daily news\nsecond line"),
        envelope("b-retrying", "ping", kind=Kind.HEARTBEAT, broadcast=True),
        envelope("c-failed", "**TASK: report**\n\nbody"),
        envelope("d-delivered", "all good"),
    ):
        assert tg.put(env)
    claimed = tg.claim("b-retrying")
    assert claimed is not None
    tg.fail(claimed, "network down")
    claimed = tg.claim("c-failed")
    assert claimed is not None
    tg.fail(claimed, "Bad Request: chat not found", permanent=True)
    claimed = tg.claim("d-delivered")
    assert claimed is not None
    tg.finish(tg.record_delivery(claimed, [41, 42]))
    mx = spool.outbox("mx")
    assert mx.put(envelope("e-matrix", "from matrix", transport="mx"))
    claimed = mx.claim("e-matrix")
    assert claimed is not None
    mx.finish(mx.record_delivery(claimed, ["$event"], fallback_reason="room gone"))
    return spool


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["outbox", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_shows_waiting_and_failed_envelopes_of_every_transport(
    filled: Spool, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "list", AGENT)
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(lines) == {"a-pending", "b-retrying", "c-failed"}
    assert "pending" in lines["a-pending"]
    assert "chat 123 topic 7" in lines["a-pending"]
    assert "Daily news" in lines["a-pending"] and "second line" not in lines["a-pending"]
    assert "5m" in lines["a-pending"]
    assert "retrying 1 (next at" in lines["b-retrying"]
    assert "broadcast" in lines["b-retrying"]
    assert "failed: Bad Request: chat not found" in lines["c-failed"]
    assert out.splitlines()[0].split() == [
        "ID",
        "KIND",
        "TRANSPORT",
        "TARGET",
        "EXECUTION",
        "DELIVERY",
        "AGE",
        "TEXT",
    ]


def test_list_all_adds_delivered_envelopes_and_transport_filters(
    filled: Spool, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = run(capsys, "list", AGENT, "--all")
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(lines) == {"a-pending", "b-retrying", "c-failed", "d-delivered", "e-matrix"}
    assert "delivered at" in lines["d-delivered"]
    assert "via fallback" in lines["e-matrix"]

    _, out, _ = run(capsys, "list", AGENT, "--all", "--transport", "mx")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["e-matrix"]


def test_list_json(filled: Spool, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", AGENT, "--json")
    assert code == 0
    rows = json.loads(out)
    assert [row["id"] for row in rows] == ["a-pending", "b-retrying", "c-failed"]
    failed = rows[2]
    assert failed["state"] == "failed" and failed["transport"] == "tg"
    assert failed["envelope"]["delivery"]["last_error"] == "Bad Request: chat not found"
    assert failed["envelope"]["execution"]["status"] == "ok"
    assert failed["delivery_state"].startswith("failed:")


def test_an_empty_outbox_says_so(spool: Spool, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", AGENT)
    assert code == 0
    assert "No waiting or failed envelopes" in out and "--all" in out
    assert json.loads(run(capsys, "list", AGENT, "--json")[1]) == []


def test_unknown_agent_is_a_usage_error(spool: Spool, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "list", "nobody")
    assert code == 2
    assert "no agent named 'nobody'" in err


def test_show_prints_the_whole_envelope(filled: Spool, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", AGENT, "c-failed")
    assert code == 0
    assert "outbox     tg, failed/" in out
    assert "origin     cron job daily-news" in out
    assert "last error     Bad Request: chat not found" in out
    assert "/srv/out/news.pdf" in out
    assert "[More -> cron:news:more]  [Stop -> cron:news:stop]" in out
    assert "job_id: daily-news" in out
    assert "  **TASK: report**\n\n  body" in out

    _, out, _ = run(capsys, "show", AGENT, "e-matrix")
    assert "message ids    $event" in out
    assert "fallback       yes: room gone" in out


def test_show_json_and_unique_id_prefix(filled: Spool, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", AGENT, "d-deliv", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["id"] == "d-delivered" and data["state"] == "done"
    assert data["envelope"]["delivery"]["message_ids"] == [41, 42]


def test_unknown_or_ambiguous_id_is_a_usage_error_that_says_how_to_find_ids(
    filled: Spool, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "show", AGENT, "zzz")
    assert code == 2
    assert "no envelope 'zzz'" in err and "ductor outbox list main --all" in err
    code, _, err = run(capsys, "resend", AGENT, "../x")
    assert code == 2 and "ductor outbox list main --all" in err
    filled.outbox("mx").put(envelope("a-pending", "same id elsewhere", transport="mx"))
    code, _, err = run(capsys, "show", AGENT, "a-pending")
    assert code == 2 and "--transport" in err
    code, out, _ = run(capsys, "show", AGENT, "a-pending", "--transport", "mx")
    assert code == 0 and "same id elsewhere" in out


def test_resend_puts_a_failed_envelope_back_without_touching_execution(
    filled: Spool, capsys: pytest.CaptureFixture[str]
) -> None:
    tg = filled.outbox("tg")
    code, out, _ = run(capsys, "resend", AGENT, "c-failed")
    assert code == 0
    assert "resent c-failed" in out and "failed/ to new/" in out and "not re-run" in out
    entry = tg.get("c-failed")
    assert entry is not None and entry.state is State.NEW and entry.envelope is not None
    assert entry.envelope.delivery.requeues == 1
    assert entry.envelope.delivery.attempts == 0
    assert entry.envelope.execution.status is ExecutionStatus.OK
    assert tg.claim("c-failed") is not None  # due now


def test_resend_a_delivered_envelope_again(
    filled: Spool, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = run(capsys, "resend", AGENT, "d-delivered")
    assert code == 0
    entry = filled.outbox("tg").get("d-delivered")
    assert entry is not None and entry.state is State.NEW and entry.envelope is not None
    assert entry.envelope.delivery.requeues == 1
    assert entry.envelope.delivery.message_ids == ()


def test_resend_refuses_what_is_still_queued(
    filled: Spool, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "resend", AGENT, "a-pending")
    assert code == 2 and "waiting for delivery already" in err
    entry = filled.outbox("tg").get("a-pending")
    assert entry is not None and entry.state is State.NEW


def test_drop_with_yes_removes_the_envelope(
    filled: Spool, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "drop", AGENT, "c-failed", "--yes")
    assert code == 0 and "dropped c-failed" in out
    assert filled.outbox("tg").get("c-failed") is None
    code, _, _ = run(capsys, "drop", AGENT, "a-pending", "-y")
    assert code == 0
    assert filled.outbox("tg").get("a-pending") is None


def test_drop_without_yes_refuses_when_stdin_is_not_a_terminal(
    filled: Spool, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    code, _, err = run(capsys, "drop", AGENT, "c-failed")
    assert code == 2 and "--yes" in err
    assert filled.outbox("tg").get("c-failed") is not None


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "dropped"), [("y\n", True), ("\n", False)])
def test_drop_on_a_terminal_asks_first(
    filled: Spool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    dropped: bool,
) -> None:
    monkeypatch.setattr("sys.stdin", _Terminal(answer))
    code, out, _ = run(capsys, "drop", AGENT, "c-failed")
    assert "Drop c-failed" in out
    assert (code == 0) is dropped
    assert (filled.outbox("tg").get("c-failed") is None) is dropped


def test_drop_refuses_delivered_envelopes(
    filled: Spool, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "drop", AGENT, "d-delivered", "--yes")
    assert code == 2 and "delivered already" in err
    assert filled.outbox("tg").get("d-delivered") is not None


def test_bad_files_are_listed_and_can_be_dropped(
    filled: Spool, capsys: pytest.CaptureFixture[str]
) -> None:
    tg = filled.outbox("tg")
    (tg.directory(State.NEW) / "f-broken").write_text("{not json")
    assert tg.claim("f-broken") is None  # a reader moves it aside to bad/
    _, out, _ = run(capsys, "list", AGENT)
    line = next(line for line in out.splitlines() if line.startswith("f-broken"))
    assert "bad:" in line
    code, out, _ = run(capsys, "show", AGENT, "f-broken")
    assert code == 0 and "problem" in out
    code, _, _ = run(capsys, "drop", AGENT, "f-broken", "--yes")
    assert code == 0
    assert list(tg.directory(State.BAD).iterdir()) == []


@pytest.mark.parametrize("action", ["list", "show", "resend", "drop"])
def test_every_action_has_help(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["outbox", action, "--help"])
    assert exit_.value.code == 0
    assert "usage: ductor outbox" in capsys.readouterr().out
