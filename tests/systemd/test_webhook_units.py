"""ductor-webhook@.socket/.service under a real systemd: the first request starts the
endpoint through its socket and it exits when idle; a wake call made while the agent is
off (and the endpoint killed with SIGKILL right after its 202) is answered once after the
agent starts; a cron_task call runs in ductor-webhook-run@, its result waits in the
outbox while the transport is stopped and reaches the chat once after it starts.

The agent (``wh``) runs the fake ``claude`` (tests/fakecli); its Telegram transport runs
only in the last test (against the fake Bot API, a user unit inside the booted system),
so until then what the chat would get waits in its Telegram outbox. Removes the agent at
the end.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from tests.systemd.test_agent_units import show
from tests.systemd.test_install import CONFIG, SRC, TOKEN, sh
from tests.systemd.test_task_units import ONE_PER_LINE
from tests.systemd.test_telegram_units import STUB_PORT, VENV_PYTHON, control

pytestmark = pytest.mark.systemd

NAME = "wh"
PORT = 18742
STATE = f"{CONFIG}/{NAME}"  # systemd 252: StateDirectory= of user units is ~/.config
OUTBOX = f"{STATE}/spool/outbox/tg"
INBOX = f"{STATE}/spool/inbox"
SERVICE = f"ductor-webhook@{NAME}.service"
SOCKET = f"ductor-webhook@{NAME}.socket"
IDLE_EXIT = 3
USER = 7
TRANSPORT = f"ductor-telegram@{NAME}.service"
FAKE_BOT_API = "fake-telegram-wh"

POST = """\
import json, sys, urllib.error, urllib.request
token, hook, body = sys.argv[1:4]
request = urllib.request.Request(
    "http://127.0.0.1:%d/hooks/" % PORT + hook, data=body.encode(), method="POST",
    headers={"Content-Type": "application/json", "Authorization": "Bearer " + token})
try:
    with urllib.request.urlopen(request, timeout=30) as answer:
        print(answer.status)
except urllib.error.HTTPError as error:
    print(error.code)
