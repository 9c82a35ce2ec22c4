"""End-to-end encryption for the Matrix transport: matrix-nio's Olm machine (vodozemac).

Element encrypts new private rooms by default, so the bot keeps an Olm account of its
own in a SQLite store under the agent's state (``matrix.store_path``): its device keys
are uploaded, the room keys of the people it talks to are kept (a restart of the
transport still reads the history), and its own messages, reactions and files go out
encrypted in every encrypted room. Nothing is ever sent in plain text into an
encrypted room; the one exception is the notice that the bot cannot read encrypted
messages at all, sent once per room when the crypto dependency is missing.

Trust (``matrix.device_trust``): room keys go only to devices of ``allowed_users``.
``tofu`` trusts each such device the first time its keys are seen (matrix-nio pins a
device's signing key from then on; a device that later shows another key is not
believed); ``known`` trusts no new device (the devices trusted so far keep working,
a new one gets no keys and its messages are refused, with a log line naming it). The
devices of everybody else in a room are blacklisted: they never get a room key.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from uuid import uuid4

import nio
from nio.crypto import ENCRYPTION_ENABLED

from ductor import atomic
from ductor.config.schema import MatrixConfig
from ductor.errors import DuctorError
from ductor.transports.matrix.ingress import is_user_allowed

__all__ = [
    "CANNOT_DECRYPT_NOTICE",
    "SEAL",
    "CannotEncrypt",
    "Encryption",
    "available",
    "client_config",
]

log = logging.getLogger("ductor.matrix")

#: Added to the source of an event matrix-nio decrypted: whether it came from a device
#: the bot trusts, and that device's curve25519 key. Never sent anywhere.
SEAL = "ductor.e2e"
PENDING_LIMIT = 200  # undecryptable events kept for a late room key
PENDING_SECONDS = 7 * 24 * 3600.0

CANNOT_DECRYPT_NOTICE = (
    "I cannot read encrypted messages: this bot was installed without Matrix"
    " end-to-end encryption support (the Python package vodozemac, which"
    " matrix-nio[e2e] brings). Whoever runs the bot can fix it by running install.sh"
    " again (or `pip install 'matrix-nio[e2e]'` in the bot's environment) and"
    " restarting ductor-matrix. Until then, talk to me in a room without encryption."
)


class CannotEncrypt(DuctorError):
    """A message for an encrypted room that cannot be encrypted: it is not sent."""


def available() -> bool:
    """Whether matrix-nio found its crypto dependency (vodozemac)."""
    return bool(ENCRYPTION_ENABLED)


def client_config() -> nio.AsyncClientConfig:
    """matrix-nio's client config: encryption with the SQLite store where the dependency
    is installed (the store lives in ``store_path``), plain otherwise."""
    return nio.AsyncClientConfig(encryption_enabled=available(), store_sync_tokens=False)


def restore_login(client: nio.AsyncClient, user_id: str, device_id: str, token: str) -> None:
    """Reuse a saved login. Without a device id (an access token from the config alone)
    the store cannot be opened yet: the caller asks whoami and restores again with it."""
    if device_id:
        client.restore_login(user_id, device_id, token)
    else:
        client.user_id, client.access_token = user_id, token


def forget_device(client: nio.AsyncClient) -> None:
    """Close the store of the device before a new login: matrix-nio keeps a loaded
    store, and the new device must not reuse the old one's Olm account."""
    client.store, client.olm = None, None


def publish_keys_again(client: nio.AsyncClient) -> None:
    """After a password login: the homeserver may have dropped the device's keys with
    the old login (a logout deletes them; a device id given in the config comes back
    with the same store), so they are uploaded again at the next sync."""
    if client.olm is not None:
        client.olm.account.shared = False


def source_of(event: Any) -> dict[str, Any] | None:
    """The raw dict of a timeline event as matrix-nio left it: decrypted where it could
    (then sealed with :data:`SEAL`), ``m.room.encrypted`` where it could not."""
    source = getattr(event, "source", None)
    if not isinstance(source, dict):
        return None
    if getattr(event, "decrypted", False):
        seal = {
            "verified": bool(getattr(event, "verified", False)),
            "sender_key": str(getattr(event, "sender_key", "") or ""),
        }
        return {**source, SEAL: seal}
    return source


