"""A person on Element, as far as encryption goes: a matrix-nio client with its own
device, Olm account and SQLite store, that creates encrypted rooms the way Element does
(``m.room.encryption`` in the initial state), sends text and encrypted files, and reads
what others send, decrypted. Synchronous (its own event loop) so tests read plainly.

Like Element's default, it sends room keys to every device in the room without asking
for verification, and it syncs only when told to (each helper syncs first).
"""

from __future__ import annotations

import asyncio
import io
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import nio
from nio.crypto.attachments import decrypt_attachment
from tests.stubs.synapse import MatrixUser, Synapse

__all__ = ["MEGOLM", "ElementUser"]

T = TypeVar("T")
MEGOLM = {"algorithm": "m.megolm.v1.aes-sha2"}


class ElementUser:
    def __init__(self, synapse: Synapse, user: MatrixUser, store: Path) -> None:
        self.user = user
        self.loop = asyncio.new_event_loop()
        store.mkdir(parents=True, exist_ok=True)
        config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
        self.client = nio.AsyncClient(
            synapse.base_url, user.user_id, user.device_id, str(store), config
        )
        self.client.restore_login(user.user_id, user.device_id, user.access_token)
        self.timeline: defaultdict[str, list[Any]] = defaultdict(list)
        self.to_device: list[Any] = []  # to-device events received (key requests, ...)
        self.sync()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        self.run(self.client.close())
        self.loop.close()

    # -- syncing -----------------------------------------------------------------------------

    def sync(self) -> None:
        self.run(self._sync())

    async def _sync(self) -> None:
        client = self.client
        answer = await client.sync(timeout=0, full_state=not client.next_batch)
        if isinstance(answer, nio.SyncError):
            raise AssertionError(f"sync failed: {answer.message}")
        for room_id, joined in answer.rooms.join.items():
            self.timeline[room_id].extend(joined.timeline.events)
        self.to_device.extend(answer.to_device_events)
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())
        await client.send_to_device_messages()

    # -- rooms -------------------------------------------------------------------------------

    def encrypted_room(self, invite: list[str], *, direct: bool, name: str | None = None) -> str:
        """A new encrypted room, as Element makes a DM (``direct``) or a private group."""
        answer = self.run(
            self.client.room_create(
                name=name,
                invite=invite,
                is_direct=direct,
                preset=nio.RoomPreset.trusted_private_chat
                if direct
                else nio.RoomPreset.private_chat,
                initial_state=[{"type": "m.room.encryption", "state_key": "", "content": MEGOLM}],
            )
        )
        if not isinstance(answer, nio.RoomCreateResponse):
            raise AssertionError(f"cannot create a room: {answer.message}")
        self.sync()
        return str(answer.room_id)

    def join(self, room: str) -> None:
        self.run(self.client.join(room))
        self.sync()

    # -- sending -----------------------------------------------------------------------------

    def send(self, room: str, content: dict[str, Any]) -> str:
        self.sync()
        answer = self.run(
            self.client.room_send(room, "m.room.message", content, ignore_unverified_devices=True)
        )
        if not isinstance(answer, nio.RoomSendResponse):
            raise AssertionError(f"cannot send: {answer.message}")
        return str(answer.event_id)

    def send_text(self, room: str, body: str) -> str:
        return self.send(room, {"msgtype": "m.text", "body": body})

    def send_file(self, room: str, data: bytes, name: str, mime: str) -> str:
        """An encrypted attachment, as Element sends one into an encrypted room."""
        upload, keys = self.run(
            self.client.upload(
                io.BytesIO(data), content_type=mime, filename=name, encrypt=True, filesize=len(data)
            )
        )
        if not isinstance(upload, nio.UploadResponse) or keys is None:
            raise AssertionError(f"cannot upload: {upload}")
        content = {
            "msgtype": "m.file",
            "body": name,
            "filename": name,
            "info": {"mimetype": mime, "size": len(data)},
            "file": {**keys, "url": upload.content_uri, "mimetype": mime},
        }
        return self.send(room, content)

    def send_text_key_later(self, room: str, body: str, owner: str) -> Callable[[], None]:
        """Send ``body`` without giving ``owner``'s devices its room key; the key is
        sent by the function returned (a room key that arrives late, as one from a
        slow federated server does)."""
        self.sync()
        olm = self.client.olm
        devices = list(olm.device_store.active_user_devices(owner))
        for device in devices:
            self.client.blacklist_device(device)
        olm.create_outbound_group_session(room)
        session = olm.outbound_group_sessions[room]
        room_key = {
            "algorithm": MEGOLM["algorithm"],
            "room_id": room,
            "session_id": session.id,
            "session_key": session.session_key,  # from message index 0: before sending
        }
        self.send_text(room, body)

        def deliver() -> None:
            missing = [d for d in devices if olm.session_store.get(d.curve25519) is None]
            if missing:
                self.run(self.client.keys_claim({owner: [d.id for d in missing]}))
            for device in devices:
                self.client.verify_device(device)
                olm_session = olm.session_store.get(device.curve25519)
                content = olm._olm_encrypt(olm_session, device, "m.room_key", room_key)
                message = nio.ToDeviceMessage("m.room.encrypted", owner, device.id, content)
                self.run(self.client.to_device(message))

        return deliver

    # -- reading -----------------------------------------------------------------------------

    def events_from(self, room: str, sender: str) -> list[Any]:
        """Every timeline event of ``sender`` in ``room`` seen so far, decrypted where the
        keys arrived (an undecryptable one stays a ``nio.MegolmEvent``)."""
        self.sync()
        return [e for e in self.timeline[room] if getattr(e, "sender", "") == sender]

    def events_to_device(self) -> list[Any]:
        self.sync()
        return list(self.to_device)

    def texts_from(self, room: str, sender: str) -> list[str]:
        return [
            str(e.body)
            for e in self.events_from(room, sender)
            if isinstance(e, nio.RoomMessageText | nio.RoomMessageNotice)
        ]

    def files_from(self, room: str, sender: str) -> list[tuple[str, bytes]]:
        """The encrypted files ``sender`` sent in ``room``: (name, plain bytes)."""
        files = []
        for event in self.events_from(room, sender):
            if not isinstance(event, nio.RoomEncryptedMedia):
                continue
            answer = self.run(self.client.download(mxc=event.url))
            if not isinstance(answer, nio.MemoryDownloadResponse):
                raise AssertionError(f"cannot download {event.url}: {answer}")
            key, digest = event.key["k"], event.hashes["sha256"]
            plain = decrypt_attachment(answer.body, key, digest, event.iv)
            files.append((str(event.body), plain))
        return files

    def wait(self, condition: Callable[[], T], timeout: float, detail: Callable[[], str]) -> T:
        """``condition()`` once it is truthy, syncing in between."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not true after {timeout} s\n{detail()[-3000:]}")
            time.sleep(0.2)
