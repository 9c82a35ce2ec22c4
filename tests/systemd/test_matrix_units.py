"""Telegram and Matrix on one agent under a real systemd: agent ``duo`` runs both
transports at once, against the fake Bot API and a real Synapse, both run inside the
booted system as user units (its network namespace has only its own loopback), with the
fake claude behind the agent. Synapse is driven with tests/stubs/synapse.py attached to
it, through small scripts run inside."""

from __future__ import annotations

import json
import secrets
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.matrix.conftest import synapse_python  # noqa: F401  (a fixture used below)
from tests.systemd.test_install import CONFIG, SRC, TOKEN, sh

pytestmark = pytest.mark.systemd

AGENT = "duo"
STUB_PORT = 8082  # test_telegram_units uses 8081
STUB_UNIT = "fake-telegram-duo"
SYNAPSE_PORT = 8448
SYNAPSE_UNIT = "test-synapse"
SYNAPSE_DIR = "/var/tmp/test-synapse"
SYNAPSE_VENV_INSIDE = "/opt/synapse-venv"
SHARED_SECRET = secrets.token_hex(16)
USER = 4242
ENV_FILE = f"{CONFIG}/credentials/{AGENT}/.env"
VENV_PYTHON = "~/.local/share/ductor/venv/bin/python"
TRANSPORT_UNITS = (f"ductor-telegram@{AGENT}.service", f"ductor-matrix@{AGENT}.service")

CONTROL = f"""
import json, sys, urllib.request
request = urllib.request.Request(
    "http://127.0.0.1:{STUB_PORT}/_test/" + sys.argv[1], data=sys.argv[2].encode(),
    headers={{"Content-Type": "application/json"}})
print(urllib.request.urlopen(request, timeout=10).read().decode())
"""

# One call of a tests.stubs.synapse.Synapse method on the server inside; JSON out.
MATRIX = """
import dataclasses, json, sys
from tests.stubs.synapse import Synapse
server = Synapse.attach(int(sys.argv[1]), sys.argv[2])
result = getattr(server, sys.argv[3])(**json.loads(sys.argv[4]))
print(json.dumps(dataclasses.asdict(result) if dataclasses.is_dataclass(result) else result))
"""

SET_VALUES = f"""
import json, sys
from ductor import config, paths
pairs = [(key, value) for key, value in json.load(sys.stdin)]
config.set_values(paths.resolve().agent_config("{AGENT}"), pairs)
"""


def control(systemd: Any, op: str, **args: Any) -> dict[str, Any]:
    out = systemd.run(["python3", "-c", CONTROL, op, json.dumps(args)]).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def matrix(systemd: Any, op: str, **args: Any) -> Any:
    """``Synapse.<op>(**args)`` against the homeserver inside; its result from JSON."""
    argv = ["python3", "-c", MATRIX, str(SYNAPSE_PORT), SHARED_SECRET, op, json.dumps(args)]
    return json.loads(systemd.run(argv, env={"PYTHONPATH": SRC}).stdout)


def set_env(systemd: Any, **values: str) -> None:
    body = "".join(f"{k}={v}\n" for k, v in values.items())
    sh(systemd, f"umask 077 && cat > {ENV_FILE}.new && mv {ENV_FILE}.new {ENV_FILE}", input=body)


def telegram_texts(systemd: Any) -> list[str]:
    return [m["plain_text"] for m in control(systemd, "bot_messages", chat_id=USER)["messages"]]


class Duo:
    """The booted system with agent ``duo`` up, and who talks to it on Matrix."""

    def __init__(self, systemd: Any, bot: dict[str, Any], alice: dict[str, Any]) -> None:
        self.systemd = systemd
        self.bot = bot
        self.alice = alice
        self.room = ""

    def matrix_bodies(self) -> list[str]:
        """The bodies of the bot's messages in the direct room, oldest first."""
        events = matrix(
            self.systemd, "messages", token=self.alice["access_token"], room=self.room, limit=100
        )
        return [
            str(event["content"].get("body", ""))
            for event in reversed(events)
            if event["type"] == "m.room.message" and event["sender"] == self.bot["user_id"]
        ]

    def alice_sends(self, text: str) -> None:
        matrix(
            self.systemd, "send_text", token=self.alice["access_token"], room=self.room, body=text
        )