""".replace("PORT", str(PORT))


def post(systemd: Any, token: str, hook: str, payload: dict[str, Any]) -> int:
    script = POST.replace("'", "'\\''")
    body = json.dumps(payload).replace("'", "'\\''")
    out = sh(systemd, f"python3 -c '{script}' {token} {hook} '{body}'").stdout
    return int(out.strip())


def outbox_texts(systemd: Any) -> list[str]:
    script = ONE_PER_LINE.replace("'", "'\\''")
    out = sh(systemd, f"python3 -c '{script}' {OUTBOX}").stdout
    return [json.loads(line)["payload"]["text"] for line in out.splitlines() if line.strip()]


def add_hook(systemd: Any, hook: str, *options: str) -> str:
    out = sh(systemd, f"ductor webhook add {NAME} {hook} --json " + " ".join(options)).stdout
    return str(json.loads(out)["token"])


def active(systemd: Any, unit: str) -> str:
    return show(systemd, unit, "ActiveState")["ActiveState"]


@pytest.fixture(scope="module")
def agent_wh(systemd: Any) -> Any:
    sh(systemd, f"{SRC}/install.sh")
    sh(
        systemd,
        f"ductor init {NAME} --non-interactive --user-id {USER} --timezone UTC"
        " --telegram-token-file -",
        input=TOKEN + "\n",
    )
    sh(
        systemd,
        f"{VENV_PYTHON} -c 'from ductor import config, paths; p = paths.resolve();"
        f' config.set_values(p.agent_config("{NAME}"),'
        f' [("telegram.api_base_url", "http://127.0.0.1:{STUB_PORT}")])\'',
    )
    sh(systemd, f"ln -sf {SRC}/tests/fakecli/claude ~/.local/bin/claude")
    sh(
        systemd,
        f"printf '[webhooks]\\nenabled = true\\nlisten = \"127.0.0.1:{PORT}\"\\n'"
        f" >> {CONFIG}/agents/{NAME}.toml",
    )
    sh(systemd, f"ductor agent sync {NAME}")
    # Idle exit after seconds, not a minute: a test drop-in after the shipped ones.
    sh(
        systemd,
        f"mkdir -p ~/.config/systemd/user/{SERVICE}.d && printf '%s\\n' '[Service]'"
        f" 'ExecStart=' 'ExecStart=%h/.local/bin/ductor-webhook serve --idle-exit {IDLE_EXIT} %I'"
        f" > ~/.config/systemd/user/{SERVICE}.d/90-test.conf && systemctl --user daemon-reload",
    )
    sh(systemd, f"systemctl --user start {SOCKET} ductor-webhook-run@{NAME}.path")
    yield systemd
    sh(
        systemd,
        f"systemctl --user stop {SOCKET} {SERVICE} ductor-webhook-run@{NAME}.path"
        f" ductor-agent@{NAME}.socket ductor-agent@{NAME}.service {TRANSPORT}"
        f" {FAKE_BOT_API}.service",
        check=False,
    )
    sh(systemd, f"rm -rf ~/.config/systemd/user/{SERVICE}.d", check=False)
    sh(systemd, f"ductor agent remove {NAME} --purge", check=False)
    sh(systemd, "rm -f ~/.local/bin/claude", check=False)


def test_the_agent_sync_puts_the_socket_where_the_config_says(agent_wh: Any) -> None:
    wants = sh(agent_wh, f"systemctl --user show ductor@{NAME}.target -p Wants").stdout
    assert SOCKET in wants and f"ductor-webhook-run@{NAME}.path" in wants
    listen = sh(agent_wh, f"systemctl --user show {SOCKET} -p Listen").stdout
    assert f"127.0.0.1:{PORT} (Stream)" in listen
    doctor = json.loads(sh(agent_wh, f"ductor doctor {NAME} --json", check=False).stdout)
    (webhooks,) = [c for c in doctor["checks"] if c["name"] == f"webhooks {NAME}"]
    assert webhooks["level"] == "ok", webhooks


def test_the_first_request_starts_the_endpoint_which_exits_when_idle(agent_wh: Any) -> None:
    sd = agent_wh
    token = add_hook(sd, "ping", "--prompt", "'Ping {{n}}'")
    sh(sd, f"systemctl --user stop {SERVICE}", check=False)
    assert active(sd, SERVICE) == "inactive"
    assert post(sd, token, "ping", {"n": 1}) == 202
    assert active(sd, SERVICE) == "active"
    assert post(sd, "wrong-token", "ping", {"n": 2}) == 401
    sd.wait_until(
        lambda: active(sd, SERVICE) == "inactive", timeout=IDLE_EXIT + 20, what="idle exit"
    )
    assert show(sd, SERVICE, "Result")["Result"] == "success"
    assert active(sd, SOCKET) == "active"
    assert post(sd, token, "ping", {"n": 3}) == 202  # started again by the socket
    sh(sd, "journalctl --sync", check=False)
    journal = sd.journal(unit=SERVICE, user=True)
    assert "401 unauthorized" in journal and "wrong-token" not in journal
    sh(sd, f"rm -f {INBOX}/new/*")


def test_a_wake_call_while_the_agent_is_off_is_answered_once_after_it_starts(
    agent_wh: Any,
) -> None:
    sd = agent_wh
    sh(sd, f"rm -rf {OUTBOX}")
    sh(sd, f"systemctl --user stop ductor-agent@{NAME}.socket ductor-agent@{NAME}.service")
    token = add_hook(sd, "ci", "--prompt", "'Build {{build.number}} is {{status}}'")
    assert post(sd, token, "ci", {"status": "red", "build": {"number": 9}}) == 202
    sh(sd, f"systemctl --user kill -s KILL {SERVICE}")  # after its 202: nothing is lost
    time.sleep(1)
    assert active(sd, f"ductor-agent@{NAME}.service") == "inactive"
    assert sh(sd, f"ls {INBOX}/new").stdout.strip()  # waits for the agent
    sh(sd, f"systemctl --user start ductor-agent@{NAME}.socket ductor-agent@{NAME}.service")
    sd.wait_until(lambda: outbox_texts(sd), timeout=60, what="the agent's answer")
    time.sleep(2)
    assert outbox_texts(sd) == ["ECHO: hello"]  # the fake claude's replayed answer, once
    assert not sh(sd, f"ls {INBOX}/new").stdout.strip()


def test_a_cron_task_result_waits_while_the_transport_is_stopped_and_reaches_the_chat_once(
    agent_wh: Any,
) -> None:
    sd = agent_wh
    sh(sd, f"rm -rf {OUTBOX}")
    assert active(sd, TRANSPORT) == "inactive"
    token = add_hook(sd, "nightly", "--mode", "cron_task", "--prompt", "'Report {{what}}'")
    assert post(sd, token, "nightly", {"what": "the backlog"}) == 202
    sd.wait_until(
        lambda: any("WEBHOOK (CRON TASK): nightly" in t for t in outbox_texts(sd)),
        timeout=60,
        what="the task's result",
    )
    time.sleep(1)
    assert len(outbox_texts(sd)) == 1, outbox_texts(sd)
    assert show(sd, f"ductor-webhook-run@{NAME}.service", "Result")["Result"] == "success"
    last = json.loads(sh(sd, f"cat {STATE}/webhook_calls/nightly.json").stdout)
    assert last["last_result"] == "ok"

    sh(
        sd,
        f"systemd-run --user --unit={FAKE_BOT_API} --setenv=PYTHONPATH={SRC}"
        f" --working-directory={SRC} /usr/bin/python3 -m tests.stubs.telegram_api"
        f" --port {STUB_PORT} --token {TOKEN} --control",
    )
    sd.wait_until(lambda: _stub_up(sd), timeout=20, what="the fake Bot API")
    control(sd, "add_chat", chat_id=USER)  # the user once wrote to the bot
    sh(sd, f"systemctl --user start {TRANSPORT}")
    sd.wait_until(
        lambda: any("WEBHOOK (CRON TASK): nightly" in t for t in chat_texts(sd)),
        timeout=40,
        what="the result in the chat",
    )
    time.sleep(2)  # a second delivery would come now
    delivered = [t for t in chat_texts(sd) if "WEBHOOK (CRON TASK): nightly" in t]
    assert len(delivered) == 1, chat_texts(sd)
    assert outbox_texts(sd) == []


def chat_texts(systemd: Any) -> list[str]:
    messages = control(systemd, "bot_messages", chat_id=USER)["messages"]
    return [str(m["plain_text"]) for m in messages]


def _stub_up(systemd: Any) -> bool:
    try:
        control(systemd, "calls")
    except Exception:
        return False
    return True
