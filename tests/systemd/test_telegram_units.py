"""The Telegram transport under a real systemd: agent socket, agent and transport units
of agent ``tg`` against the fake Bot API (run inside the booted system as a user unit,
driven over its /_test control endpoint), with the fake claude behind the agent."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from tests.systemd.test_install import CONFIG, SRC, TOKEN, sh

pytestmark = pytest.mark.systemd

SHARED = Path(__file__).resolve().parents[3] / "shared"
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
    systemd.copy_in(SHARED / "fixtures", "/opt/shared/fixtures")
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
    tg.wait_until(lambda: typing_count(tg) > typing, timeout=20, what="the turn started")
    sh(tg, "systemctl --user kill -s KILL ductor-telegram@tg.service")
    tg.wait_until(lambda: answered(tg, before + 1), timeout=60, what="the answer after restart")
    time.sleep(3)
    assert sum(t.endswith("ECHO: hello") for t in chat_texts(tg)) == before + 1


def test_kill_9_of_the_agent_mid_turn_still_gives_one_complete_answer(tg: Any) -> None:
    set_env(tg, FAKECLI_DELAY_MS="1500")
    before = sum(t.endswith("ECHO: hello") for t in chat_texts(tg))
    typing = typing_count(tg)
    control(tg, "user_sends", chat_id=USER, text="third", user_id=USER)
    tg.wait_until(lambda: typing_count(tg) > typing, timeout=20, what="the turn started")
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
