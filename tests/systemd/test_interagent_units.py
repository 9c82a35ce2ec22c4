"""Two agents under a real systemd: an async request to an agent that is off waits in
its inbox and is answered once after it starts; the sender's agent killed with SIGKILL
between request and result still gets the result once; ``/agents``, ``/status`` and
``ductor status`` show an agent that keeps crashing; ``ductor-shared-memory.path``
carries SHAREDMEMORY.md into both memories; a sync ask starts an agent through its
socket.

Both agents (``ia1`` asks, ``ia2`` answers) run the fake ``claude`` (tests/fakecli); only
their sockets (and the resume path) are started, no transport, so what a chat would get
waits in their Telegram outboxes. Removes both agents at the end.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from tests.systemd.test_agent_units import show
from tests.systemd.test_install import CONFIG, SRC, TOKEN, sh
from tests.systemd.test_task_units import ONE_PER_LINE

pytestmark = pytest.mark.systemd

SENDER, TARGET = "ia1", "ia2"
USERS = {SENDER: 7, TARGET: 8}


def outbox_texts(systemd: Any, name: str) -> list[str]:
    script = ONE_PER_LINE.replace("'", "'\\''")
    out = sh(systemd, f"python3 -c '{script}' {CONFIG}/{name}/spool/outbox/tg").stdout
    return [json.loads(line)["payload"]["text"] for line in out.splitlines() if line.strip()]


def set_env(systemd: Any, name: str, **values: str) -> None:
    body = "".join(f"{k}={v}\n" for k, v in values.items())
    env_file = f"{CONFIG}/credentials/{name}/.env"
    sh(
        systemd,
        f"install -d -m 0700 {CONFIG}/credentials/{name} && umask 077"
        f" && cat > {env_file}.new && mv {env_file}.new {env_file}",
        input=body,
    )


def ask_async(systemd: Any, message: str) -> dict[str, Any]:
    tools = f"{CONFIG}/{SENDER}/workspace/tools/agent_tools"
    env = f"DUCTOR_AGENT_NAME={SENDER} DUCTOR_TRANSPORT=tg DUCTOR_CHAT_ID={USERS[SENDER]}"
    out = sh(systemd, f"{env} python3 {tools}/ask_agent_async.py {TARGET} '{message}'")
    answer: dict[str, Any] = json.loads(out.stdout)
    assert answer["ok"], answer
    return answer


def start_agent(systemd: Any, name: str) -> None:
    sh(systemd, f"systemctl --user start ductor-agent@{name}.socket ductor-resume@{name}.path")


def stop_agent(systemd: Any, name: str) -> None:
    sh(
        systemd,
        f"systemctl --user stop ductor-resume@{name}.path ductor-agent@{name}.socket"
        f" ductor-agent@{name}.service",
        check=False,
    )


@pytest.fixture(scope="module")
def pair(systemd: Any) -> Any:
    sh(systemd, f"{SRC}/install.sh")
    for name, user in USERS.items():
        sh(
            systemd,
            f"ductor init {name} --non-interactive --user-id {user} --timezone UTC"
            " --telegram-token-file -",
            input=TOKEN + "\n",
        )
    sh(systemd, f"ln -sf {SRC}/tests/fakecli/claude ~/.local/bin/claude")
    for name in USERS:
        start_agent(systemd, name)
        sh(systemd, f"ductor chat {name} -m hello")  # the agent lays out its workspace
    yield systemd
    for name in USERS:
        stop_agent(systemd, name)
        sh(systemd, f"systemctl --user reset-failed ductor-agent@{name}.service", check=False)
        sh(systemd, f"ductor agent remove {name} --purge", check=False)
    sh(systemd, "systemctl --user stop ductor-shared-memory.path", check=False)
    sh(systemd, "rm -f ~/.local/bin/claude", check=False)


def clear_outboxes(systemd: Any) -> None:
    for name in USERS:
        sh(systemd, f"rm -rf {CONFIG}/{name}/spool/outbox/tg")


def test_a_sync_ask_starts_a_target_whose_daemon_is_off_through_its_socket(pair: Any) -> None:
    sd = pair
    sh(sd, f"systemctl --user stop ductor-agent@{TARGET}.service")
    assert show(sd, f"ductor-agent@{TARGET}.socket", "ActiveState")["ActiveState"] == "active"
    tools = f"{CONFIG}/{SENDER}/workspace/tools/agent_tools"
    env = f"DUCTOR_AGENT_NAME={SENDER} DUCTOR_TRANSPORT=tg DUCTOR_CHAT_ID={USERS[SENDER]}"
    out = sh(sd, f"{env} python3 {tools}/ask_agent.py {TARGET} 'Are you there?'")
    assert out.stdout.strip() and '"ok": false' not in out.stdout, out.stdout
    assert show(sd, f"ductor-agent@{TARGET}.service", "ActiveState")["ActiveState"] == "active"


def test_an_async_request_to_a_stopped_agent_is_answered_once_after_it_starts(pair: Any) -> None:
    sd = pair
    clear_outboxes(sd)
    stop_agent(sd, TARGET)
    answer = ask_async(sd, "Summarise the week.")
    assert "not running" in answer["text"]
    time.sleep(3)
    assert outbox_texts(sd, SENDER) == []
    start_agent(sd, TARGET)  # the resume path sees the request and starts the agent
    sd.wait_until(
        lambda: len(outbox_texts(sd, SENDER)) >= 1,
        timeout=90,
        what="the sender's answer to the injected result",
    )
    time.sleep(3)  # nothing more may come
    assert len(outbox_texts(sd, SENDER)) == 1, outbox_texts(sd, SENDER)
    received = outbox_texts(sd, TARGET)
    assert len(received) == 1 and received[0].startswith("📥 **Async task received**"), received


def test_the_result_reaches_a_sender_killed_between_request_and_result_once(
    pair: Any,
) -> None:
    sd = pair
    clear_outboxes(sd)
    set_env(sd, TARGET, FAKECLI_DELAY_MS="1500")
    try:
        ask_async(sd, "Take your time.")
        unit = f"ductor-agent@{SENDER}.service"
        assert show(sd, unit, "ActiveState")["ActiveState"] == "active"
        sh(sd, f"systemctl --user kill -s KILL {unit}")
        sd.wait_until(
            lambda: len(outbox_texts(sd, SENDER)) >= 1,
            timeout=120,
            what="the answer to the result, after the sender's restart",
        )
        time.sleep(3)
        assert len(outbox_texts(sd, SENDER)) == 1, outbox_texts(sd, SENDER)
    finally:
        set_env(sd, TARGET)


def test_agents_and_status_show_an_agent_that_keeps_crashing(pair: Any) -> None:
    sd = pair
    unit = f"ductor-agent@{TARGET}.service"
    socket = f"ductor-agent@{TARGET}.socket"
    workspace = f"{CONFIG}/{TARGET}/workspace"
    dropin = f"~/.config/systemd/user/{unit}.d/99-test.conf"
    # A workspace that is a file makes every start fail (exit 1); quick restarts reach
    # the start limit in a second or two.
    sh(sd, f"mkdir -p $(dirname {dropin}) && printf '[Service]\\nRestartSec=100ms\\n' > {dropin}")
    sh(sd, "systemctl --user daemon-reload")
    stop_agent(sd, TARGET)
    sh(sd, f"mv {workspace} {workspace}.bak && touch {workspace}")
    try:
        sh(sd, f"systemctl --user start {unit}", check=False)
        sd.wait_until(
            lambda: (
                "start-limit-hit" in show(sd, socket, "Result")["Result"]
                or show(sd, unit, "Result")["Result"] == "start-limit-hit"
            ),
            timeout=60,
            what="the crashing agent hits its start limit",
        )
        listed = sh(sd, f"ductor chat {SENDER} -m /agents").stdout
        assert f"✖ **{TARGET}**" in listed, listed
        assert "start limit hit: it keeps crashing" in listed, listed
        status = sh(sd, f"ductor chat {SENDER} -m /status").stdout
        assert f"✖ {TARGET}: failed, start limit hit" in status, status
        assert "start limit hit: keeps crashing" in sh(sd, f"ductor status {TARGET}").stdout
    finally:
        sh(sd, f"rm -f {workspace} {dropin} && mv {workspace}.bak {workspace}")
        sh(sd, "systemctl --user daemon-reload")
        sh(sd, f"systemctl --user reset-failed {unit} {socket}", check=False)
        start_agent(sd, TARGET)


def test_the_shared_memory_path_unit_writes_the_shared_file_into_both_memories(
    pair: Any,
) -> None:
    sd = pair
    sh(sd, "systemctl --user start ductor-shared-memory.path")
    sh(sd, f"echo 'The deploy key rotates on Mondays.' > {CONFIG}/SHAREDMEMORY.md")

    def synced() -> bool:
        memories = [
            sh(sd, f"cat {CONFIG}/{n}/workspace/memory_system/MAINMEMORY.md").stdout for n in USERS
        ]
        return all("rotates on Mondays" in m for m in memories)

    sd.wait_until(synced, timeout=30, what="both MAINMEMORY.md files carry the shared file")
