"""ductor-agent@.socket/.service under a real systemd: socket activation, a kill -9 in
the middle of a turn, a restart with queued sessions, a broken config.

The agent runs the fake ``claude`` (tests/fakecli) from ~/.local/bin, configured through
the agent's ``.env`` like any secret. Uses agent ``sd`` and removes it at the end, so
test_install.py finds the system as it would without this module.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from tests.systemd.test_install import CONFIG, SRC, TOKEN, sh

pytestmark = pytest.mark.systemd

SHARED = Path(__file__).resolve().parents[3] / "shared"
STATE = f"{CONFIG}/sd"  # systemd 252: StateDirectory= of user units is ~/.config
ENV_FILE = f"{CONFIG}/credentials/sd/.env"
OUTBOX = f"{STATE}/spool/outbox"


def set_env(systemd: Any, **values: str) -> None:
    body = "".join(f"{k}={v}\n" for k, v in values.items())
    sh(
        systemd,
        f"install -d -m 0700 {CONFIG}/credentials/sd && umask 077 && cat > {ENV_FILE}.new"
        f" && mv {ENV_FILE}.new {ENV_FILE}",
        input=body,
    )


def show(systemd: Any, unit: str, *props: str) -> dict[str, str]:
    out = sh(systemd, f"systemctl --user show {unit} " + " ".join(f"-p {p}" for p in props))
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


ONE_PER_LINE = (
    "import glob, json, sys\n"
    "for f in sorted(glob.glob(sys.argv[1] + '/new/*') + glob.glob(sys.argv[1] + '/cur/*')):\n"
    "    print(json.dumps(json.load(open(f))))\n"
)


def envelopes(systemd: Any, transport: str) -> list[dict[str, Any]]:
    """The envelopes waiting in (or being delivered from) the agent's outbox."""
    script = ONE_PER_LINE.replace("'", "'\\''")
    out = sh(systemd, f"python3 -c '{script}' {OUTBOX}/{transport}").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def agent_sd(systemd: Any) -> Any:
    systemd.copy_in(SHARED / "fixtures", "/opt/shared/fixtures")
    sh(systemd, f"{SRC}/install.sh")
    sh(
        systemd,
        "ductor init sd --non-interactive --user-id 7 --timezone UTC --telegram-token-file -",
        input=TOKEN + "\n",
    )
    sh(systemd, f"ln -sf {SRC}/tests/fakecli/claude ~/.local/bin/claude")
    set_env(systemd, FAKECLI_RECORD=f"{home(systemd)}/record.jsonl")
    sh(systemd, "systemctl --user start ductor@sd.target")
    yield systemd
    sh(systemd, "systemctl --user stop ductor@sd.target ductor-agent@sd.service", check=False)
    sh(systemd, "ductor agent remove sd --purge", check=False)
    sh(systemd, "rm -f ~/.local/bin/claude ~/record.jsonl", check=False)


def test_the_first_message_starts_the_agent_through_its_socket(agent_sd: Any) -> None:
    sd = agent_sd
    assert show(sd, "ductor-agent@sd.socket", "ActiveState")["ActiveState"] == "active"
    assert show(sd, "ductor-agent@sd.service", "ActiveState")["ActiveState"] == "inactive"
    answer = sh(sd, "ductor chat sd -m hello")
    assert "ECHO: hello" in answer.stdout
    props = show(sd, "ductor-agent@sd.service", "ActiveState", "StatusText", "Type")
    assert props["ActiveState"] == "active"
    assert "1 session" in props["StatusText"]
    socket_mode = sh(sd, "stat -c %a $XDG_RUNTIME_DIR/ductor/sd/agent.sock").stdout.strip()
    assert socket_mode == "600"


def test_kill_9_of_the_agent_mid_turn_is_recovered_and_answered_once(agent_sd: Any) -> None:
    sd = agent_sd
    set_env(sd, FAKECLI_DELAY_MS="1500", FAKECLI_RECORD=f"{home(sd)}/record.jsonl")
    sh(sd, "rm -f ~/record.jsonl; rm -rf " + f"{OUTBOX}/cli")
    sh(sd, "(ductor chat sd -m 'do the thing' >/dev/null 2>&1 &)")
    sd.wait_until(["test", "-s", f"{home(sd)}/record.jsonl"], timeout=20, what="the CLI started")
    before = show(sd, "ductor-agent@sd.service", "NRestarts")["NRestarts"]
    sh(sd, "systemctl --user kill -s KILL ductor-agent@sd.service")
    sd.wait_until(
        lambda: len([e for e in envelopes(sd, "cli") if e["kind"] == "reply"]) >= 1,
        timeout=40,
        what="the recovered answer in the outbox",
    )
    time.sleep(1)
    found = envelopes(sd, "cli")
    replies = [e for e in found if e["kind"] == "reply"]
    notices = [e for e in found if e["kind"] == "notice"]
    assert len(replies) == 1, found
    assert "ECHO: hello" in replies[0]["payload"]["text"]
    assert any("Service restarted" in n["payload"]["text"] for n in notices)
    assert int(show(sd, "ductor-agent@sd.service", "NRestarts")["NRestarts"]) > int(before)
    runs = sh(sd, "cat ~/record.jsonl").stdout.splitlines()
    assert len(runs) == 2  # the interrupted run and its one recovery
    journal = sd.journal(unit="ductor-agent@sd.service", user=True)
    assert "interrupted turn(s) resumed" in journal


