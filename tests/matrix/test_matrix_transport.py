"""The Matrix transport as a real process, between a real Synapse and a real agent
daemon (with the fake CLIs): what a Matrix user sees."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tests.matrix.conftest import MatrixUsers
from tests.process.agent_proc import REPO, AgentProcess
from tests.stubs.synapse import Synapse

from ductor.spool import Envelope, Kind, Payload, Routing, Spool, State

FIXTURES = REPO / "tests" / "fixtures" / "cli"
KEYCAPS = ("1️⃣", "2️⃣", "3️⃣")


class Transport:
    def __init__(self, agent: AgentProcess) -> None:
        self.agent = agent
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_file = agent.root / "matrix.log"

    def start(self) -> Transport:
        log = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "bin" / "ductor-matrix"), "--name", self.agent.name],
            env=self.agent.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        sync = self.agent.state / "matrix" / "sync.json"
        eventually(lambda: sync.exists() and json.loads(sync.read_text()).get("since"), 30, self)
        return self

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


def eventually(
    predicate: Callable[[], object], timeout: float = 20.0, transport: Transport | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            detail = transport.log()[-3000:] if transport else ""
            raise AssertionError(f"not true after {timeout} s\n{detail}")
        time.sleep(0.1)


def scenario(directory: Path, answer: str) -> str:
    """A fake CLI run that answers ``answer``; its path, for FAKECLI_SCENARIO."""
    fixture = FIXTURES / "claude-new"
    target = directory / "answer.jsonl"
    encoded = json.dumps(answer)[1:-1]
    target.write_text(fixture.with_suffix(".jsonl").read_text().replace("ECHO: hello", encoded))
    for suffix in (".meta.json", ".stderr"):
        (directory / f"answer{suffix}").write_bytes(fixture.with_suffix(suffix).read_bytes())
    return str(target)


def setup_agent(
    root: Path,
    synapse: Synapse,
    users: MatrixUsers,
    rooms: list[str],
    *,
    matrix_extra: str = "",
    **env: str,
) -> AgentProcess:
    allowed = json.dumps(rooms)
    config = (
        'provider = "claude"\nmodel = "opus"\ntransports = ["matrix"]\n'
        f'[matrix]\nhomeserver = "{synapse.base_url}"\nuser_id = "{users.bot.user_id}"\n'
        f'allowed_users = ["{users.alice.user_id}"]\nallowed_rooms = {allowed}\n' + matrix_extra
    )
    agent = AgentProcess(root, config=config)
    agent.write_config()
    credentials = root / "config" / "credentials" / agent.name
    credentials.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = credentials / "matrix-password"
    secret.write_text(users.bot.password + "\n")
    secret.chmod(0o600)
    dotenv = credentials / ".env"
    dotenv.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    dotenv.chmod(0o600)
    return agent


class Bot:
    """An agent and its Matrix transport, for one test."""

    def __init__(
        self,
        root: Path,
        synapse: Synapse,
        users: MatrixUsers,
        rooms: list[str],
        *,
        matrix_extra: str = "",
        **env: str,
    ) -> None:
        self.synapse, self.users = synapse, users
        self.agent = setup_agent(root, synapse, users, rooms, matrix_extra=matrix_extra, **env)
        self.agent.start()
        self.transport = Transport(self.agent).start()

    def stop(self) -> None:
        self.transport.stop()
        self.agent.stop()

    def bot_messages(self, room: str) -> list[dict[str, Any]]:
        """The bot's m.room.message events in ``room``, oldest first (not its welcome)."""
        events = self.synapse.messages(self.users.alice.access_token, room, limit=100)
        return [
            e
            for e in reversed(events)
            if e["type"] == "m.room.message"
            and e["sender"] == self.users.bot.user_id
            and not e["content"].get("ductor.welcome")
        ]

    def bodies(self, room: str) -> list[str]:
        return [e["content"].get("body", "") for e in self.bot_messages(room)]

    def wait_bodies(self, room: str, count: int, timeout: float = 20.0) -> list[str]:
        eventually(lambda: len(self.bodies(room)) >= count, timeout, self.transport)
        return self.bodies(room)

    def dm(self) -> str:
        alice, bot = self.users.alice, self.users.bot
        room = self.synapse.create_room(alice.access_token, invite=[bot.user_id], is_direct=True)
        eventually(
            lambda: bot.user_id in self.synapse.joined_members(alice.access_token, room),
            20,
            self.transport,
        )
        return room


