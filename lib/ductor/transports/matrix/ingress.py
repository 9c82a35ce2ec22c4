"""What one Matrix room event means for the agent: :func:`classify` decides.

Works on the raw event dicts of a ``/sync`` timeline (``type``, ``sender``, ``content``,
``event_id``), so it needs no matrix-nio and is tested on its own. Deny by default:

- the bot's own events are never processed;
- a room counts when it is in ``allowed_rooms`` (ids, or aliases resolved at start) or
  is a direct chat (two members) with an allowed user; the sender must be in
  ``allowed_users``;
- ``group_mention_only``: in group rooms, text and media count only when they mention
  the bot (its full user id, a pill: ``m.mentions``) or reply to one of its messages;
  its name alone in a sentence is no mention;
- ``!cmd`` and ``/cmd`` are commands (``!`` becomes ``/``); ``/stop``, ``/interrupt``,
  ``/stop_all`` and the bare trigger words abort. Only the bot's own commands
  (:data:`COMMANDS`) count; ``!cmd@name`` for another name is for another bot. In a
  group, a word the bot does not know is for another bot unless the message is addressed
  to this one; addressed (or in a direct chat) it is ``UNKNOWN_COMMAND``, answered with
  the list of commands rather than given to the CLI as a slash command;
- a media event's caption (its ``body`` when ``filename`` names the file) is the text
  of the message, given to the agent with the file;
- a message in a thread (``rel_type: m.thread``) belongs to the thread: its session is
  the thread's own (:func:`session_key`), and the answer goes into the thread;
- a reaction with a keycap digit on a message that shows numbered buttons, or a bare
  number while such a message is open in the room, presses that button.
- an ``m.room.encrypted`` event (matrix-nio could not decrypt it) from an allowed user
  in a served room is ``ENCRYPTED``: the transport asks for its room key (crypto.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from ductor.agent.prompt import parse_trigger
from ductor.config.schema import MatrixConfig
from ductor.protocol.messages import AbortMode

__all__ = [
    "ABORT_COMMANDS",
    "COMMANDS",
    "MEDIA_TYPES",
    "NUMBER_EMOJIS",
    "WELCOME",
    "Action",
    "Attachment",
    "Incoming",
    "classify",
    "is_room_allowed",
    "is_user_allowed",
    "session_key",
    "unknown_command",
    "welcome_text",
]

#: The commands of the agent (ductor.agent.commands.COMMANDS, kept equal by a unit test)
#: and the transport's own; the abort commands beside them.
COMMANDS = frozenset(
    {
        "/new", "/reset", "/status", "/model", "/effort", "/cron", "/tasks", "/session",
        "/sessions", "/memory", "/diagnose", "/help", "/start", "/info", "/where", "/leave",
        "/showfiles", "/agents", "/agent_start", "/agent_stop", "/agent_restart",
        "/agent_commands", "/topicmodel",
    }
)  # fmt: skip
ABORT_COMMANDS = {
    "/stop": AbortMode.STOP,
    "/interrupt": AbortMode.INTERRUPT,
    "/stop_all": AbortMode.STOP_ALL,
}
NUMBER_EMOJIS = ("1️⃣", "2️⃣", "3️⃣", "4️⃣", "5️⃣", "6️⃣", "7️⃣", "8️⃣", "9️⃣", "🔟")
MEDIA_TYPES = {"m.image": "image", "m.audio": "audio", "m.video": "video", "m.file": "file"}
_COMMAND = re.compile(r"[!/]([A-Za-z0-9_]{1,64})(?:@(\S+))?(?=\s|$)")
_REPLY_FALLBACK = re.compile(r"^(> .*\n)+\n", re.MULTILINE)


class Action(StrEnum):
    IGNORE = "ignore"
    REFUSE = "refuse"  # logged, never answered
    MESSAGE = "message"
    COMMAND = "command"
    ABORT = "abort"
    BUTTON = "button"
    ENCRYPTED = "encrypted"  # an allowed user's event the bot could not decrypt
    UNKNOWN_COMMAND = "unknown_command"  # a !word addressed to the bot that it does not know


@dataclass(frozen=True)
class Attachment:
    kind: str  # image, audio, video, file
    url: str  # mxc://
    name: str
    mime_type: str = ""
    size: int | None = None
    #: An encrypted file's key, iv and hashes (the event's ``file``); None when plain.
    encryption: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Incoming:
    action: Action
    room_id: str
    event_id: str = ""
    sender: str = ""
    text: str = ""
    quoted: str = ""
    mode: str = ""  # for ABORT
    data: str = ""  # for BUTTON
    private: bool = False
    reason: str = ""
    attachments: tuple[Attachment, ...] = field(default_factory=tuple)
    thread: str = ""  # the event id of the thread's root, for a message in a thread

    @property
    def session(self) -> str:
        return session_key(self.room_id, self.thread)


def unknown_command(word: str) -> str:
    """The answer to a ``!word`` the bot does not know: its commands."""
    known = sorted((COMMANDS | set(ABORT_COMMANDS)) - {"/start"})
    listed = ", ".join(f"!{command[1:]}" for command in known)
    return (
        f"`!{word.lstrip('/!')}` is not a command of this bot. Its commands: {listed}."
        " `!help` says what each does."
    )


#: Marks the bot's welcome in a group room (a notice, never a request).
WELCOME = "ductor.welcome"


def welcome_text(bot_id: str, *, mention_only: bool) -> str:
    """What the bot says when it joins a group room it serves."""
    how = (
        f"Mention me ({bot_id}) or reply to one of my messages to ask me something"
        if mention_only
        else "I answer the messages of the people allowed to talk to me here"
    )
    return f"Hello! {how}; `!help` lists my commands."


def session_key(room_id: str, thread: str = "") -> str:
    """``mx:<room>``, or ``mx:<room>:<root event id>`` for a thread: its own session."""
    return f"mx:{room_id}:{thread}" if thread else f"mx:{room_id}"


def _thread(content: Mapping[str, Any]) -> str:
    relates = content.get("m.relates_to")
    if isinstance(relates, dict) and relates.get("rel_type") == "m.thread":
        root = relates.get("event_id")
        if isinstance(root, str) and root.startswith("$"):
            return root
    return ""


def is_room_allowed(room_id: str, *, allowed_room_ids: Collection[str], private: bool) -> bool:
    """Whether the bot serves ``room_id``: listed, or a direct chat with an allowed user."""
    return room_id in allowed_room_ids or private


def is_user_allowed(user_id: str, config: MatrixConfig) -> bool:
    """Whether ``user_id`` may talk to the bot (and, in encrypted rooms, read it)."""
    return user_id in config.allowed_users


def localpart(user_id: str) -> str:
    return user_id.removeprefix("@").split(":", 1)[0]


def _mentions(content: Mapping[str, Any], bot_id: str) -> bool:
    """A pill (``m.mentions``) or the full user id; the localpart alone is a word."""
    mentions = content.get("m.mentions")
    if isinstance(mentions, dict) and bot_id in (mentions.get("user_ids") or []):
        return True
    text = f"{content.get('body', '')} {content.get('formatted_body', '')}"
    return re.search(rf"{re.escape(bot_id)}(?![\w-]|[.:]\w)", text) is not None


def _for_other_bot(suffix: str | None, bot_id: str) -> bool:
    """``!cmd@name``: whether ``name`` is someone else (``@bot`` or ``@bot:server`` is us)."""
    if not suffix:
        return False
    name = suffix.removeprefix("@")
    return name.lower() not in (localpart(bot_id).lower(), bot_id.removeprefix("@").lower())


def _reply_to(content: Mapping[str, Any]) -> str:
    relates = content.get("m.relates_to")
    if isinstance(relates, dict):
        reply = relates.get("m.in_reply_to")
        if isinstance(reply, dict) and isinstance(reply.get("event_id"), str):
            return str(reply["event_id"])
    return ""


def strip_mention(text: str, bot_id: str) -> str:
    for name in (bot_id, localpart(bot_id)):
        text = re.sub(rf"^[ \t]*@?{re.escape(name)}[:,]?[ \t]*", "", text)
    return text.strip()


def _caption(content: Mapping[str, Any]) -> str:
    """A media event's caption: its ``body`` when a ``filename`` names the file (Matrix
    1.10; Element sends "what colour is this cat?" as the body of the image)."""
    body, filename = content.get("body"), content.get("filename")
    if isinstance(body, str) and isinstance(filename, str) and filename and body != filename:
        return body
    return ""


def _attachment(content: Mapping[str, Any]) -> Attachment | None:
    kind = MEDIA_TYPES.get(str(content.get("msgtype", "")))
    encrypted = content.get("file")
    encryption = encrypted if isinstance(encrypted, dict) else None
    url = content.get("url") if encryption is None else encryption.get("url")
    if kind is None or not isinstance(url, str) or not url.startswith("mxc://"):
        return None
    info = content.get("info") if isinstance(content.get("info"), dict) else {}
    assert isinstance(info, dict)
    name = content.get("filename") or content.get("body") or ""
    size = info.get("size")
    return Attachment(
        kind=kind,
        url=url,
        name=str(name),
        mime_type=str(info.get("mimetype") or ""),
        size=size if isinstance(size, int) else None,
        encryption=encryption,
    )


def classify(
    event: Mapping[str, Any],
    *,
    room_id: str,
    bot_id: str,
    config: MatrixConfig,
    allowed_room_ids: Collection[str],
    private: bool,
    bot_events: Collection[str] = (),
    buttons: Callable[[str], list[str] | None] = lambda event_id: None,
    open_buttons: list[str] | None = None,
) -> Incoming:
    """What to do with ``event`` from ``room_id``.

    ``private``: the room is a direct chat (two members). ``bot_events``: ids of messages
    the bot sent (replies to them address it). ``buttons(event_id)``: the button data
    shown under one of the bot's messages; ``open_buttons``: those of the latest such
    message in the room, pressed by typing its number.
    """
    event_id = str(event.get("event_id", ""))
    sender = str(event.get("sender", ""))
    base = Incoming(Action.IGNORE, room_id, event_id=event_id, sender=sender, private=private)
    if sender == bot_id:
        return _with(base, reason="the bot's own event")
    kind = event.get("type")
    content = event.get("content")
    if kind not in ("m.room.message", "m.reaction", "m.room.encrypted") or not isinstance(
        content, dict
    ):
        return _with(base, reason=f"not a message ({kind})")
    if not is_room_allowed(room_id, allowed_room_ids=allowed_room_ids, private=private):
        return _with(base, action=Action.REFUSE, reason=f"room {room_id} is not allowed")
    if not is_user_allowed(sender, config):
        return _with(base, action=Action.REFUSE, reason=f"user {sender} is not allowed")
    if kind == "m.room.encrypted":
        return _with(base, action=Action.ENCRYPTED, reason="an event the bot could not decrypt")
    if kind == "m.reaction":
        return _reaction(base, content, buttons)
    relates = content.get("m.relates_to")
    if isinstance(relates, dict) and relates.get("rel_type") == "m.replace":
        return _with(base, reason="an edit")
    base = _with(base, thread=_thread(content))
    attachment = _attachment(content)
    msgtype = content.get("msgtype")
    if attachment is None and msgtype not in ("m.text", "m.notice", "m.emote"):
        return _with(base, reason=f"unsupported message type {msgtype}")
    if msgtype == "m.notice":
        return _with(base, reason="a notice (bots talk with notices)")
    reply_to = _reply_to(content)
    raw = str(content.get("body", "")) if attachment is None else _caption(content)
    if reply_to:
        raw = _REPLY_FALLBACK.sub("", raw, count=1)
    text = strip_mention(raw, bot_id) if not private else raw.strip()
    command = _COMMAND.match(text) if attachment is None else None  # a caption is no command
    addressed = private or _mentions(content, bot_id) or reply_to in bot_events
    if not private and config.group_mention_only and command is None and not addressed:
        return _with(base, reason="group message not addressed to the bot")
    if command is not None:
        word = "/" + command.group(1).lower()
        if _for_other_bot(command.group(2), bot_id):
            return _with(base, reason=f"a command for {command.group(2)}")
        named = command.group(2) is not None
        if word not in COMMANDS and word not in ABORT_COMMANDS:
            if not (addressed or named):
                return _with(base, reason=f"{word}: not a command of this bot")
            return _with(base, action=Action.UNKNOWN_COMMAND, text=word)
        if word in ABORT_COMMANDS:
            return _with(base, action=Action.ABORT, mode=ABORT_COMMANDS[word].value, text=word)
        rest = text[command.end() :].strip()
        return _with(base, action=Action.COMMAND, text=f"{word} {rest}" if rest else word)
    if attachment is None:
        mode = parse_trigger(text)
        if mode is not None:
            return _with(base, action=Action.ABORT, mode=mode, text=text)
        if open_buttons and text.isdigit() and 1 <= int(text) <= len(open_buttons):
            return _with(base, action=Action.BUTTON, data=open_buttons[int(text) - 1], text=text)
        if not text:
            return _with(base, reason="nothing left after the mention")
        return _with(base, action=Action.MESSAGE, text=text)
    return _with(base, action=Action.MESSAGE, text=text, attachments=(attachment,))


def _reaction(
    base: Incoming, content: Mapping[str, Any], buttons: Callable[[str], list[str] | None]
) -> Incoming:
    relates = content.get("m.relates_to")
    if not isinstance(relates, dict) or relates.get("rel_type") != "m.annotation":
        return _with(base, reason="not an annotation")
    key = str(relates.get("key", ""))
    data = buttons(str(relates.get("event_id", "")))
    if not data or key not in NUMBER_EMOJIS:
        return _with(base, reason="a reaction that presses no button")
    index = NUMBER_EMOJIS.index(key)
    if index >= len(data):
        return _with(base, reason="a reaction beyond the buttons")
    return _with(base, action=Action.BUTTON, data=data[index], text=key)


def _with(base: Incoming, **changes: Any) -> Incoming:
    return replace(base, **changes)