def _synapse_up(systemd: Any) -> bool:
    try:
        matrix(systemd, "request", method="GET", path="/_matrix/client/versions")
    except Exception:
        return False
    return True


def _stub_up(systemd: Any) -> bool:
    try:
        control(systemd, "calls")
    except Exception:
        return False
    return True


def _synapse_python_inside(systemd: Any, host_python: Path) -> str:
    """Synapse's venv python as seen inside: the host's path where the overlay shows it,
    else a copy of the venv (run through its bin/python, a moved venv works)."""
    if systemd.run(["test", "-x", str(host_python)], check=False).returncode == 0:
        return str(host_python)
    systemd.copy_in(host_python.parent.parent, SYNAPSE_VENV_INSIDE)
    return f"{SYNAPSE_VENV_INSIDE}/bin/python"


def is_active(systemd: Any, unit: str) -> bool:
    state = sh(systemd, f"systemctl --user is-active {unit}", check=False).stdout.strip()
    return state == "active"


def matrix_synced(systemd: Any) -> bool:
    """The Matrix transport finished its first /sync (it answers nothing from before)."""
    out = sh(systemd, f"cat {CONFIG}/{AGENT}/matrix/sync.json 2>/dev/null", check=False).stdout
    try:
        return bool(json.loads(out).get("since"))
    except ValueError:
        return False


@pytest.fixture(scope="module")
def duo(systemd: Any, synapse_python: Path) -> Iterator[Duo]:  # noqa: F811
    # Synapse first: it starts while install.sh runs.
    python = _synapse_python_inside(systemd, synapse_python)
    sh(
        systemd,
        f"systemd-run --user --unit={SYNAPSE_UNIT} --setenv=PYTHONPATH={SRC}"
        f" --working-directory={SRC} /usr/bin/python3 -m tests.stubs.synapse"
        f" --python {python} --workdir {SYNAPSE_DIR} --port {SYNAPSE_PORT}"
        f" --shared-secret {SHARED_SECRET}",
    )
    sh(systemd, f"{SRC}/install.sh")
    sh(
        systemd,
        f"ductor init {AGENT} --non-interactive --user-id {USER} --timezone UTC"
        " --telegram-token-file -",
        input=TOKEN + "\n",
    )
    systemd.wait_until(lambda: _synapse_up(systemd), timeout=90, what="Synapse inside")
    bot = matrix(systemd, "register", localpart="duo-bot", password=secrets.token_urlsafe(16))
    alice = matrix(systemd, "register", localpart="alice", password=secrets.token_urlsafe(16))
    pairs = [
        ("transports", ["telegram", "matrix"]),
        ("telegram.api_base_url", f"http://127.0.0.1:{STUB_PORT}"),
        ("streaming.edit_interval_seconds", 0.5),
        ("matrix.homeserver", f"http://127.0.0.1:{SYNAPSE_PORT}"),
        ("matrix.user_id", bot["user_id"]),
        ("matrix.allowed_users", [alice["user_id"]]),
    ]
    sh(systemd, f"{VENV_PYTHON} -c {shlex.quote(SET_VALUES)}", input=json.dumps(pairs))
    credentials = f"{CONFIG}/credentials/{AGENT}"
    sh(
        systemd,
        f"install -d -m 0700 {credentials} && umask 077 && cat > {credentials}/matrix-password",
        input=bot["password"] + "\n",
    )
    sh(systemd, f"ln -sf {SRC}/tests/fakecli/claude ~/.local/bin/claude")
    set_env(systemd, FAKECLI_DELAY_MS="100")
    sh(
        systemd,
        f"systemd-run --user --unit={STUB_UNIT} --setenv=PYTHONPATH={SRC}"
        f" --working-directory={SRC} /usr/bin/python3 -m tests.stubs.telegram_api"
        f" --port {STUB_PORT} --token {TOKEN} --control",
    )
    systemd.wait_until(lambda: _stub_up(systemd), timeout=20, what="the fake Bot API")
    sh(systemd, f"ductor agent sync {AGENT} && systemctl --user start ductor@{AGENT}.target")
    state = Duo(systemd, bot, alice)
    try:
        for unit in TRANSPORT_UNITS:
            systemd.wait_until(
                lambda unit=unit: is_active(systemd, unit), timeout=30, what=f"{unit} is active"
            )
        systemd.wait_until(
            lambda: matrix_synced(systemd), timeout=30, what="the Matrix transport's first sync"
        )
        state.room = matrix(
            systemd,
            "create_room",
            token=alice["access_token"],
            invite=[bot["user_id"]],
            is_direct=True,
        )
        systemd.wait_until(
            lambda: (
                bot["user_id"]
                in matrix(systemd, "joined_members", token=alice["access_token"], room=state.room)
            ),
            timeout=30,
            what="the bot joins alice's direct room",
        )
        yield state
    finally:
        units = f"ductor@{AGENT}.target ductor-agent@{AGENT}.service ductor-agent@{AGENT}.socket"
        sh(systemd, f"systemctl --user stop {units} {' '.join(TRANSPORT_UNITS)}", check=False)
        sh(systemd, f"systemctl --user stop {STUB_UNIT} {SYNAPSE_UNIT}", check=False)
        sh(systemd, f"ductor agent remove {AGENT} --purge", check=False)
        sh(systemd, "rm -f ~/.local/bin/claude", check=False)


