"""ductor-agent@.socket/.service under a real systemd: socket activation, a kill -9 in
the middle of a turn, a restart with queued sessions, a broken config.

The agent runs the fake ``claude`` (tests/fakecli) from ~/.local/bin, configured through
the agent's ``.env`` like any secret. Uses agent ``sd`` and removes it at the end, so
test_install.py finds the system as it would without this module.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from tests.systemd.test_install import CONFIG, SRC, TOKEN, sh

pytestmark = pytest.mark.systemd

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
    # STATUS= follows the turn's end within a fraction of a second (it is rate-limited)
    sd.wait_until(
        lambda: (
            "1 session, 0 running"
            in show(sd, "ductor-agent@sd.service", "StatusText")["StatusText"]
        ),
        timeout=5,
        what="STATUS= says the finished turn's session",
    )
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


def test_turns_interrupted_by_a_reboot_are_finished_without_a_new_message(agent_sd: Any) -> None:
    sd = agent_sd
    set_env(sd, FAKECLI_DELAY_MS="1500", FAKECLI_RECORD=f"{home(sd)}/record.jsonl")
    sh(sd, "rm -f ~/record.jsonl; rm -rf " + f"{OUTBOX}/cli")
    sh(sd, "systemctl --user start ductor@sd.target")
    sh(sd, "(ductor chat sd -m 'finish this' >/dev/null 2>&1 &)")
    sd.wait_until(["test", "-s", f"{home(sd)}/record.jsonl"], timeout=20, what="the CLI started")
    # Shutdown: every unit of the agent stops in the middle of the turn.
    sh(sd, "systemctl --user stop ductor@sd.target")
    sd.wait_until(
        lambda: show(sd, "ductor-agent@sd.service", "ActiveState")["ActiveState"] == "inactive",
        timeout=40,
        what="the agent stopped",
    )
    assert sh(sd, f"ls {STATE}/turns").stdout.split(), "the interrupted turn is on disk"
    # The next boot has another boot id; nobody writes to the agent after it.
    startup = f"{STATE}/startup.json"
    sh(sd, f'sed -i \'s/"boot_id": "[^"]*"/"boot_id": "the-boot-before"/\' {startup}')
    sh(sd, "systemctl --user start ductor@sd.target")
    sd.wait_until(
        lambda: any(e["kind"] == "reply" for e in envelopes(sd, "cli")),
        timeout=40,
        what="the answer of the interrupted turn in the outbox",
    )
    found = envelopes(sd, "cli")
    replies = [e for e in found if e["kind"] == "reply"]
    assert len(replies) == 1, found
    assert any("Reboot detected" in e["payload"]["text"] for e in found if e["kind"] == "notice")
    sd.wait_until(lambda: not sh(sd, f"ls {STATE}/turns").stdout.split(), timeout=10)


def test_saving_a_new_model_in_the_config_reaches_the_running_agent(agent_sd: Any) -> None:
    sd = agent_sd
    set_env(sd, FAKECLI_RECORD=f"{home(sd)}/record.jsonl")
    config = f"{CONFIG}/agents/sd.toml"
    before = sh(sd, "ductor chat sd -m /status").stdout
    assert "haiku" not in before
    assert show(sd, "ductor-agent@sd.service", "ActiveState")["ActiveState"] == "active"
    sh(sd, f"cp {config} {config}.good")
    try:
        sh(sd, f"sed -i 's/^model = .*/model = \"haiku\"/' {config}")
        sd.wait_until(
            lambda: "haiku" in sh(sd, "ductor chat sd -m /status", check=False).stdout,
            timeout=20,
            what="/status shows the model saved in the config",
        )
    finally:
        sh(sd, f"mv {config}.good {config}")
    sd.wait_until(
        lambda: "haiku" not in sh(sd, "ductor chat sd -m /status", check=False).stdout,
        timeout=20,
        what="/status shows the model restored in the config",
    )


def test_the_config_directory_stays_private_whatever_unit_starts(agent_sd: Any) -> None:
    sd = agent_sd
    sh(sd, "id other >/dev/null 2>&1 || useradd --no-create-home other")
    home_mode = sh(sd, "stat -c %a ~").stdout.strip()
    sh(sd, "chmod 0755 ~")  # a home others may enter, as many machines have
    cron_unit = "ductor-cron@sd:nosuch.service"
    try:
        for start in (
            "systemctl --user restart ductor@sd.target",
            "ductor chat sd -m hello",
            "systemctl --user start ductor-heartbeat@sd.service",
            # a run of a job that does not exist fails, and its failure report runs too
            f"systemctl --user start {cron_unit}",
            "systemctl --user start ductor-reload@sd.service",
            "systemctl --user restart ductor-telegram@sd.service",
        ):
            sh(sd, start, check=False)
            mode = sh(sd, f"stat -c %a {CONFIG}").stdout.strip()
            assert mode == "700", f"after `{start}`: {CONFIG} is {mode}"
            refused = sh(sd, f"runuser -u other -- cat {CONFIG}/ductor.toml", check=False)
            assert refused.returncode != 0, f"after `{start}` another user reads the config"
        time.sleep(3)  # the failure report of the cron run, started by OnFailure=
        assert sh(sd, f"stat -c %a {CONFIG}").stdout.strip() == "700"
        failed_reports = sh(sd, "systemctl --user list-units --all 'ductor-cron-failed@*'")
        assert "ductor-cron-failed@" in failed_reports.stdout
    finally:
        sh(sd, f"chmod {home_mode} ~", check=False)
        sh(sd, f"systemctl --user reset-failed {cron_unit}", check=False)
