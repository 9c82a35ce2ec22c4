"""The Telegram transport under a real systemd: agent socket, agent and transport units
of agent ``tg`` against the fake Bot API (run inside the booted system as a user unit,
driven over its /_test control endpoint), with the fake claude behind the agent."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from tests.systemd.test_install import CONFIG, SRC, TOKEN, sh

pytestmark = pytest.mark.systemd

STUB_PORT = 8081
USER = 4242
ENV_FILE = f"{CONFIG}/credentials/tg/.env"
VENV_PYTHON = "~/.local/share/ductor/venv/bin/python"

CONTROL = f"""
import json, sys, urllib.request
request = urllib.request.Request(
    "http://127.0.0.1:{STUB_PORT}/_test/" + sys.argv[1], data=sys.argv[2].encode(),
    headers={{"Content-Type": "application/json"}})
print(urllib.request.urlopen(request, timeout=10).read().decode())
"""


def control(systemd: Any, op: str, **args: Any) -> dict[str, Any]:
    out = systemd.run(["python3", "-c", CONTROL, op, json.dumps(args)]).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def chat_texts(systemd: Any) -> list[str]:
    return [m["plain_text"] for m in control(systemd, "bot_messages", chat_id=USER)["messages"]]


def set_env(systemd: Any, **values: str) -> None:
    body = "".join(f"{k}={v}\n" for k, v in values.items())
    sh(systemd, f"umask 077 && cat > {ENV_FILE}.new && mv {ENV_FILE}.new {ENV_FILE}", input=body)


@pytest.fixture(scope="module")
def tg(systemd: Any) -> Any:
    sh(systemd, f"{SRC}/install.sh")
    sh(
        systemd,
        "ductor init tg --non-interactive --user-id 4242 --timezone UTC --telegram-token-file -",
        input=TOKEN + "\n",
    )
    sh(
        systemd,
        f"{VENV_PYTHON} -c 'from ductor import config, paths;"
        ' p = paths.resolve(); config.set_values(p.agent_config("tg"),'
        f' [("telegram.api_base_url", "http://127.0.0.1:{STUB_PORT}"),'
        ' ("streaming.edit_interval_seconds", 0.5)])\'',
    )
    sh(systemd, f"ln -sf {SRC}/tests/fakecli/claude ~/.local/bin/claude")
    sh(systemd, f"install -d -m 0700 {CONFIG}/credentials/tg")
    set_env(systemd, FAKECLI_DELAY_MS="200")
    sh(
        systemd,
        "systemd-run --user --unit=fake-telegram --setenv=PYTHONPATH="
        + SRC
        + f" --working-directory={SRC} /usr/bin/python3 -m tests.stubs.telegram_api"
        f" --port {STUB_PORT} --token {TOKEN} --control",
    )
    systemd.wait_until(lambda: _stub_up(systemd), timeout=20, what="the fake Bot API")
    sh(systemd, "ductor agent sync tg && systemctl --user start ductor@tg.target")
    systemd.wait_until(
        lambda: (
            sh(
                systemd, "systemctl --user is-active ductor-telegram@tg.service", check=False
            ).stdout.strip()
            == "active"
        ),
        timeout=30,
        what="the transport is up",
    )
    yield systemd
    sh(systemd, "systemctl --user stop ductor@tg.target fake-telegram.service", check=False)
    sh(
        systemd,
        "systemctl --user stop ductor-agent@tg.service ductor-telegram@tg.service",
        check=False,
    )
    sh(systemd, "ductor agent remove tg --purge", check=False)
    sh(systemd, "rm -f ~/.local/bin/claude", check=False)


def _stub_up(systemd: Any) -> bool:
    try:
        control(systemd, "calls")
    except Exception:
        return False
    return True


def typing_count(systemd: Any) -> int:
    return control(systemd, "calls")["calls"].count("sendChatAction")


def answered(systemd: Any, count: int) -> bool:
    return sum(t.endswith("ECHO: hello") for t in chat_texts(systemd)) >= count


def test_a_message_gets_a_streamed_answer_with_every_unit_under_systemd(tg: Any) -> None:
    control(tg, "user_sends", chat_id=USER, text="hello", user_id=USER)
    tg.wait_until(lambda: answered(tg, 1), timeout=40, what="the answer in the chat")
    props = sh(tg, "systemctl --user show -p ActiveState ductor-agent@tg.service").stdout
    assert "ActiveState=active" in props
    status = sh(tg, "systemctl --user show -p StatusText ductor-telegram@tg.service").stdout
    assert "@" in status


def test_kill_9_of_the_transport_mid_stream_still_gives_one_complete_answer(tg: Any) -> None:
    set_env(tg, FAKECLI_DELAY_MS="1500")
    before = sum(t.endswith("ECHO: hello") for t in chat_texts(tg))
    typing = typing_count(tg)
    control(tg, "user_sends", chat_id=USER, text="hello again", user_id=USER)
    tg.wait_until(lambda: typing_count(tg) > typing, timeout=45, what="the turn started")
    sh(tg, "systemctl --user kill -s KILL ductor-telegram@tg.service")
    tg.wait_until(lambda: answered(tg, before + 1), timeout=60, what="the answer after restart")
    time.sleep(3)
    assert sum(t.endswith("ECHO: hello") for t in chat_texts(tg)) == before + 1


def test_kill_9_of_the_agent_mid_turn_still_gives_one_complete_answer(tg: Any) -> None:
    set_env(tg, FAKECLI_DELAY_MS="1500")
    before = sum(t.endswith("ECHO: hello") for t in chat_texts(tg))
    typing = typing_count(tg)
    control(tg, "user_sends", chat_id=USER, text="third", user_id=USER)
    tg.wait_until(lambda: typing_count(tg) > typing, timeout=45, what="the turn started")
    sh(tg, "systemctl --user kill -s KILL ductor-agent@tg.service")
    tg.wait_until(lambda: answered(tg, before + 1), timeout=60, what="the recovered answer")
    time.sleep(3)
    texts = chat_texts(tg)
    assert sum(t.endswith("ECHO: hello") for t in texts) == before + 1
    assert any("Service restarted" in t for t in texts)


def test_messages_sent_while_the_transport_was_stopped_are_answered_after_start(tg: Any) -> None:
    set_env(tg, FAKECLI_DELAY_MS="100")
    sh(tg, "systemctl --user stop ductor-telegram@tg.service")
    before = sum(t.endswith("ECHO: hello") for t in chat_texts(tg))
    control(tg, "user_sends", chat_id=USER, text="are you there", user_id=USER)
    time.sleep(1)
    assert sum(t.endswith("ECHO: hello") for t in chat_texts(tg)) == before
    sh(tg, "systemctl --user start ductor-telegram@tg.service")
    tg.wait_until(lambda: answered(tg, before + 1), timeout=40, what="the late answer")


# -- cron jobs and heartbeats on real timers, results through the spool -------------------

RUNS = f"{CONFIG}/tg/cron_runs"


def cron_add(systemd: Any, name: str, *extra: str) -> None:
    args = " ".join(extra)
    sh(
        systemd,
        f"ductor cron add tg {name} --schedule '0 8 * * *' --prompt 'report {name}'"
        f" --title 'Job {name}' --chat {USER} --transport tg {args}",
    )


def run_state(systemd: Any, name: str) -> dict[str, Any]:
    out = sh(systemd, f"cat {RUNS}/{name}.json 2>/dev/null || echo '{{}}'").stdout
    result: dict[str, Any] = json.loads(out)
    return result


def test_a_cron_job_is_a_real_timer_and_its_result_reaches_the_chat(tg: Any) -> None:
    set_env(tg, FAKECLI_DELAY_MS="50")
    cron_add(tg, "news")
    timers = sh(tg, "systemctl --user list-timers --all --no-legend").stdout
    assert "ductor-cron@tg:news.timer" in timers
    calendar = sh(tg, "systemctl --user show -p TimersCalendar ductor-cron@tg:news.timer").stdout
    assert "08:00:00" in calendar
    sh(tg, "ductor cron run tg news")
    tg.wait_until(
        lambda: any("Job news" in t and "ECHO: hello" in t for t in chat_texts(tg)),
        timeout=60,
        what="the cron result in the chat",
    )
    assert run_state(tg, "news")["last_status"] == "ok"


def test_a_cron_result_waits_in_the_spool_while_the_transport_is_down(tg: Any) -> None:
    set_env(tg, FAKECLI_DELAY_MS="50")
    cron_add(tg, "later")
    sh(tg, "systemctl --user stop ductor-telegram@tg.service")
    try:
        sh(tg, "systemctl --user start ductor-cron@tg:later.service")
        assert run_state(tg, "later")["last_status"] == "ok"
        time.sleep(1)
        assert not any("Job later" in t for t in chat_texts(tg))
    finally:
        sh(tg, "systemctl --user start ductor-telegram@tg.service")
    tg.wait_until(
        lambda: any("Job later" in t for t in chat_texts(tg)), timeout=60, what="late delivery"
    )
    time.sleep(2)
    assert sum("Job later" in t for t in chat_texts(tg)) == 1


def test_a_killed_cron_run_is_reported_to_the_chat(tg: Any) -> None:
    set_env(tg, FAKECLI_SCENARIO="claude-interrupt", FAKECLI_STALL_S="60")
    cron_add(tg, "doomed")
    sh(tg, "systemctl --user start --no-block ductor-cron@tg:doomed.service")
    tg.wait_until(
        lambda: run_state(tg, "doomed").get("last_status") == "running",
        timeout=30,
        what="the run started",
    )
    time.sleep(1)
    sh(tg, "systemctl --user kill -s KILL ductor-cron@tg:doomed.service")
    tg.wait_until(
        lambda: any("Job doomed" in t and "failed" in t for t in chat_texts(tg)),
        timeout=60,
        what="the failure report",
    )


def test_jobs_sharing_a_dependency_never_overlap(tg: Any) -> None:
    set_env(tg, FAKECLI_DELAY_MS="700")
    cron_add(tg, "first", "--dependency", "db")
    cron_add(tg, "second", "--dependency", "db")
    sh(
        tg,
        "systemctl --user start --no-block ductor-cron@tg:first.service"
        " ductor-cron@tg:second.service",
    )
    tg.wait_until(
        lambda: all(run_state(tg, n).get("last_finished") for n in ("first", "second")),
        timeout=60,
        what="both runs finished",
    )
    runs = sorted(
        (run_state(tg, name) for name in ("first", "second")),
        key=lambda state: str(state["last_running_since"]),
    )
    # The later run started its CLI only after the earlier one had finished.
    assert runs[1]["last_running_since"] >= runs[0]["last_finished"]


def set_config(systemd: Any, *pairs: tuple[str, Any]) -> None:
    # Double quotes only: the script goes inside single quotes for the shell.
    values = ", ".join(f'("{key}", {json.dumps(value).title()})' for key, value in pairs)
    sh(
        systemd,
        f"{VENV_PYTHON} -c 'from ductor import config, paths;"
        f' p = paths.resolve(); config.set_values(p.agent_config("tg"), [{values}])\'',
    )


def heartbeat_scenario(systemd: Any, answer: str) -> str:
    """A copy of the claude-new fixture that answers ``answer``; its path inside."""
    base = f"{SRC}/tests/fixtures/cli/claude-new"
    target = f"$HOME/hb-{answer.lower().replace(' ', '-')}"
    sh(
        systemd,
        f"sed 's/ECHO: hello/{answer}/' {base}.jsonl > {target}.jsonl"
        f" && cp {base}.meta.json {target}.meta.json && cp {base}.stderr {target}.stderr",
    )
    return str(sh(systemd, f"echo {target}.jsonl").stdout.strip())


def beat(systemd: Any) -> None:
    sh(systemd, "systemctl --user start ductor-heartbeat@tg.service")


def test_heartbeat_sends_content_once_and_nothing_for_the_ack_token(tg: Any) -> None:
    set_config(
        tg,
        ("heartbeat.enabled", True),
        ("heartbeat.cooldown_minutes", 0),
        ("heartbeat.quiet_start", 0),
        ("heartbeat.quiet_end", 0),
    )
    sh(tg, "ductor agent sync tg")
    assert sh(tg, "systemctl --user is-enabled ductor-heartbeat@tg.timer").stdout.strip() == (
        "enabled"
    )
    control(tg, "user_sends", chat_id=USER, text="hello", user_id=USER)  # a session exists
    tg.wait_until(lambda: answered(tg, 1), timeout=40, what="a session")
    time.sleep(1)

    set_env(tg, FAKECLI_SCENARIO=heartbeat_scenario(tg, "HEARTBEAT_OK"))
    before = len(chat_texts(tg))
    beat(tg)
    time.sleep(2)
    assert len(chat_texts(tg)) == before

    set_env(tg, FAKECLI_SCENARIO=heartbeat_scenario(tg, "Time for a break"))
    beat(tg)
    tg.wait_until(
        lambda: any("Time for a break" in t for t in chat_texts(tg)),
        timeout=40,
        what="the heartbeat message",
    )
    time.sleep(2)
    assert sum("Time for a break" in t for t in chat_texts(tg)) == 1


def test_heartbeat_is_silent_in_quiet_hours(tg: Any) -> None:
    hour = int(sh(tg, "date -u +%H").stdout)
    set_config(
        tg,
        ("heartbeat.enabled", True),
        ("heartbeat.quiet_start", hour),
        ("heartbeat.quiet_end", (hour + 2) % 24),
    )
    set_env(tg, FAKECLI_SCENARIO=heartbeat_scenario(tg, "Quiet please"))
    beat(tg)
    time.sleep(2)
    assert not any("Quiet please" in t for t in chat_texts(tg))
    journal = sh(tg, "journalctl --user-unit=ductor-heartbeat@tg.service -o cat --no-pager").stdout
    assert "quiet hours" in journal


def test_a_job_the_agent_creates_from_a_chat_reports_back_to_that_chat(tg: Any) -> None:
    """The agent's tool script, run with the chat identity the agent gives its CLI."""
    set_env(tg, FAKECLI_DELAY_MS="50")
    control(tg, "add_chat", chat_id=USER)  # the user has talked to the bot before
    tool = f"{CONFIG}/tg/workspace/tools/cron_tools/cron_add.py"
    tutorial = sh(tg, f"python3 {tool}").stdout
    assert "--schedule" in tutorial
    created = sh(
        tg,
        f"DUCTOR_AGENT_NAME=tg DUCTOR_CHAT_ID={USER} DUCTOR_TRANSPORT=tg python3 {tool}"
        " fromchat --schedule '*/30 * * * *' --prompt 'check the weather' --title 'From chat'",
    )
    job = json.loads(created.stdout)
    assert str(job["chat_id"]) == str(USER)
    sh(tg, "systemctl --user start ductor-cron@tg:fromchat.service")
    journal = sh(tg, "journalctl --user-unit='ductor-cron@*' -o cat --no-pager | tail -5")
    tg.wait_until(
        lambda: any("From chat" in t for t in chat_texts(tg)),
        timeout=60,
        what=f"the result; run {run_state(tg, 'fromchat')}; {journal.stdout}",
    )