@pytest.fixture
def bot_for(
    tmp_path: Path, synapse: Synapse, matrix_users: MatrixUsers
) -> Iterator[Callable[..., Bot]]:
    started: list[Bot] = []

    def make(rooms: list[str] | None = None, *, matrix_extra: str = "", **env: str) -> Bot:
        bot = Bot(tmp_path, synapse, matrix_users, rooms or [], matrix_extra=matrix_extra, **env)
        started.append(bot)
        return bot

    yield make
    for bot in started:
        bot.stop()


def group_room(
    bot_for: Callable[..., Bot], synapse: Synapse, users: MatrixUsers, name: str, **bot: str
) -> tuple[Bot, str]:
    """A room of alice, mallory and the bot (a group room, listed in allowed_rooms)."""
    room = synapse.create_room(users.alice.access_token, name=name, invite=[users.mallory.user_id])
    synapse.join(users.mallory.access_token, room)
    started = bot_for(rooms=[room], **bot)
    synapse.invite(users.alice.access_token, room, users.bot.user_id)
    eventually(
        lambda: users.bot.user_id in synapse.joined_members(users.alice.access_token, room),
        20,
        started.transport,
    )
    return started, room


def test_a_dm_is_answered_with_streamed_segments_in_matrix_html(
    bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    bot = bot_for(FAKECLI_SCENARIO="claude-tool", FAKECLI_DELAY_MS="100")
    room = bot.dm()
    question = synapse.send_text(matrix_users.alice.access_token, room, "run it")
    bodies = bot.wait_bodies(room, 2)
    assert bodies[:2] == ["I'll run a command.", "Tool said: hi"]
    first, second = bot.bot_messages(room)[:2]
    assert first["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == question
    assert "m.relates_to" not in second["content"]
    for message in (first, second):
        assert message["content"]["format"] == "org.matrix.custom.html"
        assert message["content"]["formatted_body"]
    login = json.loads((bot.agent.state / "matrix" / "login.json").read_text())
    assert login["user_id"] == matrix_users.bot.user_id and login["access_token"]


def test_a_group_room_is_served_and_a_stranger_gets_nothing(
    bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    alice, mallory = matrix_users.alice, matrix_users.mallory
    bot, room = group_room(bot_for, synapse, matrix_users, "team")
    synapse.send_text(mallory.access_token, room, "hello bot, obey me")
    synapse.send_text(alice.access_token, room, "hello")
    assert bot.wait_bodies(room, 1) == ["ECHO: hello"]
    time.sleep(1.0)
    assert bot.bodies(room) == ["ECHO: hello"]
    assert "not allowed" in bot.transport.log()


def test_an_invite_to_a_refused_room_is_answered_and_left(
    bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    mallory, bot_user = matrix_users.mallory, matrix_users.bot
    bot = bot_for()
    room = synapse.create_room(mallory.access_token, invite=[bot_user.user_id], is_direct=True)

    def left() -> bool:
        return bot_user.user_id not in synapse.joined_members(mallory.access_token, room)

    eventually(
        lambda: any(
            e["sender"] == bot_user.user_id and "not authorized" in e["content"].get("body", "")
            for e in synapse.messages(mallory.access_token, room)
        ),
        20,
        bot.transport,
    )
    eventually(left, 20, bot.transport)


def test_a_restart_between_two_messages_loses_nothing_and_replays_nothing(
    bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    bot = bot_for()
    room = bot.dm()
    alice = matrix_users.alice
    synapse.send_text(alice.access_token, room, "first")
    assert bot.wait_bodies(room, 1) == ["ECHO: hello"]
    bot.transport.stop()
    synapse.send_text(alice.access_token, room, "second, while the transport is down")
    bot.transport.start()
    assert bot.wait_bodies(room, 2) == ["ECHO: hello", "ECHO: hello"]
    time.sleep(1.5)
    assert len(bot.bodies(room)) == 2
    assert "with a new device" in bot.transport.log()
    assert bot.transport.log().count("with a new device") == 1  # the login was reused


def test_bang_status_is_an_agent_command(
    bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    bot = bot_for()
    room = bot.dm()
    synapse.send_text(matrix_users.alice.access_token, room, "!status")
    (answer,) = bot.wait_bodies(room, 1)
    assert "ECHO" not in answer and answer.strip()


def test_buttons_become_a_numbered_list_and_a_reaction_presses_one(
    tmp_path: Path, bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    answer = "Pick one\n[button:Red] [button:Blue]"
    bot = bot_for(FAKECLI_SCENARIO=scenario(tmp_path, answer))
    room = bot.dm()
    alice = matrix_users.alice
    synapse.send_text(alice.access_token, room, "colour?")
    bot.wait_bodies(room, 1)
    message = bot.bot_messages(room)[0]
    assert "1️⃣" in message["content"]["formatted_body"]
    assert "Blue" in message["content"]["formatted_body"]

    def reactions() -> list[str]:
        return [
            e["content"]["m.relates_to"]["key"]
            for e in synapse.messages(alice.access_token, room)
            if e["type"] == "m.reaction" and e["sender"] == matrix_users.bot.user_id
        ]

    eventually(lambda: sorted(reactions()) == sorted(KEYCAPS[:2]), 20, bot.transport)
    bot.transport.stop()  # the buttons outlive a restart of the transport
    bot.transport.start()
    synapse.react(alice.access_token, room, message["event_id"], KEYCAPS[1])
    bot.wait_bodies(room, 2)  # the press started a turn that was answered
    assert "Traceback" not in bot.transport.log()


def test_an_image_in_and_a_file_out(
    tmp_path: Path, bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    answer_file = tmp_path / "answer.jsonl"
    bot = bot_for(FAKECLI_SCENARIO=str(answer_file))
    workspace = bot.agent.workspace
    (workspace / "report.txt").write_text("the report\n")
    scenario(tmp_path, f"see <file:{workspace / 'report.txt'}>")  # read when the CLI runs
    room = bot.dm()
    alice = matrix_users.alice
    image_file = tmp_path / "pic.png"
    Image.new("RGB", (8, 8), "red").save(image_file)
    mxc = synapse.upload(alice.access_token, image_file.read_bytes(), "image/png", "pic.png")
    content = {
        "msgtype": "m.image",
        "body": "pic.png",
        "url": mxc,
        "info": {"mimetype": "image/png"},
    }
    synapse.send_event(alice.access_token, room, "m.room.message", content)
    eventually(lambda: list((workspace / "matrix_files").rglob("pic*")), 20, bot.transport)

    def sent_file() -> dict[str, Any] | None:
        for event in bot.bot_messages(room):
            if event["content"].get("msgtype") == "m.file":
                return event
        return None

    eventually(sent_file, 20, bot.transport)
    event = sent_file()
    assert event is not None
    assert synapse.download(alice.access_token, event["content"]["url"]) == b"the report\n"


def test_a_mention_buried_under_more_than_a_sync_page_of_chatter_is_still_answered(
    bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    """While the transport is down, the question is followed by more messages than one
    /sync timeline holds (100): the limited timeline's gap is paged in, not lost."""
    alice, bot_user = matrix_users.alice, matrix_users.bot
    bot, room = group_room(
        bot_for, synapse, matrix_users, "busy room", matrix_extra="group_mention_only = true\n"
    )
    bot.transport.stop()
    synapse.send_text(alice.access_token, room, f"{bot_user.user_id} what is new?")
    for n in range(120):
        synapse.send_text(alice.access_token, room, f"chatter {n}")
    bot.transport.start()
    assert bot.wait_bodies(room, 1, timeout=30) == ["ECHO: hello"]
    assert "a limited sync left out" in bot.transport.log()
    time.sleep(1.0)
    assert len(bot.bodies(room)) == 1  # the chatter was not for the bot


def test_the_outbox_delivers_each_envelope_once_and_a_gone_room_falls_back_to_the_dm(
    bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    bot = bot_for()
    room = bot.dm()
    spool = Spool(bot.agent.state / "spool")
    to_room = Envelope.create(
        agent=bot.agent.name,
        kind=Kind.CRON,
        routing=Routing("mx", chat_id=room, origin="cron job news"),
        payload=Payload(text="the **news**"),
    )
    gone = Envelope.create(
        agent=bot.agent.name,
        kind=Kind.HEARTBEAT,
        routing=Routing("mx", chat_id="!gone", origin="heartbeat"),
        payload=Payload(text="still here"),
    )
    spool.post(to_room)
    spool.post(gone)
    bodies = bot.wait_bodies(room, 2)
    assert "**Cron: cron job news**\n\nthe **news**" in bodies
    [fallback] = [b for b in bodies if "still here" in b]
    assert fallback.startswith("_(This was meant for !gone, which I can no longer reach.)_")
    news = next(e for e in bot.bot_messages(room) if "news" in e["content"]["body"])
    assert "the <b>news</b>" in news["content"]["formatted_body"]
    queue = spool.outbox("mx")
    eventually(lambda: all(queue.get(e.id).state is State.DONE for e in (to_room, gone)))  # type: ignore[union-attr]
    bot.transport.stop()
    bot.transport.start()
    time.sleep(1.5)
    assert len(bot.bodies(room)) == 2  # a restart sends nothing again


def test_an_answer_whose_transport_was_killed_mid_turn_arrives_once_after_the_restart(
    bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    bot = bot_for(FAKECLI_DELAY_MS="400")
    room = bot.dm()
    synapse.send_text(matrix_users.alice.access_token, room, "take your time")
    eventually(lambda: list((bot.agent.state / "turns").glob("*")), 20, bot.transport)
    bot.transport.stop(signal.SIGKILL)
    outbox = bot.agent.state / "spool" / "outbox" / "mx" / "new"
    eventually(lambda: outbox.exists() and list(outbox.iterdir()), 30, bot.transport)
    bot.transport.start()
    assert bot.wait_bodies(room, 1) == ["ECHO: hello"]
    time.sleep(1.5)
    assert bot.bodies(room) == ["ECHO: hello"]


def test_a_room_taken_off_the_allowlist_is_left_on_a_confirmed_reload_and_where_lists_the_rest(
    bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    alice, bot_user = matrix_users.alice, matrix_users.bot
    bot, group = group_room(bot_for, synapse, matrix_users, "old team")
    dm = bot.dm()
    time.sleep(0.5)
    assert bot_user.user_id in synapse.joined_members(alice.access_token, group)  # served
    bot.agent.write_config(bot.agent.config.replace(json.dumps([group]), "[]"))
    assert bot.transport.proc is not None
    bot.transport.proc.send_signal(signal.SIGHUP)  # the first reload only names the room
    eventually(lambda: "no longer allow 1 room(s)" in bot.transport.log(), 20, bot.transport)
    assert bot_user.user_id in synapse.joined_members(alice.access_token, group)
    bot.transport.proc.send_signal(signal.SIGHUP)  # the second one confirms
    eventually(
        lambda: bot_user.user_id not in synapse.joined_members(alice.access_token, group),
        20,
        bot.transport,
    )
    farewell = [e["content"]["body"] for e in bot.bot_messages(group)]
    assert farewell == ["This room is not authorized to use this bot. Leaving."]
    assert bot_user.user_id in synapse.joined_members(alice.access_token, dm)  # a DM stays
    synapse.send_text(alice.access_token, dm, "!where")
    (where,) = bot.wait_bodies(dm, 1)
    assert dm in where and "direct chat" in where and group not in where
    synapse.send_text(alice.access_token, dm, "!help")
    help_text = bot.wait_bodies(dm, 2)[1]
    assert "!where" in help_text and "!model" in help_text and "\n/model" not in help_text


def test_a_queued_message_shows_an_indicator_whose_reaction_cancels_it(
    bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    bot = bot_for(FAKECLI_DELAY_MS="300")
    room = bot.dm()
    alice = matrix_users.alice
    synapse.send_text(alice.access_token, room, "first")
    time.sleep(0.3)
    second = synapse.send_text(alice.access_token, room, "second")

    def indicator() -> dict[str, Any] | None:
        for event in bot.bot_messages(room):
            if event["content"].get("body", "").startswith("[Message in queue"):
                return event
        return None

    eventually(indicator, 20, bot.transport)
    shown = indicator()
    assert shown is not None
    assert shown["content"]["msgtype"] == "m.notice"
    assert shown["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == second
    eventually(
        lambda: any(
            e["type"] == "m.reaction"
            and e["sender"] == matrix_users.bot.user_id
            and e["content"]["m.relates_to"]["event_id"] == shown["event_id"]
            for e in synapse.messages(alice.access_token, room)
        ),
        20,
        bot.transport,
    )
    synapse.react(alice.access_token, room, shown["event_id"], KEYCAPS[0])
    eventually(lambda: "[Message cancelled.]" in bot.bodies(room), 20, bot.transport)
    eventually(lambda: indicator() is None, 20, bot.transport)  # redacted
    eventually(lambda: bot.bodies(room).count("ECHO: hello") == 1, 20, bot.transport)
    time.sleep(2.0)
    assert bot.bodies(room).count("ECHO: hello") == 1  # the second never ran


def test_an_image_that_cannot_be_downloaded_is_refused_once_and_the_loop_goes_on(
    bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    bot = bot_for()
    room = bot.dm()
    alice = matrix_users.alice
    content = {
        "msgtype": "m.image",
        "body": "gone.png",
        "url": f"mxc://{synapse.server_name}/NoSuchMediaAtAll",
        "info": {"mimetype": "image/png"},
    }
    synapse.send_event(alice.access_token, room, "m.room.message", content)
    synapse.send_text(alice.access_token, room, "hello")
    eventually(lambda: "ECHO: hello" in bot.bodies(room), 30, bot.transport)
    refusals = [b for b in bot.bodies(room) if "Could not receive that image" in b]
    assert len(refusals) == 1, bot.bodies(room)
    assert bot.transport.proc is not None and bot.transport.proc.poll() is None


def test_a_task_result_injected_into_a_room_is_answered_live_and_once(
    bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    bot = bot_for()
    room = bot.dm()
    agent = bot.agent
    # the conversation the task comes from: the transport listens once the agent answered
    synapse.send_text(matrix_users.alice.access_token, room, "hello")
    bot.wait_bodies(room, 1, timeout=30)
    eventually(lambda: "mx listens for the injected turns" in agent.log(), 20, bot.transport)
    env = {
        **agent.env,
        "DUCTOR_AGENT_NAME": agent.name,
        "DUCTOR_AGENT_SOCKET": str(agent.socket),
        "DUCTOR_TRANSPORT": "mx",
        "DUCTOR_CHAT_ID": room,
    }
    script = agent.workspace / "tools" / "task_tools" / "create_task.py"
    created = subprocess.run(
        [sys.executable, str(script), "--name", "audit", "List the outdated deps."],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert '"ok": true' in created.stdout, created.stdout + created.stderr
    bot.wait_bodies(room, 3, timeout=30)  # the first answer, the notice and the answer
    time.sleep(1.5)  # a second copy from the outbox would show up by now
    bodies = bot.bodies(room)
    assert len([b for b in bodies if b.startswith("**Task `audit` completed**")]) == 1, bodies
    assert bodies.count("ECHO: hello") == 2, bodies  # the conversation's and the task's
    outbox = agent.state / "spool" / "outbox" / "mx"
    assert list(outbox.rglob("reply-*")) == [], "the answer came live, not from the outbox"
