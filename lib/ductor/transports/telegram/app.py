"""``ductor-telegram --name NAME``: the Telegram transport of one agent.

Long polling with our own loop over python-telegram-bot's ``Bot``, so that the update
offset is committed only after the agent has accepted the message durably (it answered
``accepted`` or ``queued``, which it does once the turn is on disk): a message that
arrives while the agent, the transport or the machine is down is answered after the
restart, never dropped. Updates are handed over chat by chat side by side, in order
within a chat, stop words in a lane of their own (transports/intake.py): one chat's wait
holds up no other chat, and the offset stops at the lowest update not yet handed over.
No single update can stop the loop: one whose handling fails is logged with its id, the
user gets a short note, and the offset moves past it. Each accepted message is then
followed in its own task: its
events become one Telegram message edited in place (stream.py), and the final answer is
acknowledged to the agent only after it is shown, so a crash in between re-delivers it
from the outbox. The outbox drain (outbox.py) delivers what comes later (cron results,
answers whose client went away).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import telegram
from telegram.request import HTTPXRequest

from ductor import atomic, config, projects, protocol, sandbox
from ductor.errors import ConfigError, DuctorError
from ductor.notify import Notifier
from ductor.paths import Paths
from ductor.protocol import Event, EventType, Request, RequestType, new_request_id
from ductor.protocol.aclient import AsyncExchange
from ductor.spool import Spool
from ductor.transports import agentlink
from ductor.transports.intake import Intake
from ductor.transports.listen import TurnStream, listen
from ductor.transports.telegram import media
from ductor.transports.telegram.answer import LongAnswers, summarise
from ductor.transports.telegram.chats import ChatActivity, parse_leave_args
from ductor.transports.telegram.formatting import markdown_to_html
from ductor.transports.telegram.inflight import InflightTurns
from ductor.transports.telegram.ingress import Action, Incoming, classify
from ductor.transports.telegram.join import post_join_notification
from ductor.transports.telegram.outbox import OutboxDrain
from ductor.transports.telegram.reactions import SEEN, THINKING, StatusReaction
from ductor.transports.telegram.sender import BotSender, Rows, SendRefused
from ductor.transports.telegram.stream import StreamEditor, StreamOptions
from ductor.transports.telegram.topics import TopicNames
from ductor.transports.typingloop import Typing

log = logging.getLogger("ductor.telegram")

POLL_TIMEOUT = 25  # seconds a getUpdates long poll waits on Telegram's side
# While an update is still being handed over, Telegram keeps sending it back (the offset
# cannot pass it yet): ask again without a long poll, first after REPOLL_EVERY so new
# updates (a /stop) still come in at once, then less and less often while nothing new
# arrives (the agent is down: no need to ask Telegram several times a second for hours).
REPOLL_EVERY = 0.3
REPOLL_AT_MOST_EVERY = 3.0
TYPING_EVERY = 4.0  # Telegram shows "typing…" for about 5 s
AUDIT_EVERY = 24 * 3600.0  # seconds between audits of the groups the bot is in
MENU = (
    ("new", "Fresh session with the default model"),
    ("reset", "Fresh session with the current model"),
    ("stop", "Stop the running answer"),
    ("interrupt", "Interrupt the running answer"),
    ("model", "Choose the model"),
    ("effort", "Choose the reasoning effort"),
    ("tasks", "Background tasks of this chat"),
    ("status", "Session and agent status"),
    ("memory", "Show the agent's memory"),
    ("showfiles", "Browse and get the workspace's files"),
    ("diagnose", "Versions, config and recent logs"),
    ("info", "About ductor"),
    ("help", "All commands"),
)
ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]


@dataclass
class Offset:
    """The next update to ask Telegram for, persisted after every handled update."""

    file: Path
    value: int = 0

    def load(self) -> Offset:
        with contextlib.suppress(OSError, ValueError, DuctorError):
            data = atomic.read_json(self.file)
            if isinstance(data, dict) and isinstance(data.get("offset"), int):
                self.value = data["offset"]
        return self

    def commit(self, value: int) -> None:
        """Every update below ``value`` is safe with the agent (or done with)."""
        if value != self.value:
            self.value = value
            atomic.write_json(self.file, {"offset": self.value}, mode=0o600)


@dataclass(frozen=True)
class Received:
    """One update on its way in: its id and what :func:`classify` made of it."""

    update_id: int
    incoming: Incoming

    def lane(self) -> str:
        """Updates of one chat (topic) go in order; stop words overtake them."""
        key = self.incoming.session or str(self.incoming.chat_id)
        return f"{key}!" if self.incoming.action is Action.ABORT else key

    def __str__(self) -> str:
        return f"update {self.update_id} ({self.incoming.action} in chat {self.incoming.chat_id})"


class TelegramTransport:
    def __init__(
        self, name: str, paths: Paths, agent_config: config.AgentConfig, token: str
    ) -> None:
        self.name = name
        self.paths = paths
        self.config = agent_config
        base = agent_config.telegram.api_base_url.rstrip("/")
        self.bot = telegram.Bot(
            token,
            base_url=f"{base}/bot",
            base_file_url=f"{base}/file/bot",
            request=HTTPXRequest(connection_pool_size=32, read_timeout=30, write_timeout=60),
            get_updates_request=HTTPXRequest(read_timeout=POLL_TIMEOUT + 15),
        )
        self.sender = BotSender(self.bot)
        state = paths.agent_state(name) / "telegram"
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.offset = Offset(state / "offset.json").load()
        self.chats = ChatActivity(state)
        self.inflight = InflightTurns(state)  # what the chat shows of unfinished turns
        self.topics = TopicNames(state)  # learned names survive a restart
        self.socket = paths.agent_socket(name)
        self.workspace = paths.workspace(name)
        self.tasks: set[asyncio.Task[None]] = set()
        self.typing: Typing[tuple[int, int | None]] = Typing(self.send_typing, TYPING_EVERY)
        self.recent: OrderedDict[tuple[int, int | str], None] = OrderedDict()  # dedupe
        self.notifier = Notifier()
        self.username = ""
        self.bot_id = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        delay = 1.0
        while True:
            try:
                await self.bot.initialize()
                break
            except telegram.error.InvalidToken as exc:
                raise ConfigError(
                    f"Telegram refused the bot token ({exc}); store the right one with"
                    f" `ductor init` or in {self.paths.agent_credentials(self.name)}"
                ) from None
            except telegram.error.NetworkError as exc:
                log.warning("cannot reach Telegram (%s); retrying in %.0f s", exc, delay)
                self.notifier.status(f"cannot reach Telegram ({exc}); retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60)
        me = self.bot.bot
        self.username, self.bot_id = me.username or "", me.id
        with contextlib.suppress(telegram.error.TelegramError):
            await self.bot.delete_webhook()
        with contextlib.suppress(telegram.error.TelegramError):
            await self.bot.set_my_commands([telegram.BotCommand(c, d) for c, d in MENU])
        await self.audit_groups()

    async def audit_groups(self) -> None:
        for chat_id in self.chats.audit(self.config.telegram.allowed_group_ids):
            log.warning("leaving group %s: it is no longer in allowed_group_ids", chat_id)
            with contextlib.suppress(telegram.error.TelegramError):
                await self.bot.leave_chat(chat_id)
            self.chats.record(chat_id, title="", chat_type="group", status="auto_left")

    async def audit_daily(self, stop: asyncio.Event) -> None:
        """Leave groups dropped from the allowlist once a day, besides start and reload."""
        await agentlink.repeat(stop, AUDIT_EVERY, self.audit_groups, "the daily group audit")

    def file_allowed(self, path: Path) -> bool:
        return agentlink.file_allowed(
            path, paths=self.paths, workspace=self.workspace, file_access=self.config.file_access
        )

    def status_line(self) -> str:
        return f"@{self.username}: {len(self.tasks)} chat turn(s) in flight"

    async def run(self, stop: asyncio.Event) -> None:
        # Ready once config and token are loaded: reaching Telegram may take a while (no
        # network yet at boot) and must not hold up `systemctl start ductor@NAME.target`.
        # STATUS= says what the transport waits for meanwhile.
        self.notifier.ready("connecting to Telegram")
        watchdog = asyncio.create_task(self.notifier.watchdog_loop())
        try:
            await self.start()
        except BaseException:
            watchdog.cancel()
            raise
        spool = Spool(self.paths.spool(self.name), served=self.config.outboxes)
        drain = OutboxDrain(
            spool.outbox("tg"),
            self.sender,
            allowed_user_ids=self.config.telegram.allowed_user_ids,
            main_chat=(self.config.telegram.allowed_user_ids or (None,))[0],
            # A lambda, not the bound method: a reload replaces self.config.
            chat_allowed=lambda chat: self.config.telegram.allows_chat(chat),  # noqa: PLW0108
            file_allowed=self.file_allowed,
            inflight=self.inflight,
            long_answers=self.long_answers(),
        )
        drain.spool = spool
        await self.clear_left_reactions()
        self.notifier.status(self.status_line())
        log.info("polling as @%s for agent %s", self.username, self.name)
        background = [
            asyncio.create_task(drain.run(stop)),
            watchdog,
            asyncio.create_task(self.audit_daily(stop)),
            asyncio.create_task(
                listen(self.socket, "tg", stop, self.show_injected, tasks=self.tasks)
            ),
        ]
        try:
            await self.poll(stop)
        finally:
            for task in background:
                task.cancel()
            for task in list(self.tasks):
                task.cancel()
            self.typing.close()
            with contextlib.suppress(Exception):
                await self.bot.shutdown()

    async def clear_left_reactions(self) -> None:
        """Remove the status reactions a previous run left on the messages of turns it
        did not finish (their answers come through the outbox). A seen reaction
        (``scene.status_reaction`` off) is meant to stay."""
        if not self.config.scene.status_reaction:
            return
        for left in self.inflight.all():
            if left.user_message is not None:
                with contextlib.suppress(DuctorError):
                    await self.sender.react(left.chat_id, left.user_message, None)

    def long_answers(self) -> LongAnswers:
        directory = self.paths.agent_state(self.name) / "telegram" / "tmp"
        return LongAnswers(self.config.streaming.max_messages, directory)

    async def poll(self, stop: asyncio.Event) -> None:
        async def handle(received: Received) -> bool:
            await self.handle(received, stop)
            return not stop.is_set()  # stopping: it may not have reached the agent

        def commit() -> None:
            self.offset.commit(intake.commit_point(self.offset.value))

        intake = Intake(handle, on_failure=self.report_failure, on_done=commit)
        try:
            await self._poll(intake, stop)
        finally:
            await intake.close()
            commit()

    async def _poll(self, intake: Intake[Received], stop: asyncio.Event) -> None:
        delay = 1.0
        repoll = REPOLL_EVERY
        while not stop.is_set():
            self.offset.commit(intake.commit_point(self.offset.value))
            intake.forget_below(self.offset.value)
            busy = intake.busy
            try:
                updates = await self.bot.get_updates(
                    offset=self.offset.value or None,
                    timeout=0 if busy else POLL_TIMEOUT,
                    allowed_updates=ALLOWED_UPDATES,
                )
                delay = 1.0
            except telegram.error.Conflict:
                log.error("another process polls this bot's updates; retrying in 10 s")
                await asyncio.sleep(10)
                continue
            except telegram.error.RetryAfter as exc:
                await asyncio.sleep(_seconds(exc.retry_after))
                continue
            except telegram.error.NetworkError as exc:
                log.warning("getUpdates failed (%s); retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60)
                continue
            fresh = [update for update in updates if not intake.seen(update.update_id)]
            for update in fresh:
                received = self.receive(update)
                if received is None:
                    intake.skip(update.update_id)
                else:
                    intake.submit(received.lane(), update.update_id, received)
            if busy and not fresh:
                await intake.progressed(repoll)
                repoll = min(repoll * 2, REPOLL_AT_MOST_EVERY)
            else:
                repoll = REPOLL_EVERY
            self.notifier.status(self.status_line())

    # -- one update ----------------------------------------------------------------------

    def receive(self, update: telegram.Update) -> Received | None:
        """What ``update`` is, decided without the network; None for one that cannot be
        read at all (logged; the offset moves past it)."""
        try:
            incoming = classify(
                update, bot_username=self.username, bot_id=self.bot_id, config=self.config.telegram
            )
        except Exception:
            log.exception("cannot read update %s; skipping it", update.update_id)
            return None
        return Received(update.update_id, incoming)

    async def report_failure(self, received: Received, error: Exception) -> None:
        """Handling ``received`` failed (logged already): one short note to the user."""
        incoming = received.incoming
        if incoming.action not in (Action.MESSAGE, Action.COMMAND, Action.BUTTON, Action.ABORT):
            return
        if incoming.action is Action.BUTTON:
            await self.answer_callback(incoming)
        await self.sender.send_text(
            incoming.chat_id,
            "<i>Sorry, that message could not be handled, so it was skipped"
            f" ({_escape(type(error).__name__)}; details in the transport's log).</i>",
            thread_id=incoming.thread_id,
            reply_to=incoming.message_id or None,
        )

    async def handle(self, received: Received, stop: asyncio.Event) -> None:
        """Return only once the update is safe: refused, handled, or accepted by the agent."""
        incoming, update_id = received.incoming, received.update_id
        # A button press names the message it is under, and one message can be pressed
        # more than once (a selector's next level): presses are told apart by query id.
        key: tuple[int, int | str] = (incoming.chat_id, incoming.message_id)
        if incoming.action is Action.BUTTON:
            key = (incoming.chat_id, f"query:{incoming.callback_id}")
        if incoming.message_id and key in self.recent:
            return
        self.recent[key] = None
        while len(self.recent) > 500:
            self.recent.popitem(last=False)
        action = incoming.action
        if action is Action.IGNORE:
            log.debug("ignored update %s: %s", update_id, incoming.reason)
        elif action is Action.REFUSE:
            log.warning("refused update %s: %s", update_id, incoming.reason)
            if incoming.chat_type != "private":
                self.chats.record(
                    incoming.chat_id,
                    title=incoming.chat_title,
                    chat_type=incoming.chat_type,
                    status="rejected",
                )
        elif action is Action.LEAVE_GROUP:
            await self.leave_unknown(incoming)
        elif action is Action.TOPIC_NAME:
            if incoming.thread_id is not None:
                self.topics.learn(incoming.chat_id, incoming.thread_id, incoming.topic_name)
        elif action is Action.JOINED:
            self.chats.record(
                incoming.chat_id,
                title=incoming.chat_title,
                chat_type=incoming.chat_type,
                status="active",
            )
            await post_join_notification(self.bot, self.sender, self.workspace, incoming.chat_id)
        else:
            if incoming.chat_type != "private":
                self.chats.record(
                    incoming.chat_id,
                    title=incoming.chat_title,
                    chat_type=incoming.chat_type,
                    status="active",
                )
            await self.to_agent(incoming, stop)

    async def leave_unknown(self, incoming: Incoming) -> None:
        log.warning(
            "group %s (%s) is not in allowed_group_ids: leaving it",
            incoming.chat_id,
            incoming.chat_title,
        )
        with contextlib.suppress(DuctorError):
            await self.sender.send_text(
                incoming.chat_id,
                "This group is not authorized to use this bot. Leaving.",
                thread_id=incoming.thread_id,
            )
        with contextlib.suppress(telegram.error.TelegramError):
            await self.bot.leave_chat(incoming.chat_id)
        self.chats.record(
            incoming.chat_id,
            title=incoming.chat_title,
            chat_type=incoming.chat_type,
            status="auto_left",
        )

    async def to_agent(self, incoming: Incoming, stop: asyncio.Event) -> None:
        if incoming.action is Action.COMMAND and await self.local_command(incoming):
            return
        if incoming.action is Action.BUTTON:
            await self.answer_callback(incoming)
        # A message shows "typing…" from the moment it is taken in, through downloads and
        # while the agent is busy, until its answer is shown (follow releases it).
        typing = (incoming.chat_id, incoming.thread_id)
        held = incoming.action is Action.MESSAGE
        if held:
            self.typing.hold(typing)
        await agentlink.start_turn(
            self.socket,
            self.request_for(incoming),
            stop,
            agent=self.name,
            follow=lambda exchange, first: self.follow(incoming, exchange, first, typing=held),
            tasks=self.tasks,
            not_followed=(lambda: self.typing.release(typing)) if held else None,
        )

    async def request_for(self, incoming: Incoming) -> Request | None:
        """The request for ``incoming``; None for a message left with nothing to send
        (its only attachments could not be received: the user was told)."""
        user = protocol.User(id=str(incoming.user_id), name=incoming.user_name)
        common = {
            "id": new_request_id(),
            "session": incoming.session,
            "user": user,
            "message_id": str(incoming.message_id) if incoming.message_id else "",
            "chat_is_private": incoming.chat_is_private,
            "topic_name": self.topics.known(incoming.chat_id, incoming.thread_id),
        }
        if incoming.action is Action.ABORT:
            # The words go along: with nothing to stop, the agent takes them as a message.
            return Request(
                type=RequestType.ABORT,
                mode=protocol.AbortMode(incoming.mode),
                text=incoming.text,
                want_ack=True,
                **common,  # type: ignore[arg-type]
            )
        if incoming.action is Action.BUTTON:
            return Request(type=RequestType.BUTTON, data=incoming.data, want_ack=True, **common)  # type: ignore[arg-type]
        if incoming.action is Action.COMMAND:
            return Request(type=RequestType.COMMAND, text=incoming.text, want_ack=True, **common)  # type: ignore[arg-type]
        files = await self.download(incoming)
        if not incoming.text and not files:
            return None
        return Request(
            type=RequestType.MESSAGE,
            text=incoming.text,
            quoted=incoming.quoted,
            files=tuple(str(f) for f in files),
            want_ack=True,
            **common,  # type: ignore[arg-type]
        )

    async def download(self, incoming: Incoming) -> list[Path]:
        saved: list[Path] = []
        for attachment in incoming.attachments:
            try:
                media.check_size(attachment.size)
                file = await self.bot.get_file(attachment.file_id)
                directory = media.incoming_dir(self.workspace, datetime.now(UTC))
                fallback = f"{attachment.kind}-{incoming.message_id}"
                suffix = Path(file.file_path or "").suffix
                name = media.safe_name(attachment.file_name or fallback + suffix, fallback=fallback)
                target = media.unique_path(directory, name)
                await file.download_to_drive(target)
                if attachment.kind == "photo" or (attachment.mime_type or "").startswith("image/"):
                    target = await asyncio.to_thread(media.process_image, target, self.config.image)
                saved.append(target)
                self.index_file(target, attachment.kind)
            except (DuctorError, telegram.error.TelegramError, OSError) as exc:
                log.warning(
                    "could not save a %s from chat %s: %s", attachment.kind, incoming.chat_id, exc
                )
                with contextlib.suppress(DuctorError):
                    await self.sender.send_text(
                        incoming.chat_id,
                        f"Could not receive that {attachment.kind}: {exc}",
                        thread_id=incoming.thread_id,
                        reply_to=incoming.message_id or None,
                    )
        return saved

    def index_file(self, path: Path, kind: str) -> None:
        """List a received file in ``telegram_files/_index.json``, which the agent reads;
        the file itself is there already, so a failure here only costs the listing."""
        try:
            media.update_index(media.files_root(self.workspace), path, kind, path.stat().st_size)
        except (OSError, ValueError) as exc:
            log.warning("could not list %s in the files index: %s", path, exc)

    def project_line(self, incoming: Incoming) -> str:
        """``/where`` in a topic that is a project: the folder the CLI works in there."""
        name = self.topics.known(incoming.chat_id, incoming.thread_id) or ""
        home = sandbox.account_home(self.paths)  # as the agent expands ~
        root = projects.project_root(self.config.project_roots, incoming.session, name, home)
        if root is None:
            return ""
        missing = "" if root.exists else " (missing)"
        return f"\n\n**This topic works in** {root.path}{missing}"

    async def answer_callback(self, incoming: Incoming) -> None:
        with contextlib.suppress(telegram.error.TelegramError):
            await self.bot.answer_callback_query(incoming.callback_id)

    async def local_command(self, incoming: Incoming) -> bool:
        """Telegram-only commands, answered here: /where and /leave."""
        word = incoming.text.split(maxsplit=1)[0].lower() if incoming.text else ""
        if word == "/where":
            text = self.chats.format_where() + self.project_line(incoming)
        elif word == "/leave":
            try:
                group = parse_leave_args(incoming.text)
            except ValueError as exc:
                text = str(exc)
            else:
                try:
                    await self.bot.leave_chat(group)
                except telegram.error.TelegramError as exc:
                    text = f"Could not leave {group}: {exc}"
                else:
                    self.chats.record(group, title="", chat_type="group", status="left")
                    text = f"Left {group}."
        else:
            return False
        with contextlib.suppress(DuctorError):
            await self.sender.send_text(
                incoming.chat_id,
                markdown_to_html(text),
                thread_id=incoming.thread_id,
                reply_to=incoming.message_id or None,
            )
        return True

    # -- following a request's events ----------------------------------------------------

    async def follow(
        self, incoming: Incoming, exchange: AsyncExchange, first: Event, *, typing: bool = False
    ) -> None:
        """Show the events of ``exchange``; ``typing``: the chat's typing indicator was
        held for this message when it came in, and is released here."""
        try:
            async with exchange:
                await self._follow(incoming, exchange, first)
        except asyncio.CancelledError:
            raise
        except protocol.AgentDisconnected as exc:  # handled: the answer takes the outbox
            log.warning("the agent went away while answering in chat %s: %s", incoming.chat_id, exc)
        except Exception:
            log.exception("showing the answer in chat %s failed", incoming.chat_id)
        finally:
            if typing:
                self.typing.release((incoming.chat_id, incoming.thread_id))

    async def show_injected(self, first: Event, stream: TurnStream) -> None:
        """A turn the agent started itself (a task's result injected into a chat's
        session), streamed into that chat like the answer to a message."""
        try:
            key = protocol.parse_session_key(first.get_str("session"))
            chat, thread = int(key.chat), int(key.topic) if key.topic else None
        except (protocol.ProtocolError, ValueError):
            log.warning("an injected turn for %r is not a Telegram chat", first.get_str("session"))
            return
        if not self.config.telegram.allows_chat(chat):
            log.warning("not showing an injected turn in chat %s: not allowed", chat)
            return  # never acknowledged: the outbox drain refuses it the same way
        incoming = Incoming(Action.MESSAGE, session=key.key, chat_id=chat, thread_id=thread)
        await self.follow(incoming, stream, first)

    async def _follow(self, incoming: Incoming, exchange: AsyncExchange, first: Event) -> None:
        chat, thread = incoming.chat_id, incoming.thread_id
        reply_to = incoming.message_id or None
        if first.is_terminal:
            await self.show_terminal(incoming, first, selector=incoming.action is Action.BUTTON)
            await self.send_files(incoming, first)  # /showfiles sends a file this way
            await self.ack(exchange, first)
            return
        if incoming.action is Action.BUTTON:
            await self.mark_choice(incoming)
        options = StreamOptions.from_config(self.config.streaming, self.config.scene)
        # Kept on disk until the answer is shown, so that a restart can finish the turn.
        turn = first.get_str("turn") or first.get_str("entry")
        indicator: int | None = None

        def in_chat(ids: list[int]) -> None:
            self.inflight.messages(turn, [*ids, *([indicator] if indicator else [])])

        if turn:
            self.inflight.begin(turn, chat, thread_id=thread, user_message=reply_to)
        editor = StreamEditor(
            self.sender,
            chat,
            thread_id=thread,
            reply_to=reply_to,
            options=options,
            on_messages=in_chat if turn else None,
        )
        reaction = await self.react_on_receipt(incoming)
        self.typing.hold((chat, thread))
        try:
            event: Event | None = first
            while event is not None:
                if reaction is not None:
                    reaction.on_event(event)
                if event.type is EventType.QUEUED:
                    indicator = await self.show_queued(incoming, event)
                    in_chat(editor.in_chat)
                elif event.type is EventType.ACCEPTED:
                    if reaction is not None:
                        reaction.want(THINKING)
                    await self.drop_indicator(chat, indicator)
                    indicator = None
                    in_chat(editor.in_chat)
                elif event.type is EventType.FINAL:
                    await self.show_final(incoming, editor, event)
                    await self.send_files(incoming, event)
                    self.inflight.shown(turn, editor.in_chat)
                    await self.ack(exchange, event)
                    self.inflight.end(turn)
                elif event.type is EventType.ERROR:
                    if indicator is not None and event.get_str("kind") in (
                        "discarded",
                        "cancelled",
                    ):
                        word = "discarded" if event.get_str("kind") == "discarded" else "cancelled"
                        with contextlib.suppress(DuctorError):
                            await self.sender.edit_text(
                                chat, indicator, f"<i>[Message {word}.]</i>"
                            )
                    else:
                        await editor.fail(event)
                    self.inflight.end(turn)
                else:
                    await editor.on_event(event)
                event = await exchange.next_event()
        finally:
            self.typing.release((chat, thread))
            if reaction is not None:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    reaction.abandon()  # shutting down: no more calls to Telegram
                else:
                    await reaction.clear()

    async def react_on_receipt(self, incoming: Incoming) -> StatusReaction | None:
        """The status reaction of a user's message (``scene.status_reaction``), or, with
        ``scene.seen_reaction`` instead, a 👀 that stays."""
        scene = self.config.scene
        if incoming.action is not Action.MESSAGE or not incoming.message_id:
            return None
        if scene.status_reaction:
            return StatusReaction(self.sender, incoming.chat_id, incoming.message_id)
        if scene.seen_reaction:
            try:
                await self.sender.react(incoming.chat_id, incoming.message_id, SEEN)
            except DuctorError as exc:
                log.info("no seen reaction in chat %s: %s", incoming.chat_id, exc)
        return None

    async def show_final(self, incoming: Incoming, editor: StreamEditor, final: Event) -> None:
        """The final answer as messages; one longer than ``streaming.max_messages``
        messages as a short summary with the full Markdown attached as a document."""
        streaming = self.config.streaming
        long_answers = self.long_answers()
        if (
            (streaming.append_mode and streaming.enabled)
            or final.get_bool("is_error")
            or not long_answers.too_long(final.text)
        ):
            await editor.finish(final)
            return
        summary = Event(final.type, final.request_id, {**final.data, "text": summarise(final.text)})
        await editor.finish(summary)
        turn = final.get_str("turn") or final.request_id
        sent = await long_answers.send_document(
            self.sender,
            incoming.chat_id,
            final.text,
            name=f"answer-{turn}.md",
            thread_id=incoming.thread_id,
        )
        if sent is None:
            await editor.finish(final)  # the summary becomes the whole answer after all

    async def ack(self, exchange: AsyncExchange, event: Event) -> None:
        await agentlink.ack(exchange, event)

    async def show_terminal(self, incoming: Incoming, event: Event, *, selector: bool) -> None:
        """A command's answer (or an error): one message, edited in place for selectors."""
        buttons: Rows = [[(b.label, b.data) for b in row] for row in event.button_rows()]
        text = event.text or (event.get_str("kind") and f"Error: {event.text}") or "(no answer)"
        html = markdown_to_html(text)
        try:
            if selector and incoming.message_id:
                await self.sender.edit_text(
                    incoming.chat_id, incoming.message_id, html, buttons=buttons or None
                )
            else:
                await self.sender.send_text(
                    incoming.chat_id,
                    html,
                    thread_id=incoming.thread_id,
                    reply_to=incoming.message_id or None,
                    buttons=buttons or None,
                )
        except DuctorError as exc:
            log.warning("could not show a command's answer in chat %s: %s", incoming.chat_id, exc)

    async def mark_choice(self, incoming: Incoming) -> None:
        """A pressed agent button: the choice is shown on its message, the keyboard goes."""
        message = incoming.button_message_html
        if not incoming.message_id or message is None:
            return
        with contextlib.suppress(DuctorError):
            await self.sender.edit_text(
                incoming.chat_id,
                incoming.message_id,
                f"{message}\n\n<i>[USER ANSWER] {_escape(incoming.data)}</i>",
            )

    async def show_queued(self, incoming: Incoming, event: Event) -> int | None:
        entry = event.get_str("entry")
        try:
            return await self.sender.send_text(
                incoming.chat_id,
                "<i>[Message in queue...]</i>",
                thread_id=incoming.thread_id,
                reply_to=incoming.message_id or None,
                buttons=[[("Cancel message", f"mq:{entry}")]],
            )
        except DuctorError:
            return None

    async def drop_indicator(self, chat: int, indicator: int | None) -> None:
        if indicator is not None:
            with contextlib.suppress(DuctorError):
                await self.sender.delete(chat, indicator)

    async def send_files(self, incoming: Incoming, event: Event) -> None:
        for path in event.get_strings("files"):
            file = Path(path)
            if not self.file_allowed(file):
                with contextlib.suppress(DuctorError):
                    await self.sender.send_text(
                        incoming.chat_id,
                        f"<i>Could not send {_escape(file.name)}: it is not allowed.</i>",
                        thread_id=incoming.thread_id,
                    )
                continue
            try:
                if media.is_photo(file):
                    try:
                        await self.sender.send_file(
                            incoming.chat_id, file, thread_id=incoming.thread_id, as_photo=True
                        )
                        continue
                    except SendRefused as exc:  # dimensions or encoding Telegram dislikes
                        log.info("%s refused as a photo (%s); sending a document", file, exc)
                await self.sender.send_file(incoming.chat_id, file, thread_id=incoming.thread_id)
            except DuctorError as exc:
                log.warning("could not send %s to chat %s: %s", file, incoming.chat_id, exc)
                with contextlib.suppress(DuctorError):
                    await self.sender.send_text(
                        incoming.chat_id,
                        f"Could not send {_escape(file.name)}: {_escape(str(exc))}",
                        thread_id=incoming.thread_id,
                    )

    async def send_typing(self, chat: tuple[int, int | None]) -> None:
        """One "typing…" in a chat (topic); :class:`Typing` repeats it while held."""
        await self.sender.chat_action(*chat)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _seconds(value: object) -> float:
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    return float(value)  # type: ignore[arg-type]
