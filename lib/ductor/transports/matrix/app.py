"""``ductor-matrix --name NAME``: the Matrix transport of one agent.

Our own ``/sync`` loop over matrix-nio's ``AsyncClient``, so that the sync token moves
forward only after the agent has accepted each message durably (``accepted`` or
``queued``): a message that arrives while the agent, the transport or the machine is
down is answered after the restart, never dropped, and never answered twice
(state.py). Each accepted message is then followed in its own task: its events become
segment messages (segments.py), and the final answer is acknowledged to the agent only
after it is shown, so a crash in between re-delivers it from the outbox (outbox.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import mimetypes
from collections import OrderedDict, deque
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import nio
from nio import MessageDirection

from ductor import config, protocol
from ductor.errors import ConfigError, DuctorError
from ductor.notify import Notifier
from ductor.paths import Paths
from ductor.protocol import Event, EventType, Request, RequestType, new_request_id
from ductor.protocol.aclient import AsyncExchange, open_exchange
from ductor.spool import Spool
from ductor.transports import agentlink
from ductor.transports.intake import Intake
from ductor.transports.listen import TurnStream, listen
from ductor.transports.matrix import crypto, media
from ductor.transports.matrix.ingress import (
    NUMBER_EMOJIS,
    WELCOME,
    Action,
    Incoming,
    classify,
    unknown_command,
    welcome_text,
)
from ductor.transports.matrix.outbox import MatrixOutbox
from ductor.transports.matrix.queuenotice import CANCEL_ALL, QueueNotices
from ductor.transports.matrix.richtext import TooLarge
from ductor.transports.matrix.rooms import (
    AuditState,
    Room,
    allowlists_key,
    format_where,
    parse_leave,
    to_leave,
)
from ductor.transports.matrix.segments import (
    Button,
    SegmentOptions,
    SegmentStream,
    buttons_of,
    render,
)
from ductor.transports.matrix.state import ButtonMemory, Login, SyncState
from ductor.transports.typingloop import Typing

log = logging.getLogger("ductor.matrix")

SYNC_TIMEOUT_MS = 25_000
TYPING_EVERY = 20.0  # seconds; each typing notice lasts TYPING_TIMEOUT_MS
TYPING_TIMEOUT_MS = 30_000
SYNC_FILTER: dict[str, Any] = {
    "presence": {"types": []},
    "account_data": {"types": []},
    "room": {"timeline": {"limit": 100}, "ephemeral": {"types": []}},
}
NETWORK_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)
GAP_PAGE = 100  # events per /messages page when a sync timeline was limited
AUDIT_EVERY = 24 * 3600.0  # seconds between audits of the rooms the bot is in
REMEMBERED = 1000  # event ids kept for dedupe, replies and buttons
STOP_ORDER_WAIT = 10.0  # seconds the answer to a !stop waits for the stopped turn's text
WELCOME_WAIT = 30  # seconds a welcome waits for the room's state to arrive by a sync
MAX_AHEAD = 500  # events and batches in flight before the sync waits for the agent


class MatrixError(DuctorError):
    """The homeserver refused a request."""


def _remember(cache: OrderedDict[str, Any], key: str, value: Any = None) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > REMEMBERED:
        cache.popitem(last=False)


def _stripped(event: Any) -> dict[str, Any]:
    """An invite's stripped state event as a dict (matrix-nio drops a member event's
    content from its ``source``)."""
    source = dict(getattr(event, "source", None) or {})
    content = getattr(event, "content", None)
    if "content" not in source and isinstance(content, dict):
        source["content"] = content
    return source


class MatrixTransport:
    def __init__(
        self,
        name: str,
        paths: Paths,
        agent_config: config.AgentConfig,
        *,
        password: str | None,
        access_token: str | None = None,
    ) -> None:
        self.name = name
        self.paths = paths
        self.config = agent_config
        mx = agent_config.matrix
        if not mx.homeserver or not mx.user_id:
            raise ConfigError("[matrix] needs homeserver and user_id")
        self.password = password
        self.access_token = access_token
        self.state_dir = paths.agent_state(name) / "matrix"
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = paths.agent_state(name) / mx.store_path
        store.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.client = nio.AsyncClient(
            mx.homeserver.rstrip("/"),
            mx.user_id,
            device_id=mx.device_id or None,
            store_path=str(store),
            config=crypto.client_config(),
        )
        self.crypto = crypto.Encryption(self.client, self.state_dir, mx)
        self.sync_state = SyncState(self.state_dir / "sync.json").load()
        self.socket = paths.agent_socket(name)
        self.workspace = paths.workspace(name)
        self.tasks: set[asyncio.Task[None]] = set()
        self.room_turns: dict[str, set[asyncio.Task[None]]] = {}  # answers being shown
        self.queue_notices = QueueNotices(
            self.state_dir / "queue_notices.json",
            send=self.send_queue_notice,
            edit=self.edit_notice,
            redact=self.redact,
            offer_cancel=self.offer_cancel,
        )
        # The intake of sync batches (sync_loop): where the next sync starts, the events
        # numbered so far, each fetched batch's first number after it with its token, and
        # the handled events of batches the saved token has not passed yet.
        self.fetched = ""
        self.numbered = 0
        self.batches: deque[tuple[int, str]] = deque()
        self.handed: dict[str, int] = {}
        self.typing: Typing[str] = Typing(self.send_typing, TYPING_EVERY)
        self.recent: OrderedDict[str, None] = OrderedDict()
        self.bot_events: OrderedDict[str, None] = OrderedDict()
        self.buttons = ButtonMemory(self.state_dir / "buttons.json").load()
        self.allowed_room_ids: set[str] = set()
        self.rooms_resolved = False
        self.notifier = Notifier()
        self.rooms_known = asyncio.Event()  # set once a full-state sync has listed them

    @property
    def bot_id(self) -> str:
        return self.config.matrix.user_id

    # -- lifecycle -------------------------------------------------------------------------

    async def login(self) -> None:
        """Reuse the saved login; log in with the password on the first start (or when
        the saved token was revoked) and save the new one."""
        file = self.state_dir / "login.json"
        saved = Login.load(file)
        if saved is None and self.access_token:
            saved = Login(self.bot_id, self.config.matrix.device_id, self.access_token)
        if saved is not None and saved.user_id == self.bot_id:
            crypto.restore_login(self.client, saved.user_id, saved.device_id, saved.access_token)
            who = await self.client.whoami()
            if isinstance(who, nio.WhoamiResponse):
                if not saved.device_id and who.device_id:
                    self.client.restore_login(saved.user_id, who.device_id, saved.access_token)
                log.info("logged in as %s (device %s)", who.user_id, self.client.device_id)
                return
            if who.status_code not in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN", "M_FORBIDDEN"):
                raise MatrixError(f"whoami failed: {who.message} ({who.status_code})")
            log.warning("the saved Matrix access token was refused; logging in again")
        if not self.password:
            raise ConfigError(
                "no Matrix password: write it alone into"
                f" {self.paths.agent_credentials(self.name) / config.MATRIX_PASSWORD} (mode"
                " 0600; `ductor init NAME --transport matrix` does that for a new agent)"
            )
        crypto.forget_device(self.client)  # a new login is a new device with its own keys
        answer = await self.client.login(self.password, device_name="ductor")
        if isinstance(answer, nio.LoginError):
            if answer.status_code in ("M_FORBIDDEN", "M_USER_DEACTIVATED", "M_INVALID_USERNAME"):
                raise ConfigError(f"Matrix refused the login of {self.bot_id}: {answer.message}")
            raise MatrixError(f"login failed: {answer.message} ({answer.status_code})")
        Login(answer.user_id, answer.device_id, answer.access_token).save(file)
        crypto.publish_keys_again(self.client)
        log.info("logged in as %s with a new device %s", answer.user_id, answer.device_id)

    async def start(self) -> None:
        delay = 1.0
        while True:
            try:
                await self.login()
                await self.resolve_rooms()
                return
            except (MatrixError, *NETWORK_ERRORS) as exc:
                log.warning("cannot reach Matrix (%s); retrying in %.0f s", exc, delay)
                self.notifier.status(f"cannot reach Matrix ({exc}); retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60)

    async def resolve_rooms(self) -> bool:
        """``allowed_rooms`` as room ids: aliases are resolved (one that does not resolve
        is left out, with a log line). Whether every one resolved: only then may the
        audit leave rooms, or a homeserver hiccup would make the bot leave a listed one."""
        ids: set[str] = set()
        complete = True
        for room in self.config.matrix.allowed_rooms:
            if not room.startswith("#"):
                ids.add(room)
                continue
            try:
                answer = await self.client.room_resolve_alias(room)
            except NETWORK_ERRORS as exc:
                answer = nio.RoomResolveAliasError(str(exc))
            if isinstance(answer, nio.RoomResolveAliasResponse):
                ids.add(answer.room_id)
            else:
                complete = False
                log.warning("allowed room %s does not resolve: %s", room, answer.message)
        self.allowed_room_ids = ids
        self.rooms_resolved = complete
        return complete

    # -- the rooms the bot is in -----------------------------------------------------------

    def joined_rooms(self) -> list[Room]:
        rooms: list[Room] = []
        for room_id, room in self.client.rooms.items():
            aliases = {room.canonical_alias} if room.canonical_alias else set()
            rooms.append(
                Room(
                    str(room_id),
                    room.display_name or "",
                    frozenset(room.users) | frozenset(room.invited_users),
                    frozenset(aliases),
                )
            )
        return rooms

    async def audit_rooms(self, *, confirmed: bool = False) -> list[str]:
        """Leave every joined room the bot does not serve (any more): at start, after a
        reload and daily. Rooms a change of the allowlists would leave are only named
        until a second reload with the same allowlists (``confirmed``) confirms it
        (rooms.AuditState). Returns the rooms left."""
        await self.rooms_known.wait()
        if not self.rooms_resolved:
            log.warning("not auditing rooms: an allowed room alias did not resolve")
            return []
        mx = self.config.matrix
        candidates = to_leave(
            self.joined_rooms(),
            bot_id=self.bot_id,
            allowed_room_ids=self.allowed_room_ids,
            allowed_users=mx.allowed_users,
        )
        state = AuditState.load(self.state_dir / "audit.json")
        key = allowlists_key(mx.allowed_users, self.allowed_room_ids)
        changed = key != state.allowlists
        leaving = state.decide(key, candidates, confirmed=confirmed)
        if candidates and not leaving:
            log.warning(
                "the changed allowlists no longer allow %d room(s): %s. The bot stays in them:"
                " reload again with the same allowlists to confirm leaving them, or restore"
                " the old ones (ductor doctor lists them)",
                len(candidates),
                ", ".join(f"{r.room_id} ({r.name or 'untitled'})" for r in candidates),
            )
            return []
        if leaving and changed:
            log.warning("leaving %d room(s): confirmed by a second reload", len(leaving))
        left: list[str] = []
        for room in leaving:
            log.warning("room %s (%s) is not allowed: leaving it", room.room_id, room.name)
            with contextlib.suppress(DuctorError, *NETWORK_ERRORS):
                await self.send_html(
                    room.room_id,
                    *render("This room is not authorized to use this bot. Leaving.")[0],
                )
            with contextlib.suppress(*NETWORK_ERRORS):
                answer = await self.client.room_leave(room.room_id)
                if isinstance(answer, nio.RoomLeaveResponse):
                    self.gone(room.room_id)
                    left.append(room.room_id)
        return left

    async def audit_daily(self, stop: asyncio.Event) -> None:
        """The room audit at start and then once a day (a reload runs one too)."""
        await agentlink.repeat(stop, AUDIT_EVERY, self.audit_rooms, "the room audit", now=True)

    async def reload(self, new: config.AgentConfig) -> None:
        """A reloaded config (SIGHUP): new allowlists, then an audit."""
        self.config = new
        self.crypto.reconfigure(new.matrix)
        await self.resolve_rooms()
        await self.audit_rooms(confirmed=True)

    async def local_command(self, incoming: Incoming) -> bool:
        """Commands answered here: !where and !leave (the owner's alone: the first allowed
        user), and a !word the bot does not know (the list of commands; the CLI would take
        it for one of its own slash commands)."""
        word = incoming.text.split(maxsplit=1)[0].lower() if incoming.text else ""
        rooms = self.joined_rooms()
        owner = self.config.matrix.allowed_users[:1]
        if incoming.action is Action.UNKNOWN_COMMAND:
            text = unknown_command(word)
        elif word in ("/where", "/leave") and incoming.sender not in owner:
            text = f"Only the owner ({', '.join(owner) or 'nobody'}) may use !{word[1:]}."
            log.warning("refused %s from %s: only the owner may", word, incoming.sender)
        elif word == "/where":
            if not incoming.private:  # in a group, no word about anybody's other rooms
                rooms = [r for r in rooms if r.room_id == incoming.room_id]
            text = format_where(
                rooms,
                bot_id=self.bot_id,
                allowed_room_ids=self.allowed_room_ids,
                allowed_users=self.config.matrix.allowed_users,
            )
        elif word == "/leave":
            try:
                room = parse_leave(incoming.text, rooms)
            except ValueError as exc:
                text = str(exc)
            else:
                answer = await self.client.room_leave(room)
                if isinstance(answer, nio.RoomLeaveResponse):
                    self.gone(room)
                    text = f"Left {room}."
                    log.info("left %s on %s's request", room, incoming.sender)
                else:
                    text = f"Could not leave {room}: {answer.message}"
        else:
            return False
        if incoming.room_id in {r.room_id for r in self.joined_rooms()}:
            with contextlib.suppress(DuctorError, *NETWORK_ERRORS):
                body, html = render(text)[0]
                await self.send_html(
                    incoming.room_id,
                    body,
                    html,
                    reply_to=incoming.event_id,
                    thread=incoming.thread,
                )
        return True

    def file_allowed(self, path: Path) -> bool:
        return agentlink.file_allowed(
            path, paths=self.paths, workspace=self.workspace, file_access=self.config.file_access
        )

    def status_line(self) -> str:
        return f"{self.bot_id}: {len(self.tasks)} room turn(s) in flight"

    async def run(self, stop: asyncio.Event) -> None:
        self.notifier.ready("connecting to Matrix")
        watchdog = asyncio.create_task(self.notifier.watchdog_loop())
        try:
            await self.start()
        except BaseException:
            watchdog.cancel()
            raise
        spool = Spool(self.paths.spool(self.name), served=self.config.outboxes)
        drain = MatrixOutbox(
            spool.outbox("mx"),
            self,
            allowed_users=self.config.matrix.allowed_users,
        )
        drain.spool = spool
        self.notifier.status(self.status_line())
        log.info("syncing as %s for agent %s", self.bot_id, self.name)
        background = [
            asyncio.create_task(self.drain_when_rooms_known(drain, stop)),
            asyncio.create_task(self.listen_when_rooms_known(stop)),
            asyncio.create_task(self.audit_daily(stop)),
            watchdog,
        ]
        try:
            await self.sync_loop(stop)
        finally:
            for task in background:
                task.cancel()
            for task in list(self.tasks):
                task.cancel()
            self.typing.close()
            with contextlib.suppress(Exception):
                await self.client.close()

    async def listen_when_rooms_known(self, stop: asyncio.Event) -> None:
        """Show the turns the agent starts itself (a task's result injected into a room's
        session) live, once the rooms are known (before, each would look unknown)."""
        await self.rooms_known.wait()
        await listen(self.socket, "mx", stop, self.show_injected, tasks=self.tasks)

    async def show_injected(self, first: Event, stream: TurnStream) -> None:
        """An injected turn, streamed into its room like the answer to a message; one for a
        room this bot does not serve is never acknowledged (the outbox refuses it too)."""
        try:
            key = protocol.parse_session_key(first.get_str("session"))
        except protocol.ProtocolError:
            log.warning("an injected turn for %r is not a Matrix room", first.get_str("session"))
            return
        room = next((r for r in self.joined_rooms() if r.room_id == key.chat), None)
        mx = self.config.matrix
        served = room is not None and (
            room.is_served(
                bot_id=self.bot_id,
                allowed_room_ids=self.allowed_room_ids,
                allowed_users=mx.allowed_users,
            )
            or bool(room.aliases & set(mx.allowed_rooms))
        )
        if not served:
            log.warning("not showing an injected turn in %s: not a room this bot serves", key.chat)
            return
        incoming = Incoming(Action.MESSAGE, room_id=key.chat, thread=key.topic or "")
        await self.follow(incoming, stream, first)

    async def drain_when_rooms_known(self, drain: MatrixOutbox, stop: asyncio.Event) -> None:
        """The outbox waits for the first sync: before it, every room looks unknown and an
        envelope would go to the fallback (or fail) instead of its room."""
        await self.rooms_known.wait()
        await self.queue_notices.clean_up()
        await drain.run(stop)

    async def sync_loop(self, stop: asyncio.Event) -> None:
        """Sync, hand each batch's events to the intake and sync on: a room that waits
        (a download, an agent restart) holds up no other room and no later message. The
        saved token moves past a batch once all its events (and all earlier ones) are
        handled; ``self.fetched`` is where the next sync of this process starts."""
        intake: Intake[tuple[str, dict[str, Any], int]] = Intake(
            lambda item: self.take_event(item, stop),
            on_failure=self.report_failure,
            describe=lambda item: f"event {item[1].get('event_id')} in {item[0]}",
            on_done=lambda: self.commit_batches(intake),
        )
        try:
            await self._sync_loop(intake, stop)
        finally:
            await intake.close()

    def commit_batches(self, intake: Intake[tuple[str, dict[str, Any], int]]) -> None:
        """Advance the saved token past every batch whose events are all handled."""
        point = intake.commit_point(self.numbered)
        intake.forget_below(point)  # the numbers are ours: none comes back
        latest = None
        while self.batches and self.batches[0][0] <= point:
            boundary, latest = self.batches.popleft()
        if latest is None:
            return
        later = {event for event, number in self.handed.items() if number >= boundary}
        self.handed = {event: self.handed[event] for event in later}
        self.sync_state.advance(latest, keep=later)

    async def _sync_loop(
        self, intake: Intake[tuple[str, dict[str, Any], int]], stop: asyncio.Event
    ) -> None:
        delay = 1.0
        state_loaded = False
        self.fetched = self.sync_state.since
        while not stop.is_set():
            if intake.busy and len(self.handed) + len(self.batches) > MAX_AHEAD:
                await intake.progressed(1.0)  # the agent is not taking them: wait
                continue
            first = not self.fetched
            try:
                # The first sync of a process asks for the full state of every room even
                # when it resumes from a saved token: who is in a room (a direct chat or a
                # group) and which rooms the bot is in must not be guessed from the few
                # rooms an incremental sync happens to mention.
                answer = await self.client.sync(
                    timeout=0 if first or not state_loaded else SYNC_TIMEOUT_MS,
                    sync_filter=SYNC_FILTER,
                    since=self.fetched or None,
                    full_state=None if state_loaded else True,
                )
            except NETWORK_ERRORS as exc:
                answer = nio.SyncError(str(exc))
            if isinstance(answer, nio.SyncError):
                log.warning("sync failed (%s); retrying in %.0f s", answer.message, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60)
                continue
            state_loaded = True  # matrix-nio now knows every room the bot is in
            self.rooms_known.set()
            try:
                await self.handle_sync(answer, intake, stop, first=first)
            except (MatrixError, *NETWORK_ERRORS) as exc:
                # The token stays: the batch is read again, and what it handed to the
                # agent already is marked in the sync state, so nothing is handed twice.
                log.warning("a sync batch failed (%s); reading it again in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60)
                continue
            delay = 1.0
            if stop.is_set():
                return
            self.fetched = answer.next_batch
            self.batches.append((self.numbered, answer.next_batch))
            self.commit_batches(intake)
            self.notifier.status(self.status_line())

    # -- one sync batch --------------------------------------------------------------------

    async def handle_sync(
        self,
        answer: nio.SyncResponse,
        intake: Intake[tuple[str, dict[str, Any], int]],
        stop: asyncio.Event,
        *,
        first: bool,
    ) -> None:
        await self.crypto.after_sync()
        for room_id in answer.rooms.leave:
            self.gone(room_id)
        for room_id, invite in answer.rooms.invite.items():
            await self.on_invite(room_id, [_stripped(e) for e in invite.invite_state])
        since = self.fetched
        # Rooms are handled side by side, the events of one room in order; an event whose
        # handling fails is logged, answered with a short note and marked handled, so no
        # single event stops the loop (or is replayed by every restart).
        for room_id, joined in answer.rooms.join.items():
            if first:
                # The first start answers nothing from before it: history is not a request.
                continue
            events = [s for e in joined.timeline.events if (s := crypto.source_of(e)) is not None]
            if joined.timeline.limited and since and joined.timeline.prev_batch:
                events = await self.gap(room_id, since, joined.timeline.prev_batch) + events
            start = 0
            for index, event in enumerate(events):
                content = event.get("content") or {}
                if (
                    event.get("type") == "m.room.member"
                    and event.get("state_key") == self.bot_id
                    and isinstance(content, dict)
                    and content.get("membership") == "join"
                ):
                    start = index + 1  # what came before the bot joined is not for it
            for event in events[start:]:
                event_id = str(event.get("event_id", ""))
                if not event_id or event_id in self.recent or self.sync_state.is_handled(event_id):
                    continue
                _remember(self.recent, event_id)
                intake.submit(room_id, self.numbered, (room_id, event, self.numbered))
                self.numbered += 1
        for room_id, event in self.crypto.late_events():  # decrypted now that keys came
            intake.submit(room_id, self.numbered, (room_id, event, self.numbered))
            self.numbered += 1

    async def take_event(self, item: tuple[str, dict[str, Any], int], stop: asyncio.Event) -> bool:
        """Handle one event of a sync batch; whether it is safe (marked handled)."""
        room_id, event, number = item
        if await self.handle_event(room_id, event, stop):
            if stop.is_set():
                return False
            self.mark(event, number)
        return not stop.is_set()

    def mark(self, event: Mapping[str, Any], number: int) -> None:
        """``event`` is handled: never again, even when its batch is read again."""
        event_id = str(event.get("event_id", ""))
        self.handed[event_id] = number
        self.sync_state.mark(event_id)

    async def report_failure(self, item: tuple[str, dict[str, Any], int], error: Exception) -> None:
        """Handling an event failed (logged already): mark it, and one short note."""
        room_id, event, number = item
        self.mark(event, number)
        if event.get("type") != "m.room.message" or event.get("sender") == self.bot_id:
            return
        if event.get("sender") not in self.config.matrix.allowed_users:
            return
        body, html = render(
            "_Sorry, that message could not be handled, so it was skipped"
            f" ({type(error).__name__}; details in the transport's log)._"
        )[0]
        await self.send_html(room_id, body, html, reply_to=str(event.get("event_id") or "") or None)

    async def gap(self, room_id: str, since: str, prev_batch: str) -> list[dict[str, Any]]:
        """The events a ``limited`` timeline left out: from our last sync token forward to
        where the timeline starts, page by page (nothing sent while we were away is lost,
        however much it was)."""
        events: list[dict[str, Any]] = []
        start = since
        while True:
            page = await self.client.room_messages(
                room_id, start, prev_batch, MessageDirection.front, GAP_PAGE
            )
            if not isinstance(page, nio.RoomMessagesResponse):
                raise MatrixError(f"cannot read the history of {room_id}: {page.message}")
            events += [s for e in page.chunk if (s := crypto.source_of(e)) is not None]
            if not page.chunk or not page.end or page.end == start:
                break
            start = page.end
        if events:
            log.info("fetched %d event(s) a limited sync left out in %s", len(events), room_id)
        return events

    def gone(self, room_id: str) -> None:
        """The bot left (or was removed from) ``room_id``: matrix-nio keeps such rooms in
        its list, so they are dropped here, or the outbox would still send there."""
        if self.client.rooms.pop(room_id, None) is not None:
            log.info("no longer in %s", room_id)
        self.buttons.close(room_id)

    def is_private(self, room_id: str) -> bool:
        room = self.client.rooms.get(room_id)
        return room is not None and room.member_count <= 2

    async def handle_event(
        self, room_id: str, event: Mapping[str, Any], stop: asyncio.Event
    ) -> bool:
        """Handle one timeline event; whether it was one that counts (to be marked)."""
        try:
            incoming = classify(
                event,
                room_id=room_id,
                bot_id=self.bot_id,
                config=self.config.matrix,
                allowed_room_ids=self.allowed_room_ids,
                private=self.is_private(room_id),
                bot_events=self.bot_events,
                buttons=self.buttons.buttons,
                open_buttons=self.buttons.open.get(room_id),
            )
        except Exception:
            log.exception("cannot read event %s in %s; skipping it", event.get("event_id"), room_id)
            return False
        if incoming.action is Action.IGNORE:
            log.debug("ignored %s: %s", incoming.event_id, incoming.reason)
            return False
        if incoming.action is Action.REFUSE:
            log.warning("refused %s in %s: %s", incoming.event_id, room_id, incoming.reason)
            return True
        if incoming.action is Action.ENCRYPTED or self.crypto.cannot_answer(room_id):
            await self.crypto.unreadable(room_id, event)
            return True
        distrust = await self.crypto.distrust(room_id, event)
        if distrust:
            log.warning("refused %s in %s: %s", incoming.event_id, room_id, distrust)
            return True
        if incoming.action in (Action.BUTTON, Action.MESSAGE):
            self.buttons.close(room_id)
        await self.to_agent(incoming, stop)
        return True

    async def on_invite(self, room_id: str, state: list[Any]) -> None:
        self.crypto.note_invite(room_id, [e for e in state if isinstance(e, dict)])
        inviter, direct, aliases = "", False, set()
        for event in state:
            if not isinstance(event, dict):
                continue
            content = event.get("content") or {}
            if event.get("type") == "m.room.member" and event.get("state_key") == self.bot_id:
                inviter = str(event.get("sender", ""))
                direct = bool(content.get("is_direct"))
            elif event.get("type") == "m.room.canonical_alias":
                aliases.add(str(content.get("alias", "")))
                aliases.update(str(a) for a in content.get("alt_aliases") or [])
        listed = room_id in self.allowed_room_ids or bool(
            aliases & set(self.config.matrix.allowed_rooms)
        )
        allowed = inviter in self.config.matrix.allowed_users and (listed or direct)
        joined = await self.client.join(room_id)
        if isinstance(joined, nio.JoinError):
            log.warning("could not join %s (invited by %s): %s", room_id, inviter, joined.message)
            return
        if allowed:
            log.info("joined %s, invited by %s", room_id, inviter)
            if listed and not direct:
                task = asyncio.create_task(self.welcome(room_id))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            return
        log.warning("room %s (invited by %s) is not allowed: leaving it", room_id, inviter)
        with contextlib.suppress(DuctorError, *NETWORK_ERRORS):
            await self.send_html(
                room_id, *render("This room is not authorized to use this bot. Leaving.")[0]
            )
        with contextlib.suppress(*NETWORK_ERRORS):
            if isinstance(await self.client.room_leave(room_id), nio.RoomLeaveResponse):
                self.gone(room_id)

    async def welcome(self, room_id: str) -> None:
        """A word on joining a group room it serves: how to talk to the bot there (a
        direct chat needs none: whatever is written there is for the bot). Sent once a
        sync has brought the room's state, so that in an encrypted room it is encrypted
        like everything else (and only for the allowed users' devices)."""
        for _ in range(WELCOME_WAIT):
            if room_id in self.client.rooms:
                break
            await asyncio.sleep(1.0)
        else:
            return
        text = welcome_text(self.bot_id, mention_only=self.config.matrix.group_mention_only)
        body, html = render(text)[0]
        content: dict[str, Any] = {"msgtype": "m.notice", "body": body, WELCOME: True}
        content |= {"format": "org.matrix.custom.html", "formatted_body": html}
        with contextlib.suppress(DuctorError, *NETWORK_ERRORS):
            await self.send_event(room_id, "m.room.message", content)

    # -- to the agent ------------------------------------------------------------------

    async def to_agent(self, incoming: Incoming, stop: asyncio.Event) -> None:
        if incoming.action in (
            Action.COMMAND,
            Action.UNKNOWN_COMMAND,
        ) and await self.local_command(incoming):
            return
        if incoming.action is Action.BUTTON and incoming.data == CANCEL_ALL:
            await self.cancel_queued(incoming)
            return
        # A message shows "typing…" from the moment it is taken in (downloads, a busy
        # agent) until its answer is shown; follow releases it.
        held = incoming.action is Action.MESSAGE
        if held:
            self.typing.hold(incoming.room_id)
        task = await agentlink.start_turn(
            self.socket,
            self.request_for(incoming),
            stop,
            agent=self.name,
            follow=lambda exchange, first: self.follow(incoming, exchange, first, typing=held),
            tasks=self.tasks,
            not_followed=(lambda: self.typing.release(incoming.room_id)) if held else None,
        )
        if task is not None and incoming.action is not Action.ABORT:
            turns = self.room_turns.setdefault(incoming.room_id, set())
            turns.add(task)
            task.add_done_callback(turns.discard)

    async def turns_shown(self, room: str) -> None:
        """Wait (a little) until the answers being shown in ``room`` are complete: the
        text a !stop cut short comes before the answer to the !stop."""
        running = [t for t in self.room_turns.get(room, ()) if t is not asyncio.current_task()]
        if running:
            await asyncio.wait(running, timeout=STOP_ORDER_WAIT)

    async def request_for(self, incoming: Incoming) -> Request | None:
        """The request for ``incoming``; None for a message left with nothing to send
        (its only attachments could not be received: the user was told)."""
        user = protocol.User(id=incoming.sender, name=incoming.sender)
        common: dict[str, Any] = {
            "id": new_request_id(),
            "session": incoming.session,
            "user": user,
            "message_id": incoming.event_id,
            "chat_is_private": incoming.private,
        }
        if incoming.action is Action.ABORT:
            # The words go along: with nothing to stop, the agent takes them as a message.
            return Request(
                type=RequestType.ABORT,
                mode=protocol.AbortMode(incoming.mode),
                text=incoming.text,
                want_ack=True,
                **common,
            )
        if incoming.action is Action.BUTTON:
            return Request(type=RequestType.BUTTON, data=incoming.data, want_ack=True, **common)
        if incoming.action is Action.COMMAND:
            return Request(type=RequestType.COMMAND, text=incoming.text, want_ack=True, **common)
        files = await self.download(incoming)
        if not incoming.text and not files:
            return None
        return Request(
            type=RequestType.MESSAGE,
            text=incoming.text,
            quoted=incoming.quoted,
            files=tuple(str(f) for f in files),
            want_ack=True,
            **common,
        )

    async def download(self, incoming: Incoming) -> list[Path]:
        saved: list[Path] = []
        for attachment in incoming.attachments:
            try:
                media.check_size(attachment.size)
                answer = await self.client.download(mxc=attachment.url)
                if not isinstance(answer, nio.MemoryDownloadResponse):
                    raise MatrixError(getattr(answer, "message", "download failed"))
                data = answer.body
                if attachment.encryption is not None:
                    data = media.decrypt(data, attachment.encryption)
                target = media.save_incoming(
                    self.workspace,
                    datetime.now(UTC),
                    attachment.name,
                    data,
                    fallback=f"{attachment.kind}-{len(saved) + 1}",
                )
                if attachment.kind == "image" or attachment.mime_type.startswith("image/"):
                    target = await asyncio.to_thread(media.process_image, target, self.config.image)
                saved.append(target)
            except (DuctorError, *NETWORK_ERRORS) as exc:
                log.warning(
                    "could not save a %s from %s: %s", attachment.kind, incoming.room_id, exc
                )
                with contextlib.suppress(DuctorError, *NETWORK_ERRORS):
                    await self.send_html(
                        incoming.room_id,
                        *render(f"Could not receive that {attachment.kind}: {exc}")[0],
                    )
        return saved

    # -- following a request's events -----------------------------------------------------

    async def follow(
        self, incoming: Incoming, exchange: AsyncExchange, first: Event, *, typing: bool = False
    ) -> None:
        """Show the events of ``exchange``; ``typing``: the room's typing notice was held
        for this message when it came in, and is released here."""
        try:
            async with exchange:
                await self._follow(incoming, exchange, first)
        except asyncio.CancelledError:
            raise
        except protocol.AgentDisconnected as exc:  # handled: the answer takes the outbox
            log.warning("the agent went away while answering in %s: %s", incoming.room_id, exc)
        except Exception:
            log.exception("showing the answer in %s failed", incoming.room_id)
        finally:
            if typing:
                self.typing.release(incoming.room_id)
            if typing or not first.is_terminal:
                await self.typing_done(incoming.room_id)

    async def typing_done(self, room: str) -> None:
        """End the typing notice once nothing in ``room`` holds it (not while stopping)."""
        current = asyncio.current_task()
        if self.typing.holders(room) or (current is not None and current.cancelling()):
            return
        with contextlib.suppress(*NETWORK_ERRORS):
            await self.client.room_typing(room, False)

    async def _follow(self, incoming: Incoming, exchange: AsyncExchange, first: Event) -> None:
        room = incoming.room_id
        replied = False

        async def send(body: str, html: str) -> str:
            nonlocal replied
            reply_to = incoming.event_id if not replied else None
            replied = True
            return await self.send_html(room, body, html, reply_to=reply_to, thread=incoming.thread)

        streaming = self.config.streaming
        stream = SegmentStream(
            send,
            SegmentOptions(
                enabled=streaming.enabled,
                technical_footer=self.config.scene.technical_footer,
                encrypted=self.crypto.is_encrypted(room),
            ),
        )
        if first.is_terminal:
            if incoming.action is Action.ABORT:
                await self.turns_shown(room)
            await self.show_final(incoming, stream, first)
            await self.ack(exchange, first)
            return
        await self.mark_seen(incoming)
        self.typing.hold(room)
        typing = True
        entry = ""  # this message's place in the agent's queue, while it waits
        try:
            event: Event | None = first
            while event is not None:
                if event.type is EventType.FINAL:
                    if typing:
                        self.typing.release(room)
                        typing = False
                    await self.show_final(incoming, stream, event)
                    await self.ack(exchange, event)
                elif event.type is EventType.ERROR:
                    if entry and event.get_str("kind") in ("discarded", "cancelled"):
                        # The !stop or the cancel press answers for itself.
                        self.queue_notices.done(room, entry)
                        entry = ""
                    else:
                        await stream.fail(event)
                elif event.type is EventType.QUEUED:
                    entry = event.get_str("entry")
                    words = event.get_str("text")
                    await self.queue_notices.queued(room, incoming.event_id, entry, words)
                elif event.type is EventType.ACCEPTED:
                    self.queue_notices.done(room, entry)
                    entry = ""
                else:
                    await stream.on_event(event)
                event = await exchange.next_event()
        finally:
            if typing:
                self.typing.release(room)

    # -- the queue notice (queuenotice.py) ---------------------------------------------------

    async def send_queue_notice(self, room: str, body: str, html: str, reply_to: str) -> str:
        return await self.send_html(room, body, html, reply_to=reply_to, notice=True)

    async def edit_notice(self, room: str, event_id: str, body: str, html: str) -> None:
        new = {"msgtype": "m.notice", "body": body}
        new |= {"format": "org.matrix.custom.html", "formatted_body": html}
        content = {
            **{k: f"* {v}" if k in ("body", "formatted_body") else v for k, v in new.items()},
            "m.new_content": new,
            "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
        }
        await self.send_event(room, "m.room.message", content)

    async def offer_cancel(self, room: str, event_id: str) -> None:
        """The notice's one button (a reaction only: a typed 1 is for an answer's own)."""
        await self.offer_buttons(room, event_id, [("Cancel", CANCEL_ALL)], typed=False)

    async def cancel_queued(self, incoming: Incoming) -> None:
        """The queue notice's 1️⃣: every message still waiting in the room is cancelled."""
        cancelled = 0
        for entry in self.queue_notices.waiting(incoming.room_id):
            request = Request(
                type=RequestType.CANCEL,
                id=new_request_id(),
                session=incoming.session,
                user=protocol.User(id=incoming.sender, name=incoming.sender),
                entry=entry,
            )
            try:
                async with await open_exchange(self.socket, request) as exchange:
                    answer = await exchange.next_event()
            except (DuctorError, OSError, ConnectionError) as exc:
                log.warning("could not cancel a queued message in %s: %s", incoming.room_id, exc)
                continue
            if answer is not None and answer.type is EventType.FINAL:
                cancelled += 1
        if cancelled:
            text = (
                "[Message cancelled.]" if cancelled == 1 else f"[{cancelled} messages cancelled.]"
            )
        else:
            text = "Nothing is waiting any more."
        with contextlib.suppress(DuctorError, *NETWORK_ERRORS):
            await self.send_markdown(incoming.room_id, text)

    async def redact(self, room: str, event_id: str) -> None:
        if not event_id:
            return
        with contextlib.suppress(*NETWORK_ERRORS):
            answer = await self.client.room_redact(room, event_id)
            if isinstance(answer, nio.RoomRedactError):
                log.info("could not remove %s in %s: %s", event_id, room, answer.message)

    async def show_final(self, incoming: Incoming, stream: SegmentStream, final: Event) -> None:
        if final.type is EventType.ERROR:
            await stream.fail(final)
            return
        buttons = buttons_of(final)
        last = await stream.finish(final, buttons)
        if buttons and last:
            await self.offer_buttons(incoming.room_id, last, buttons)
        for path in final.get_strings("files"):
            await self.send_file_or_note(incoming.room_id, Path(path), thread=incoming.thread)

    async def offer_buttons(
        self, room: str, event_id: str, buttons: list[Button], *, typed: bool = True
    ) -> None:
        data = [d for _, d in buttons]
        self.buttons.offer(room, event_id, data, typed=typed)
        for index in range(len(data)):
            relation = {
                "rel_type": "m.annotation",
                "event_id": event_id,
                "key": NUMBER_EMOJIS[index],
            }
            with contextlib.suppress(DuctorError, *NETWORK_ERRORS):
                await self.send_event(room, "m.reaction", {"m.relates_to": relation})

    async def ack(self, exchange: AsyncExchange, event: Event) -> None:
        await agentlink.ack(exchange, event)

    async def mark_seen(self, incoming: Incoming) -> None:
        if not self.config.scene.seen_reaction or not incoming.event_id:
            return
        with contextlib.suppress(*NETWORK_ERRORS):
            await self.client.room_read_markers(
                incoming.room_id, incoming.event_id, incoming.event_id
            )

    async def send_typing(self, room: str) -> None:
        """One typing notice in ``room``; :class:`Typing` repeats it while held."""
        await self.client.room_typing(room, True, TYPING_TIMEOUT_MS)

    # -- sending ---------------------------------------------------------------------------

    async def send_event(self, room: str, event_type: str, content: dict[str, Any]) -> str:
        answer = await self.crypto.send(room, event_type, content)
        if isinstance(answer, nio.RoomSendError):
            error = TooLarge if answer.status_code == "M_TOO_LARGE" else MatrixError
            raise error(f"{answer.message} ({answer.status_code})")
        _remember(self.bot_events, answer.event_id)
        return str(answer.event_id)

    async def send_html(
        self,
        room: str,
        body: str,
        html: str,
        *,
        reply_to: str | None = None,
        notice: bool = False,
        thread: str = "",
    ) -> str:
        """Send one message; ``thread`` (its root's event id) puts it into that thread,
        where a message without ``reply_to`` falls back to replying to the root."""
        content: dict[str, Any] = {
            "msgtype": "m.notice" if notice else "m.text",
            "body": body,
            "format": "org.matrix.custom.html",
            "formatted_body": html,
        }
        if thread:
            content["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": thread,
                "is_falling_back": not reply_to,
                "m.in_reply_to": {"event_id": reply_to or thread},
            }
        elif reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        return await self.send_event(room, "m.room.message", content)

    async def send_markdown(self, room: str, markdown: str, *, thread: str = "") -> list[str]:
        pieces = render(markdown, encrypted=self.crypto.is_encrypted(room))
        return [await self.send_html(room, body, html, thread=thread) for body, html in pieces]

    async def send_file(self, room: str, path: Path, *, thread: str = "") -> str:
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        size = path.stat().st_size
        media.check_upload_size(size)
        data = path.read_bytes()
        encrypted = self.crypto.is_encrypted(room)
        file: dict[str, Any] = {}
        if encrypted:  # the homeserver sees only ciphertext; the key goes in the event
            data, file = media.encrypt(data, mime)
        answer, _ = await self.client.upload(
            io.BytesIO(data),
            content_type="application/octet-stream" if encrypted else mime,
            filename=path.name,
            filesize=len(data),
        )
        if not isinstance(answer, nio.UploadResponse):
            raise MatrixError(f"upload of {path.name} failed: {answer.message}")
        msgtype = media.msgtype_for(mime)
        content: dict[str, Any] = {
            "msgtype": msgtype,
            "body": path.name,
            "filename": path.name,
            "info": {"mimetype": mime, "size": size},
        }
        if encrypted:
            content["file"] = {**file, "url": answer.content_uri}
        else:
            content["url"] = answer.content_uri
        if thread:
            content["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": thread,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": thread},
            }
        return await self.send_event(room, "m.room.message", content)

    async def send_file_or_note(self, room: str, path: Path, *, thread: str = "") -> str:
        """Send ``path``, or a note saying why it could not be (never raises)."""
        problem = ""
        if not self.file_allowed(path):
            problem = f"Could not send {path.name}: it is not allowed."
        else:
            try:
                return await self.send_file(room, path, thread=thread)
            except (DuctorError, *NETWORK_ERRORS) as exc:
                log.warning("could not send %s to %s: %s", path, room, exc)
                problem = f"Could not send {path.name}: {exc}"
        with contextlib.suppress(DuctorError, *NETWORK_ERRORS):
            return (await self.send_markdown(room, f"_{problem}_", thread=thread))[-1]
        return ""

    def direct_room(self, user_id: str) -> str | None:
        """A room the bot shares with ``user_id`` alone, if any."""
        for room_id, room in self.client.rooms.items():
            if room.member_count <= 2 and user_id in room.users:
                return str(room_id)
        return None