def test_one_agent_answers_on_telegram_and_on_matrix_at_once(duo: Duo) -> None:
    systemd = duo.systemd
    for unit in TRANSPORT_UNITS:
        assert is_active(systemd, unit), unit
    control(systemd, "user_sends", chat_id=USER, text="hello", user_id=USER)
    duo.alice_sends("hello")
    systemd.wait_until(
        lambda: any(t.endswith("ECHO: hello") for t in telegram_texts(systemd)),
        timeout=40,
        what="the answer on Telegram",
    )
    systemd.wait_until(
        lambda: any("ECHO: hello" in body for body in duo.matrix_bodies()),
        timeout=40,
        what="the answer in the Matrix room",
    )
    # One agent holds both conversations, each under its own transport's session key.
    sessions = json.loads(sh(systemd, f"cat {CONFIG}/{AGENT}/sessions.json").stdout)
    keys = json.dumps(sessions)
    assert f"tg:{USER}" in keys
    assert f"mx:{duo.room}" in keys
    assert is_active(systemd, f"ductor-agent@{AGENT}.service")
    time.sleep(2)
    assert sum(t.endswith("ECHO: hello") for t in telegram_texts(systemd)) == 1
    assert sum("ECHO: hello" in body for body in duo.matrix_bodies()) == 1


def test_a_job_the_agent_creates_from_matrix_reports_back_to_that_room(duo: Duo) -> None:
    """The agent's tool script, run with the Matrix identity the agent gives its CLI."""
    systemd = duo.systemd
    set_env(systemd, FAKECLI_DELAY_MS="50")
    tool = f"{CONFIG}/{AGENT}/workspace/tools/cron_tools/cron_add.py"
    created = sh(
        systemd,
        f"DUCTOR_AGENT_NAME={AGENT} DUCTOR_CHAT_ID={shlex.quote(duo.room)} DUCTOR_TRANSPORT=mx"
        f" python3 {tool} frommatrix --schedule '*/30 * * * *' --prompt 'check the weather'"
        " --title 'From Matrix'",
    )
    job = json.loads(created.stdout)
    assert job["chat_id"] == duo.room
    telegram_before = telegram_texts(systemd)
    sh(systemd, f"systemctl --user start ductor-cron@{AGENT}:frommatrix.service")
    systemd.wait_until(
        lambda: any("From Matrix" in body for body in duo.matrix_bodies()),
        timeout=60,
        what="the cron result in the Matrix room",
    )
    time.sleep(2)
    assert sum("From Matrix" in body for body in duo.matrix_bodies()) == 1
    telegram_after = telegram_texts(systemd)
    assert not any("From Matrix" in t for t in telegram_after)
    assert telegram_after == telegram_before