def test_a_restart_with_three_busy_sessions_loses_nothing(agent_sd: Any) -> None:
    sd = agent_sd
    set_env(sd, FAKECLI_DELAY_MS="1000", FAKECLI_RECORD=f"{home(sd)}/record.jsonl")
    sh(sd, "rm -f ~/record.jsonl; rm -rf " + f"{OUTBOX}/tg")
    for chat in (1, 2, 3):
        for n in (1, 2):
            sh(sd, f"(ductor chat sd --session tg:{chat} -m 'c{chat}m{n}' >/dev/null 2>&1 &)")
    sd.wait_until(
        lambda: len(sh(sd, "cat ~/record.jsonl 2>/dev/null; true").stdout.splitlines()) >= 3,
        timeout=20,
        what="three sessions running",
    )
    sh(sd, "systemctl --user restart ductor-agent@sd.service")
    sd.wait_until(
        lambda: len([e for e in envelopes(sd, "tg") if e["kind"] == "reply"]) >= 6,
        timeout=60,
        what="six answers in the outbox",
    )
    time.sleep(1)
    replies = [e for e in envelopes(sd, "tg") if e["kind"] == "reply"]
    assert len(replies) == 6
    assert sorted(r["routing"]["chat_id"] for r in replies) == [1, 1, 2, 2, 3, 3]
    assert len({r["payload"]["metadata"]["turn"] for r in replies}) == 6
    leftover = sh(sd, f"ls {STATE}/turns").stdout.split()
    assert leftover == []


def test_a_broken_config_fails_the_unit_once_with_a_clear_journal_line(agent_sd: Any) -> None:
    sd = agent_sd
    config = f"{CONFIG}/agents/sd.toml"
    sh(
        sd,
        f"cp {config} {config}.good"
        f" && printf '[limits]\\nmax_parallel_sessions = \"many\"\\n' >> {config}",
    )
    try:
        sh(sd, "systemctl --user restart ductor-agent@sd.service", check=False)
        sd.wait_until(
            lambda: show(sd, "ductor-agent@sd.service", "ActiveState")["ActiveState"] == "failed",
            timeout=20,
            what="the unit failed",
        )
        props = show(sd, "ductor-agent@sd.service", "ExecMainStatus", "NRestarts", "Result")
        assert props["ExecMainStatus"] == "78"
        time.sleep(3)  # RestartSec=2: a restart would have happened by now
        again = show(sd, "ductor-agent@sd.service", "NRestarts", "ActiveState")
        assert again == {"NRestarts": props["NRestarts"], "ActiveState": "failed"}
        sh(sd, "journalctl --sync", check=False)
        journal = sd.journal(unit="ductor-agent@sd.service", user=True)
        assert "sd.toml" in journal and "limits.max_parallel_sessions" in journal
        assert "Traceback" not in journal
    finally:
        sh(sd, f"mv {config}.good {config}")
        sh(sd, "systemctl --user reset-failed ductor-agent@sd.service", check=False)
        sh(sd, "systemctl --user start ductor-agent@sd.socket", check=False)


def home(systemd: Any) -> str:
    return str(sh(systemd, "echo $HOME").stdout.strip())


def test_an_idle_agent_exits_and_the_next_message_starts_it_again(agent_sd: Any) -> None:
    sd = agent_sd
    dropin = "~/.config/systemd/user/ductor-agent@sd.service.d/30-test-idle.conf"
    sh(
        sd,
        f"mkdir -p $(dirname {dropin})"
        f" && printf '[Service]\\nEnvironment=DUCTOR_AGENT_IDLE_EXIT=2\\n' > {dropin}",
    )
    try:
        sh(sd, "systemctl --user daemon-reload && systemctl --user restart ductor-agent@sd.service")
        set_env(sd, FAKECLI_RECORD=f"{home(sd)}/record.jsonl")
        assert "ECHO: hello" in sh(sd, "ductor chat sd -m hello").stdout
        sd.wait_until(
            lambda: show(sd, "ductor-agent@sd.service", "ActiveState")["ActiveState"] == "inactive",
            timeout=30,
            what="the idle agent exited",
        )
        assert show(sd, "ductor-agent@sd.socket", "ActiveState")["ActiveState"] == "active"
        assert "ECHO: hello" in sh(sd, "ductor chat sd -m again").stdout
        journal = sd.journal(unit="ductor-agent@sd.service", user=True)
        assert "idle for 2 s: exiting" in journal
    finally:
        sh(sd, f"rm -f {dropin} && systemctl --user daemon-reload", check=False)
