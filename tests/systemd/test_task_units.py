"""ductor-task@.service under a real systemd: a background task is its own unit, keeps
running through a restart of the agent, and its result reaches the chat once; a task
unit killed with SIGKILL is reported once.

The agent (``tk``) runs the fake ``claude`` (tests/fakecli), slowed down through its
``.env``; only its socket is started (no transport), so what the chat would get waits in
its Telegram outbox. Removes the agent at the end.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from tests.systemd.test_agent_units import show
from tests.systemd.test_install import CONFIG, SRC, TOKEN, sh

pytestmark = pytest.mark.systemd

NAME = "tk"
STATE = f"{CONFIG}/{NAME}"  # systemd 252: StateDirectory= of user units is ~/.config
TOOLS = f"{STATE}/workspace/tools/task_tools"
OUTBOX = f"{STATE}/spool/outbox/tg"
CHAT_ENV = f"DUCTOR_AGENT_NAME={NAME} DUCTOR_TRANSPORT=tg DUCTOR_CHAT_ID=7"

ONE_PER_LINE = (
    "import glob, json, sys\n"
    "for f in sorted(glob.glob(sys.argv[1] + '/new/*') + glob.glob(sys.argv[1] + '/cur/*')):\n"
    "    print(json.dumps(json.load(open(f))))\n"
)


def outbox_texts(systemd: Any) -> list[str]:
    script = ONE_PER_LINE.replace("'", "'\\''")
    out = sh(systemd, f"python3 -c '{script}' {OUTBOX}").stdout
    return [json.loads(line)["payload"]["text"] for line in out.splitlines() if line.strip()]


def create_task(systemd: Any, name: str) -> str:
    out = sh(systemd, f"{CHAT_ENV} python3 {TOOLS}/create_task.py --name {name} 'Work slowly.'")
    answer = json.loads(out.stdout)
    assert answer["ok"], answer
    return str(answer["task"]["id"])


def task_unit(task_id: str) -> str:
    return f"ductor-task@{NAME}:{task_id}.service"


@pytest.fixture(scope="module")
def agent_tk(systemd: Any) -> Any:
    sh(systemd, f"{SRC}/install.sh")
    sh(
        systemd,
        f"ductor init {NAME} --non-interactive --user-id 7 --timezone UTC --telegram-token-file -",
        input=TOKEN + "\n",
    )
    sh(systemd, f"ln -sf {SRC}/tests/fakecli/claude ~/.local/bin/claude")
    set_env_tk(systemd, FAKECLI_DELAY_MS="800")
    # The agent's [limits] apply to its tasks too.
    limits = '[limits]\nmemory_max = "300M"\ntasks_max = 77\ncpu_weight = 42\n'
    sh(systemd, f"printf '{limits}' >> {CONFIG}/agents/{NAME}.toml")
    sh(systemd, f"systemctl --user start ductor-agent@{NAME}.socket")
    sh(systemd, f"ductor chat {NAME} -m hello")  # the agent lays out its workspace
    yield systemd
    sh(
        systemd,
        f"systemctl --user stop 'ductor-task@{NAME}:*' ductor-agent@{NAME}.socket",
        check=False,
    )
    sh(systemd, f"systemctl --user stop ductor-agent@{NAME}.service", check=False)
    sh(systemd, f"ductor agent remove {NAME} --purge", check=False)
    sh(systemd, "rm -f ~/.local/bin/claude", check=False)


def set_env_tk(systemd: Any, **values: str) -> None:
    body = "".join(f"{k}={v}\n" for k, v in values.items())
    env_file = f"{CONFIG}/credentials/{NAME}/.env"
    sh(
        systemd,
        f"install -d -m 0700 {CONFIG}/credentials/{NAME} && umask 077"
        f" && cat > {env_file}.new && mv {env_file}.new {env_file}",
        input=body,
    )


def test_a_task_unit_outlives_an_agent_restart_and_its_result_is_answered_once(
    agent_tk: Any,
) -> None:
    sd = agent_tk
    sh(sd, f"rm -rf {OUTBOX}")
    task_id = create_task(sd, "slowpoke")
    unit = task_unit(task_id)
    sd.wait_until(
        lambda: show(sd, unit, "ActiveState")["ActiveState"] == "activating",
        timeout=20,
        what="the task's unit runs",
    )
    listed = sh(sd, "systemctl --user list-units --no-legend 'ductor-task@*'").stdout
    assert unit in listed
    # Its own cgroup, with memory accounting (the number itself needs the memory
    # controller, which this test system's user manager is not delegated).
    props = show(sd, unit, "ControlGroup", "MemoryAccounting")
    assert props["ControlGroup"].endswith(f"/{unit}"), props
    assert props["MemoryAccounting"] == "yes"
    limits = show(sd, unit, "MemoryMax", "TasksMax", "CPUWeight")
    assert limits == {"MemoryMax": str(300 * 1024 * 1024), "TasksMax": "77", "CPUWeight": "42"}
    pid = show(sd, unit, "MainPID")["MainPID"]
    sh(sd, f"systemctl --user restart ductor-agent@{NAME}.service")
    assert show(sd, unit, "MainPID")["MainPID"] == pid  # the restart did not touch it
    sd.wait_until(
        lambda: len(outbox_texts(sd)) >= 2,
        timeout=90,
        what="the notice and the answer to the injected result",
    )
    time.sleep(2)
    texts = outbox_texts(sd)
    assert len([t for t in texts if t.startswith("**Task `slowpoke` completed**")]) == 1, texts
    assert len(texts) == 2, texts
    assert show(sd, unit, "Result")["Result"] == "success"


def test_a_task_unit_killed_with_sigkill_is_reported_failed_once(agent_tk: Any) -> None:
    sd = agent_tk
    sh(sd, f"rm -rf {OUTBOX}")
    set_env_tk(sd, FAKECLI_DELAY_MS="3000")
    task_id = create_task(sd, "victim")
    unit = task_unit(task_id)
    sd.wait_until(
        lambda: show(sd, unit, "ActiveState")["ActiveState"] == "activating",
        timeout=20,
        what="the task's unit runs",
    )
    time.sleep(1)
    sh(sd, f"systemctl --user kill -s KILL {unit}")
    sd.wait_until(
        lambda: len(outbox_texts(sd)) >= 2,
        timeout=90,
        what="the failure notice and the agent's answer to it",
    )
    time.sleep(2)
    texts = outbox_texts(sd)
    failed = [t for t in texts if t.startswith("**Task `victim` failed**")]
    assert len(failed) == 1, texts
    assert len(texts) == 2, texts
    assert "ended without a result" in failed[0]
    record = json.loads(sh(sd, f"cat {STATE}/tasks/{task_id}.json").stdout)
    assert record["status"] == "failed"
    set_env_tk(sd, FAKECLI_DELAY_MS="800")


def test_a_result_that_arrives_while_the_agent_is_stopped_wakes_it(agent_tk: Any) -> None:
    sd = agent_tk
    sh(sd, f"rm -rf {OUTBOX}")
    sh(sd, f"systemctl --user enable --now ductor-resume@{NAME}.path")
    set_env_tk(sd, FAKECLI_DELAY_MS="2000")
    task_id = create_task(sd, "nightowl")
    unit = task_unit(task_id)
    sd.wait_until(
        lambda: show(sd, unit, "ActiveState")["ActiveState"] == "activating",
        timeout=20,
        what="the task's unit runs",
    )
    sh(sd, f"systemctl --user stop ductor-agent@{NAME}.service")
    sd.wait_until(
        lambda: show(sd, unit, "ActiveState")["ActiveState"] == "inactive",
        timeout=60,
        what="the task ended",
    )
    sd.wait_until(
        lambda: any("`nightowl` completed" in t for t in outbox_texts(sd)),
        timeout=60,
        what="the agent woke up and posted the notice",
    )
    assert show(sd, f"ductor-agent@{NAME}.service", "ActiveState")["ActiveState"] == "active"
    sd.wait_until(lambda: len(outbox_texts(sd)) >= 2, timeout=60, what="the answer")
    time.sleep(2)
    assert len(outbox_texts(sd)) == 2, outbox_texts(sd)
    sh(sd, f"systemctl --user disable --now ductor-resume@{NAME}.path", check=False)
    set_env_tk(sd, FAKECLI_DELAY_MS="800")
