"""The outbox drain: delivers the agent's envelopes (``spool/outbox/mx``) to Matrix.

The same reader loop as the Telegram drain (docs/spool.md): bind ``wake.sock`` before
the first scan, recover, then claim, send, record, finish, and wait for a wake-up, the
next retry or the rescan. Exactly once: an envelope whose delivery is already recorded
is finished without being sent again.

Where an envelope goes: unicast to ``routing.chat_id`` (a room id); a broadcast to the
direct room of every allowed user the bot shares one with; a room the bot is no longer
in goes to the first allowed user's direct room instead, under a note.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ductor.errors import DuctorError
from ductor.spool import Envelope, Kind, Queue
from ductor.transports.drain import DrainLoop, rerouted_reason
from ductor.transports.matrix.richtext import TooLarge

if TYPE_CHECKING:
    from ductor.transports.matrix.app import MatrixTransport

log = logging.getLogger(__name__)

HEADERS = {Kind.CRON: "Cron", Kind.HEARTBEAT: "Heartbeat", Kind.TASK: "Task", Kind.NOTICE: "Notice"}


class TargetGone(DuctorError):
    """No room to deliver an envelope to."""


class MatrixOutbox(DrainLoop):
    def __init__(
        self, queue: Queue, transport: MatrixTransport, *, allowed_users: Sequence[str]
    ) -> None:
        self.queue = queue
        self.transport = transport
        self.allowed_users = list(allowed_users)

    async def _handle(self, envelope: Envelope) -> None:
        if envelope.delivery.delivered:
            log.info("envelope %s was delivered before; not sending it again", envelope.id)
            await asyncio.to_thread(self.queue.finish, envelope)
            return
        if await self.refused(envelope):
            return
        try:
            ids, reason = await self.deliver(envelope)
        except TargetGone as exc:
            log.warning("envelope %s: %s", envelope.id, exc)
            await asyncio.to_thread(self.queue.fail, envelope, str(exc), permanent=True)
            return
        except TooLarge as exc:
            # Sending it again can never work: to bad/ at once, and the user is told.
            log.warning("envelope %s: the homeserver refuses it as too large: %s", envelope.id, exc)
            reason = f"too large for the homeserver: {exc}"
            await asyncio.to_thread(self.queue.reject, envelope, reason)
            with contextlib.suppress(Exception):  # the envelope is safe in bad/
                await self.tell_main_user(
                    f"_A message ({envelope.kind}, {envelope.id}) is too large for Matrix and"
                    " was not delivered; it is kept in the spool's bad/ folder (`ductor outbox"
                    " list`)._"
                )
            return
        except Exception as exc:
            log.warning("envelope %s: delivery failed, will retry: %s", envelope.id, exc)
            await asyncio.to_thread(self.queue.fail, envelope, str(exc) or type(exc).__name__)
            return
        # Message ids are event ids here; the delivery record keeps how many were sent.
        await asyncio.to_thread(
            self.queue.record_delivery, envelope, list(range(len(ids))), fallback_reason=reason
        )
        await asyncio.to_thread(self.queue.finish, envelope)

    def refusal(self, envelope: Envelope) -> str | None:
        routing = envelope.routing
        if routing.broadcast or rerouted_reason(envelope) is not None:
            return None  # allowed users' direct rooms, or the main user's with a note
        room_id = str(routing.chat_id or "")
        transport = self.transport
        room = next((r for r in transport.joined_rooms() if r.room_id == room_id), None)
        if room is None:
            return None  # not a room the bot is in: deliver() gives it to the main user
        allowed_users = transport.config.matrix.allowed_users
        if room.is_served(
            bot_id=transport.bot_id,
            allowed_room_ids=transport.allowed_room_ids,
            allowed_users=allowed_users,
        ) or bool(room.aliases & set(transport.config.matrix.allowed_rooms)):
            return None
        return f"room {room_id} is not in allowed_rooms and not a direct chat with an allowed user"

    async def tell_main_user(self, text: str) -> None:
        main = self.main_room()
        if main is None:
            raise TargetGone("no allowed user has a direct room")
        await self.transport.send_markdown(main, text)

    def main_room(self) -> str | None:
        """The direct room of the first allowed user the bot shares one with."""
        return next((r for r in map(self.transport.direct_room, self.allowed_users) if r), None)

    async def deliver(self, envelope: Envelope) -> tuple[list[str], str | None]:
        routing = envelope.routing
        rooms = self.transport.client.rooms
        if routing.broadcast:
            targets = [r for r in map(self.transport.direct_room, self.allowed_users) if r]
            if not targets:
                raise TargetGone("a broadcast, but no allowed user has a direct room")
            ids: list[str] = []
            for room in targets:
                ids += await self.send(envelope, room)
            return ids, None
        room = str(routing.chat_id or "")
        reason = rerouted_reason(envelope)
        if reason is None:
            if room in rooms:
                return await self.send(envelope, room), None
            reason = f"room {room} is unknown to the bot or was left"
            note = f"_(This was meant for {room}, which I can no longer reach.)_"
        else:
            note = f"_(This was {reason}.)_"
        main = next((r for r in map(self.transport.direct_room, self.allowed_users) if r), None)
        if main is None or main == room:
            raise TargetGone(f"{reason}, and there is no other room to deliver it to")
        log.warning("envelope %s: %s; delivering it to %s", envelope.id, reason, main)
        return await self.send(envelope, main, note=note), reason

    async def send(self, envelope: Envelope, room: str, *, note: str = "") -> list[str]:
        payload = envelope.payload
        parts = [note] if note else []
        label = HEADERS.get(envelope.kind)
        if label and not payload.text.lstrip().startswith("**"):
            origin = envelope.routing.origin.strip()
            parts.append(f"**{label}: {origin}**" if origin else f"**{label}**")
        if payload.text.strip():
            parts.append(payload.text)
        topic = envelope.routing.topic_id
        # A reply for a Matrix thread (its session's topic is the root's event id) goes
        # back into the thread; anything rerouted goes to the main timeline.
        thread = topic if isinstance(topic, str) and room == envelope.routing.chat_id else ""
        text = "\n\n".join(parts)
        ids = await self.transport.send_markdown(room, text, thread=thread) if parts else []
        buttons = [(b.label, b.data) for row in payload.buttons for b in row][:10]
        if buttons:
            from ductor.transports.matrix.segments import button_list

            body = "\n".join(label for label, _ in buttons)
            last = await self.transport.send_html(room, body, button_list(buttons))
            await self.transport.offer_buttons(room, last, buttons)
            ids.append(last)
        for path in payload.files:
            ids.append(await self.transport.send_file_or_note(room, Path(path), thread=thread))
        return ids