class Encryption:
    """The bot's end-to-end encryption over one ``nio.AsyncClient``.

    ``client.olm`` is None when the crypto dependency is missing: then encrypted rooms
    get the notice of :meth:`unreadable` and nothing else.
    """

    def __init__(self, client: nio.AsyncClient, state_dir: Path, config: MatrixConfig) -> None:
        self.client = client
        self.config = config
        self.pending = PendingEvents(state_dir / "undecrypted.json").load()
        self.told_file = state_dir / "told-no-encryption.json"
        self.encrypted_invites: set[str] = set()

    def reconfigure(self, config: MatrixConfig) -> None:
        """A reloaded config: new allowlists, perhaps another trust policy."""
        self.config = config
        self.apply_trust()

    @property
    def enabled(self) -> bool:
        return self.client.olm is not None

    def is_encrypted(self, room_id: str) -> bool:
        """Whether ``room_id`` is an encrypted room (known from its state, or from the
        invite's stripped state before the first sync of the room)."""
        room = self.client.rooms.get(room_id)
        return (
            (room is not None and bool(room.encrypted))
            or room_id in self.client.encrypted_rooms
            or room_id in self.encrypted_invites
        )

    def note_invite(self, room_id: str, state: list[dict[str, Any]]) -> None:
        if any(event.get("type") == "m.room.encryption" for event in state):
            self.encrypted_invites.add(room_id)

    # -- after each sync -------------------------------------------------------------------

    async def after_sync(self) -> None:
        """What matrix-nio's sync_forever would do: upload the device's keys, fetch the
        keys of the people in encrypted rooms, open Olm sessions where needed, apply
        the trust policy, and send out the to-device messages that queued up."""
        if self.client.olm is None:
            return
        client = self.client
        if client.should_upload_keys:
            answer = await client.keys_upload()
            if isinstance(answer, nio.KeysUploadError):
                log.warning("could not upload the bot's encryption keys: %s", answer.message)
            else:
                log.info("encryption keys of device %s uploaded", client.device_id)
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())
        self.apply_trust()
        await client.send_to_device_messages()

    def apply_trust(self) -> None:
        """The trust policy, applied to every device the bot knows (module docstring)."""
        olm = self.client.olm
        if olm is None:
            return
        for device in [d for d in self.client.device_store if not d.deleted]:
            user_id = device.user_id
            if user_id == self.client.user_id and device.id == self.client.device_id:
                continue
            if not is_user_allowed(user_id, self.config):
                if not olm.is_device_blacklisted(device):
                    self.client.blacklist_device(device)
                continue
            if olm.is_device_verified(device):
                continue
            if self.config.device_trust == "tofu":
                self.client.verify_device(device)
                log.info(
                    "trusting device %s of %s on first use (ed25519 %s)",
                    device.id,
                    user_id,
                    device.ed25519,
                )
            elif not olm.is_device_blacklisted(device):
                self.client.blacklist_device(device)
                log.warning(
                    "device %s of %s (ed25519 %s) is new and device_trust is"
                    ' "known": it gets no room keys and its messages are refused',
                    device.id,
                    user_id,
                    device.ed25519,
                )

    # -- incoming ----------------------------------------------------------------------------

    async def distrust(self, room_id: str, event: Mapping[str, Any]) -> str:
        """Why an allowed user's ``event`` is not taken ("" when it is): in an
        encrypted room a message must be encrypted (Element never sends one in plain
        text there; reactions may be), and a decrypted event must come from a device
        the trust policy accepts. A device seen for the first time has its keys
        fetched first."""
        seal = event.get(SEAL)
        if not isinstance(seal, dict):
            plain_message = event.get("type") == "m.room.message"
            if plain_message and self.enabled and self.is_encrypted(room_id):
                return "sent unencrypted into an encrypted room"
            return ""
        if seal.get("verified"):
            return ""
        sender, key = str(event.get("sender", "")), str(seal.get("sender_key", ""))
        if not self._trusted(sender, key) and self.client.olm is not None:
            self.client.olm.users_for_key_query.add(sender)
            await self.client.keys_query()
            self.apply_trust()
        return "" if self._trusted(sender, key) else "sent from a device the bot does not trust"

    def _trusted(self, sender: str, key: str) -> bool:
        olm = self.client.olm
        if olm is None or not key:
            return False
        device = self.client.device_store.device_from_sender_key(sender, key)
        return device is not None and olm.is_device_verified(device)

    def cannot_answer(self, room_id: str) -> bool:
        """Whether an answer in ``room_id`` could not be sent: it is encrypted and the
        crypto dependency is missing (a plain message there is not taken either)."""
        return self.client.olm is None and self.is_encrypted(room_id)

    async def unreadable(self, room_id: str, event: Mapping[str, Any]) -> None:
        """An allowed user's ``m.room.encrypted`` event that matrix-nio could not
        decrypt, or any message in a room where the bot :meth:`cannot_answer`. Without
        the crypto dependency: say so, once per room. With it: the room key is missing;
        ask the sender's devices for it and keep the event, which :meth:`late_events`
        hands back once the key arrives."""
        if self.client.olm is None:
            log.warning(
                "refused %s in %s: the room is encrypted and the bot cannot encrypt",
                event.get("event_id"),
                room_id,
            )
            await self.tell_no_encryption(room_id)
            return
        megolm = nio.MegolmEvent.from_dict(dict(event))
        if not isinstance(megolm, nio.MegolmEvent):
            log.warning("cannot read encrypted event %s in %s", event.get("event_id"), room_id)
            return
        megolm.room_id = room_id
        self.pending.add(room_id, dict(event))
        log.info(
            "no room key yet for %s in %s (session %s); asking %s's devices for it",
            megolm.event_id,
            room_id,
            megolm.session_id,
            megolm.sender,
        )
        with contextlib.suppress(nio.LocalProtocolError):  # already asked for this session
            await self.client.request_room_key(megolm)  # the bot's own other devices
            # and the device that sent it (matrix-nio asks only the former)
            request = megolm.as_key_request(
                megolm.sender, self.client.device_id, device_id=megolm.device_id
            )
            await self.client.to_device(request)

    def late_events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Events kept by :meth:`unreadable` whose room key has arrived since, decrypted
        (room id, sealed source); each is forgotten once the caller moves on."""
        olm = self.client.olm
        if olm is None:
            return
        for room_id, source in self.pending.entries():
            megolm = nio.MegolmEvent.from_dict(dict(source))
            if not isinstance(megolm, nio.MegolmEvent):
                self.pending.drop(source)
                continue
            if olm.inbound_group_store.get(room_id, megolm.sender_key, megolm.session_id) is None:
                continue
            megolm.room_id = room_id
            try:
                decrypted = self.client.decrypt_event(megolm)
            except nio.EncryptionError as exc:  # the key arrived but does not open it
                log.warning("cannot decrypt %s in %s: %s", megolm.event_id, room_id, exc)
                self.pending.drop(source)
                continue
            sealed = source_of(decrypted)
            if sealed is not None and sealed.get("type") != "m.room.encrypted":
                log.info(
                    "the room key for %s in %s arrived: reading it now", megolm.event_id, room_id
                )
                yield room_id, sealed
            self.pending.drop(source)

    async def tell_no_encryption(self, room_id: str) -> None:
        told = _read_list(self.told_file)
        if room_id in told:
            return
        log.warning(
            "an encrypted message in %s cannot be read: the crypto dependency of"
            " matrix-nio (vodozemac) is not installed; telling the room once",
            room_id,
        )
        content = {"msgtype": "m.notice", "body": CANNOT_DECRYPT_NOTICE}
        # The one plain message an encrypted room ever gets from the bot: it cannot
        # encrypt, and silence would leave the person guessing.
        answer = await self._send_raw(room_id, "m.room.message", content)
        if isinstance(answer, nio.RoomSendResponse):
            atomic.write_json(self.told_file, [*told, room_id], mode=0o600)

    # -- outgoing ----------------------------------------------------------------------------

    async def send(
        self, room_id: str, event_type: str, content: dict[str, Any]
    ) -> nio.RoomSendResponse | nio.RoomSendError:
        """Send one event: encrypted in an encrypted room (reactions too, as Element
        does), as it is elsewhere. Raises :class:`CannotEncrypt` rather than send plain
        text into an encrypted room."""
        if self.is_encrypted(room_id):
            event_type, content = await self.encrypt(room_id, event_type, content)
        return await self._send_raw(room_id, event_type, content)

    async def encrypt(
        self, room_id: str, event_type: str, content: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        client = self.client
        if client.olm is None:
            raise CannotEncrypt(
                f"{room_id} is encrypted and the crypto dependency of matrix-nio (vodozemac)"
                " is not installed: not sending"
            )
        room = client.rooms.get(room_id)
        if room is None or not room.encrypted:
            raise CannotEncrypt(f"{room_id} is encrypted and its state is not synced yet")
        if not room.members_synced:
            await client.joined_members(room_id)
        if client.should_query_keys:
            await client.keys_query()
        self.apply_trust()
        if client.olm.should_share_group_session(room_id):
            sharing = client.sharing_session.get(room_id)
            if sharing is not None:
                await sharing.wait()
            else:
                try:
                    await client.share_group_session(room_id)
                except nio.OlmUnverifiedDeviceError:
                    # A device appeared between the policy and the share: judge it.
                    self.apply_trust()
                    await client.share_group_session(room_id)
        try:
            encrypted_type, encrypted = client.encrypt(room_id, event_type, content)
        except (nio.EncryptionError, nio.LocalProtocolError) as exc:
            raise CannotEncrypt(f"cannot encrypt for {room_id}: {exc}") from exc
        return str(encrypted_type), dict(encrypted)

    async def _send_raw(
        self, room_id: str, event_type: str, content: dict[str, Any]
    ) -> nio.RoomSendResponse | nio.RoomSendError:
        # matrix-nio's room_send encrypts by itself, but sends reactions in plain text and
        # refuses rooms it has not synced; the request is the same, so it is made here.
        method, path, data = nio.Api.room_send(
            self.client.access_token, room_id, event_type, content, uuid4()
        )
        answer: nio.RoomSendResponse | nio.RoomSendError = await self.client._send(
            nio.RoomSendResponse, method, path, data, (room_id,)
        )
        return answer


class PendingEvents:
    """Encrypted events waiting for their room key (``undecrypted.json``): kept across
    restarts, the newest :data:`PENDING_LIMIT`, for at most a week."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.events: list[dict[str, Any]] = []

    def load(self) -> PendingEvents:
        with contextlib.suppress(OSError, ValueError, DuctorError):
            data = atomic.read_json(self.file)
            if isinstance(data, list):
                self.events = [e for e in data if isinstance(e, dict)]
        return self

    def add(self, room_id: str, source: dict[str, Any]) -> None:
        if any(e.get("source", {}).get("event_id") == source.get("event_id") for e in self.events):
            return
        self.events.append({"room_id": room_id, "since": time.time(), "source": source})
        self.events = self.events[-PENDING_LIMIT:]
        self._save()

    def entries(self) -> list[tuple[str, dict[str, Any]]]:
        now = time.time()
        fresh = [e for e in self.events if now - float(e.get("since", 0)) < PENDING_SECONDS]
        if len(fresh) != len(self.events):
            self.events = fresh
            self._save()
        return [
            (str(e.get("room_id", "")), e["source"])
            for e in fresh
            if isinstance(e.get("source"), dict)
        ]

    def drop(self, source: Mapping[str, Any]) -> None:
        event_id = source.get("event_id")
        self.events = [e for e in self.events if e.get("source", {}).get("event_id") != event_id]
        self._save()

    def _save(self) -> None:
        atomic.write_json(self.file, self.events, mode=0o600)


def _read_list(file: Path) -> list[str]:
    with contextlib.suppress(OSError, ValueError, DuctorError):
        data = atomic.read_json(file)
        if isinstance(data, list):
            return [str(item) for item in data]
    return []
