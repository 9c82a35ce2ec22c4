"""System mode (`install.sh --system`) under a real systemd: the agent's units run as
the `ductor` account, root runs `ductor --system`. What root writes into the agent's
state must stay usable by the account, and the secrets of the agent's `.env` must reach
the CLI of a turn and of a cron run (the manager hands them over: LoadCredential=).

The agent `ops` runs the fake `claude` (tests/fakecli) from /usr/local/bin. The module
purges the system installation at the end, as test_install.py expects to find it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from tests.systemd.test_install import SRC, TOKEN, sh

pytestmark = pytest.mark.systemd

STATE = "/var/lib/ductor/ops"
RECORD = f"{STATE}/record.jsonl"
ENV_FILE = "/etc/ductor/credentials/ops/.env"
KEY = "OPS_TEST_API_KEY"


def root(systemd: Any, script: str, **kwargs: Any) -> Any:
    return sh(systemd, script, user=False, **kwargs)


def runs(systemd: Any) -> list[dict[str, Any]]:
    out = root(systemd, f"cat {RECORD} 2>/dev/null; true").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def ops(systemd: Any) -> Any:
    root(systemd, f"{SRC}/install.sh --system")
    root(
        systemd,
        "ductor --system init ops --non-interactive --user-id 7 --timezone UTC"
        " --telegram-token-file -",
        input=TOKEN + "\n",
    )
    root(systemd, f"ln -sf {SRC}/tests/fakecli/claude /usr/local/bin/claude")
    # The documented place of the CLIs' secrets, written by root as the docs say.
    root(
        systemd,
        f"umask 077 && printf '{KEY}=not-a-real-key\\nFAKECLI_RECORD={RECORD}\\n' > {ENV_FILE}",
    )
    root(systemd, "systemctl start ductor@ops.target")
    yield systemd
    root(systemd, "systemctl stop ductor@ops.target ductor-agent@ops.service", check=False)
    root(systemd, "rm -f /usr/local/bin/claude", check=False)
    root(systemd, f"{SRC}/install.sh --system --purge", check=False)


def test_a_key_in_the_env_reaches_the_cli_of_a_turn(ops: Any) -> None:
    answer = root(ops, "ductor --system chat ops -m hello")
    assert "ECHO: hello" in answer.stdout, answer.stdout + answer.stderr
    [run] = runs(ops)
    assert KEY in run["env_names"]


def test_a_cron_job_root_adds_runs_as_the_account_with_the_env(ops: Any) -> None:
    root(ops, "rm -f " + RECORD)
    root(
        ops,
        "ductor --system cron add ops ping --schedule '0 0 1 1 *' --prompt 'ping please'"
        " --dependency net",
    )
    owners = root(
        ops,
        f"stat -c '%U %n' {STATE}/cron_jobs.toml {STATE}/.cron_jobs.toml.lock"
        f" {STATE}/workspace/cron_tasks {STATE}/workspace/cron_tasks/ping"
        f" {STATE}/workspace/cron_tasks/ping/TASK.md",
    ).stdout.splitlines()
    assert all(line.startswith("ductor ") for line in owners), owners
    root(ops, "ductor --system cron run ops ping")
    unit = "ductor-cron@ops:ping.service"
    ops.wait_until(
        lambda: (
            root(ops, f"systemctl show -p ActiveState --value {unit}").stdout.strip()
            in ("inactive", "failed")
            and root(ops, f"test -s {STATE}/cron_runs/ping.json", check=False).returncode == 0
        ),
        timeout=60,
        what="the cron run finished",
    )
    result = root(ops, f"systemctl show -p Result,ExecMainStatus {unit}").stdout
    assert "Result=success" in result, result
    status = json.loads(root(ops, f"cat {STATE}/cron_runs/ping.json").stdout)
    assert status["last_status"] == "ok", status
    debug = root(
        ops,
        f"systemctl cat {unit}; systemctl show -p LoadCredential,SetCredential {unit};"
        f" journalctl -u {unit} --no-pager -o cat | tail -30",
        check=False,
    ).stdout
    found = runs(ops)
    assert len(found) == 1, debug
    [run] = found
    assert KEY in run["env_names"]
    assert "ping please" in json.dumps(run)


def test_a_run_that_cannot_read_its_job_file_is_still_reported_to_the_main_user(ops: Any) -> None:
    jobs = f"{STATE}/cron_jobs.toml"
    root(ops, f"chown root:root {jobs} && chmod 0600 {jobs}")  # what old releases left
    try:
        root(ops, "ductor --system cron run ops ping")
        outbox = f"{STATE}/spool/outbox/tg"
        ops.wait_until(
            lambda: "cron-failed-ping" in root(ops, f"ls -R {outbox} 2>/dev/null; true").stdout,
            timeout=60,
            what="the failure report in the outbox",
        )
        time.sleep(0.5)
        found = root(ops, f"cat {outbox}/*/cron-failed-ping*").stdout
        report = json.loads(found)
        assert report["routing"]["chat_id"] == 7  # the job broadcasts; this is the fallback
        assert "cron_jobs.toml" in report["payload"]["text"]
        assert "status 78" in report["payload"]["text"]
    finally:
        root(ops, f"chown ductor:ductor {jobs}")


def test_doctor_checks_what_the_units_can_read_not_what_root_can(ops: Any) -> None:
    result = root(ops, "ductor --system doctor ops --json", check=False)
    checks = [c for c in json.loads(result.stdout)["checks"] if c["name"] == "unit credentials ops"]
    assert checks and all(c["level"] == "ok" for c in checks), checks
    agent = "ductor-agent@ops.service"
    assert any(agent in c["detail"] and ".env" in c["detail"] for c in checks)
    # Take the credential away from the agent's unit: doctor must see it.
    dropin = f"/etc/systemd/system/{agent}.d/99-test.conf"
    root(ops, f"mkdir -p $(dirname {dropin}) && printf '[Service]\\nLoadCredential=\\n' > {dropin}")
    try:
        root(ops, "systemctl daemon-reload")
        result = root(ops, "ductor --system doctor ops", check=False)
        assert result.returncode == 1
        assert f"{agent} cannot read {ENV_FILE}" in result.stdout
        assert "Everything looks fine" not in result.stdout
    finally:
        root(ops, f"rm -f {dropin} && systemctl daemon-reload")


def test_an_upgrade_gives_what_old_releases_left_as_root_back_to_the_account(ops: Any) -> None:
    leftover = f"{STATE}/workspace/cron_tasks/ping/MEMORY.md"
    root(ops, f"chown root:root {leftover} && chmod 0600 {leftover}")
    root(ops, f"{SRC}/install.sh --system")
    assert root(ops, f"stat -c %U {leftover}").stdout.strip() == "ductor"


def test_a_background_task_runs_as_the_account_with_the_env(ops: Any) -> None:
    root(ops, "ductor --system chat ops -m hello")  # the agent lays out its workspace
    root(ops, "rm -f " + RECORD)
    created = root(
        ops,
        "cd /tmp && runuser -u ductor -- env DUCTOR_AGENT_NAME=ops DUCTOR_TRANSPORT=tg"
        " DUCTOR_CHAT_ID=7 DUCTOR_AGENT_SOCKET=/run/ductor/ops/agent.sock python3"
        f" {STATE}/workspace/tools/task_tools/create_task.py --name probe 'Check the disk.'",
    )
    task_id = json.loads(created.stdout)["task"]["id"]

    def status() -> str:
        out = root(ops, f"cat {STATE}/tasks/{task_id}.json", check=False).stdout
        return str(json.loads(out)["status"]) if out.strip() else ""

    ops.wait_until(lambda: status() in ("done", "failed"), timeout=60, what="the task ended")
    unit = f"ductor-task@ops:{task_id}.service"
    debug = root(
        ops,
        f"systemctl cat {unit}; journalctl -u {unit} -u 'ductor-task-control@*' --no-pager"
        " -o cat | tail -30",
        check=False,
    ).stdout
    assert status() == "done", debug
    assert root(ops, f"systemctl show -p User --value {unit}").stdout.strip() == "ductor"
    [run] = [r for r in runs(ops) if r["env"].get("DUCTOR_TASK_ID") == task_id]
    assert KEY in run["env_names"], debug
