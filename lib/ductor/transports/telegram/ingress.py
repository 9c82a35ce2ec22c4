"""What the Telegram transport does with one update, decided without the network.

:func:`classify` reads a :class:`telegram.Update` and returns an :class:`Incoming`: the
action to take (send a message, a command, an abort or a button press to the agent,
learn a topic name, leave a group, or drop the update) with everything the transport
needs to do it. The rules, in the order they apply:

- Deny by default. A private chat counts only when the user is in ``allowed_user_ids``;
  a group only when the group is in ``allowed_group_ids`` *and* the user is allowed.
  Strangers get :attr:`Action.REFUSE` (logged, never answered). A group that is not
  allowed at all gets :attr:`Action.LEAVE_GROUP`: the transport says so and leaves.
- Edited messages, channel posts and updates without a message are ignored.
- ``/cmd@otherbot`` is never for us, whatever ``group_mention_only`` says.
- With ``group_mention_only``, a group message counts only when it mentions
  ``@botusername`` or replies to one of the bot's messages; commands still work.
- ``/stop``, ``/interrupt``, ``/stop_all`` and the bare trigger words abort; any other
  ``/word`` is a command (the agent decides whether it knows it); the rest is a message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import telegram
from telegram.constants import ChatType, MessageEntityType

from ductor.agent.prompt import parse_trigger
from ductor.config.schema import TelegramConfig
from ductor.protocol.messages import AbortMode, SessionKey

__all__ = ["ABORT_COMMANDS", "SERVICE_NOISE", "Action", "Attachment", "Incoming", "classify"]

ABORT_COMMANDS = {
    "/stop": AbortMode.STOP,
    "/interrupt": AbortMode.INTERRUPT,
    "/stop_all": AbortMode.STOP_ALL,
}
# The bot's own status lines: replying to one of them says nothing about the question.
SERVICE_NOISE = frozenset({"[Message in queue...]", "[Message discarded.]", "[Message cancelled.]"})
_GROUPS = frozenset({ChatType.GROUP, ChatType.SUPERGROUP})
_COMMAND = re.compile(r"/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]+))?(?=\s|$)")
# Stickers carry no MIME type; their format says which file Telegram will serve.
_STICKER_MIME = {
    "animated": "application/x-tgsticker",
    "video": "video/webm",
    "static": "image/webp",
}


class Action(StrEnum):
    MESSAGE = "message"  # a prompt for the agent
    COMMAND = "command"  # /word args, for the agent
    ABORT = "abort"  # stop / interrupt / stop_all, see Incoming.mode
    BUTTON = "button"  # an inline button was pressed, see Incoming.data
    IGNORE = "ignore"  # not for us (or nothing to do): drop quietly
    REFUSE = "refuse"  # someone not allowed: log, never answer
    LEAVE_GROUP = "leave_group"  # a group that is not allowed: say so and leave
    TOPIC_NAME = "topic_name"  # a forum topic was created or renamed
    JOINED = "joined"  # the bot was added to an allowed group: post JOIN_NOTIFICATION.md


@dataclass(frozen=True)
class Attachment:
    """A file that came with the message, still on Telegram's servers."""

    kind: str  # photo, document, voice, audio, video, video_note, sticker
    file_id: str
    file_name: str = ""
    mime_type: str = ""
    size: int | None = None
    unique_id: str = ""  # stable across bots: good for naming the downloaded file


@dataclass(frozen=True)
class Incoming:
    action: Action
    session: str = ""  # tg:CHAT, or tg:CHAT:TOPIC inside a forum topic
    chat_id: int = 0
    thread_id: int | None = None
    message_id: int = 0
    user_id: int = 0
    user_name: str = ""
    chat_type: str = ""
    chat_title: str = ""
    text: str = ""  # mention-stripped text or caption; normalised for commands
    quoted: str = ""  # the message replied to, or the fragment the user quoted
    attachments: tuple[Attachment, ...] = ()
    mode: str = ""  # for ABORT: stop, interrupt or stop_all
    data: str = ""  # for BUTTON: the callback data
    callback_id: str = ""  # for BUTTON: the query to answer
    reason: str = ""  # for REFUSE, IGNORE and LEAVE_GROUP: why, for the log
    topic_name: str = ""  # for TOPIC_NAME
    chat_is_private: bool = False
    button_message_html: str | None = None  # for BUTTON: the pressed message, as HTML


def classify(
    update: telegram.Update, *, bot_username: str, bot_id: int, config: TelegramConfig
) -> Incoming:
    """Decide what to do with ``update``; see the module docstring for the rules."""
    if update.callback_query is not None:
        return _classify_button(update.callback_query, config)
    if update.my_chat_member is not None:
        return _classify_membership(update.my_chat_member, config)
    if update.edited_message is not None or update.edited_channel_post is not None:
        return Incoming(Action.IGNORE, reason="edited message")
    if update.channel_post is not None:
        return Incoming(Action.IGNORE, reason="channel post")
    if update.message is None:
        return Incoming(Action.IGNORE, reason="update without a message")
    return _classify_message(
        update.message, bot_username=bot_username, bot_id=bot_id, config=config
    )


def _classify_message(
    message: telegram.Message, *, bot_username: str, bot_id: int, config: TelegramConfig
) -> Incoming:
    chat = message.chat
    user = message.from_user
    base = _base(message, user)
    if chat.type not in _GROUPS and chat.type != ChatType.PRIVATE:
        return replace(base, action=Action.IGNORE, reason=f"message in a {chat.type} chat")
    in_group = chat.type in _GROUPS
    if in_group and chat.id not in config.allowed_group_ids:
        if message.left_chat_member is not None and message.left_chat_member.id == bot_id:
            return replace(base, action=Action.IGNORE, reason=f"removed from group {chat.id}")
        added = any(member.id == bot_id for member in message.new_chat_members)
        what = "added to" if added else "message from"
        return replace(
            base, action=Action.LEAVE_GROUP, reason=f"{what} group {chat.id}, not allowed"
        )

    created, edited = message.forum_topic_created, message.forum_topic_edited
    topic_name = created.name if created is not None else edited.name if edited else None
    if topic_name:
        # The creation notice opens the topic: its id is the topic's id.
        thread = message.message_thread_id or (message.message_id if created else None)
        return replace(
            base,
            action=Action.TOPIC_NAME,
            topic_name=topic_name,
            thread_id=thread,
            session=_session(chat.id, thread),
        )

    raw = message.text or message.caption or ""
    text = strip_mention(raw, bot_username)
    command = _COMMAND.match(text) if message.text else None
    if command and command.group(2) and command.group(2).lower() != bot_username.lower():
        return replace(base, action=Action.IGNORE, reason=f"command for @{command.group(2)}")
    if user is None or user.id not in config.allowed_user_ids:
        who = f"user {user.id}" if user is not None else "a sender without a user id"
        where = f"group {chat.id}" if in_group else "a private chat"
        return replace(base, action=Action.REFUSE, reason=f"{who} is not allowed (in {where})")

    attachments = _attachments(message)
    if not raw and not attachments:
        return replace(base, action=Action.IGNORE, reason="service message")
    addressed = _mentions(message, bot_username, bot_id) or _replies_to(message, bot_id)
    if in_group and config.group_mention_only and command is None and not addressed:
        return replace(base, action=Action.IGNORE, reason="group message not addressed to the bot")

    quoted = _quoted(message, bot_id)
    if command is not None:
        word = "/" + command.group(1).lower()
        if word in ABORT_COMMANDS:
            return replace(base, action=Action.ABORT, mode=ABORT_COMMANDS[word].value, text=word)
        rest = text[command.end() :].strip()
        return replace(
            base, action=Action.COMMAND, text=f"{word} {rest}" if rest else word, quoted=quoted
        )
    if not attachments:
        mode = parse_trigger(text) or ("interrupt" if text.lower() == "!interrupt" else None)
        if mode is not None:
            return replace(base, action=Action.ABORT, mode=mode, text=text)
    if not text and not attachments:
        return replace(base, action=Action.IGNORE, reason="nothing left after the mention")
    return replace(base, action=Action.MESSAGE, text=text, quoted=quoted, attachments=attachments)


def _classify_button(query: telegram.CallbackQuery, config: TelegramConfig) -> Incoming:
    message = query.message
    if message is None:
        return Incoming(Action.IGNORE, reason="button on an inline message", callback_id=query.id)
    user = query.from_user
    chat = message.chat
    thread = _topic_of(message) if isinstance(message, telegram.Message) else None
    base = Incoming(
        Action.BUTTON,
        session=_session(chat.id, thread),
        chat_id=chat.id,
        thread_id=thread,
        message_id=message.message_id,
        user_id=user.id,
        user_name=user.full_name,
        chat_type=chat.type,
        chat_title=chat.title or "",
        callback_id=query.id,
        chat_is_private=chat.type == ChatType.PRIVATE,
        button_message_html=_html_of(message),
    )
    if chat.type in _GROUPS and chat.id not in config.allowed_group_ids:
        return replace(
            base, action=Action.LEAVE_GROUP, reason=f"button in group {chat.id}, not allowed"
        )
    if chat.type not in _GROUPS and chat.type != ChatType.PRIVATE:
        return replace(base, action=Action.IGNORE, reason=f"button in a {chat.type} chat")
    if user.id not in config.allowed_user_ids:
        return replace(base, action=Action.REFUSE, reason=f"user {user.id} is not allowed (button)")
    if not query.data:
        return replace(base, action=Action.IGNORE, reason="button without data")
    return replace(base, action=Action.BUTTON, data=query.data)


def _classify_membership(change: telegram.ChatMemberUpdated, config: TelegramConfig) -> Incoming:
    """The bot's own membership changed: leave a group or channel we were put in by mistake."""
    chat = change.chat
    base = Incoming(
        Action.IGNORE,
        session=_session(chat.id, None),
        chat_id=chat.id,
        user_id=change.from_user.id,
        user_name=change.from_user.full_name,
        chat_type=chat.type,
        chat_title=chat.title or "",
    )
    status = change.new_chat_member.status
    if status in {"left", "kicked"}:
        return replace(base, action=Action.IGNORE, reason=f"bot {status} chat {chat.id}")
    allowed: Sequence[int]
    if chat.type == ChatType.CHANNEL:
        allowed = config.allowed_channel_ids
    elif chat.type in _GROUPS:
        allowed = config.allowed_group_ids
    else:
        return replace(
            base, action=Action.IGNORE, reason=f"membership change in a {chat.type} chat"
        )
    if chat.id not in allowed:
        return replace(
            base, action=Action.LEAVE_GROUP, reason=f"added to {chat.type} {chat.id}, not allowed"
        )
    joined = change.old_chat_member.status in {"left", "kicked"} and chat.type in _GROUPS
    return replace(
        base,
        action=Action.JOINED if joined else Action.IGNORE,
        reason=f"bot is {status} in allowed chat {chat.id}",
    )


def strip_mention(text: str, bot_username: str) -> str:
    """``text`` without ``@bot_username`` (any case; a following ``:`` or ``,`` goes too)."""
    if not bot_username:
        return text.strip()
    pattern = rf"[ \t]*(?<![\w@])@{re.escape(bot_username)}(?!\w)[:,]?[ \t]*"
    stripped = re.sub(pattern, " ", text, flags=re.IGNORECASE)
    return "\n".join(line.strip(" ") for line in stripped.split("\n")).strip()


def _mentions(message: telegram.Message, bot_username: str, bot_id: int) -> bool:
    parsed = message.parse_entities() if message.text else message.parse_caption_entities()
    for entity, value in parsed.items():
        if entity.type == MessageEntityType.MENTION and value[1:].lower() == bot_username.lower():
            return True
        mentioned = entity.user.id if entity.user is not None else None
        if entity.type == MessageEntityType.TEXT_MENTION and mentioned == bot_id:
            return True
    text = message.text or message.caption or ""
    pattern = rf"(?<![\w@])@{re.escape(bot_username)}(?!\w)"
    return bool(bot_username) and re.search(pattern, text, flags=re.IGNORECASE) is not None


def _reply(message: telegram.Message) -> telegram.Message | None:
    """The message replied to; in a forum topic every message seems to answer the
    topic's creation notice, which is not a reply at all."""
    reply = message.reply_to_message
    if reply is None or reply.forum_topic_created is not None:
        return None
    return reply


def _replies_to(message: telegram.Message, bot_id: int) -> bool:
    reply = _reply(message)
    return reply is not None and reply.from_user is not None and reply.from_user.id == bot_id


def _quoted(message: telegram.Message, bot_id: int) -> str:
    if message.quote is not None and message.quote.text:
        return message.quote.text
    reply = _reply(message)
    if reply is None:
        return ""
    text = reply.text or reply.caption or ""
    by_bot = reply.from_user is not None and reply.from_user.id == bot_id
    if by_bot and text.strip() in SERVICE_NOISE:
        return ""
    return text


def _attachments(message: telegram.Message) -> tuple[Attachment, ...]:
    found: list[Attachment] = []
    if message.photo:
        best = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        found.append(
            Attachment("photo", best.file_id, "", "image/jpeg", best.file_size, best.file_unique_id)
        )
    for kind, media in (
        ("document", message.document),
        ("voice", message.voice),
        ("audio", message.audio),
        ("video", message.video),
    ):
        if media is not None:
            found.append(
                Attachment(
                    kind,
                    media.file_id,
                    getattr(media, "file_name", None) or "",
                    media.mime_type or "",
                    media.file_size,
                    media.file_unique_id,
                )
            )
    note = message.video_note
    if note is not None:
        found.append(
            Attachment(
                "video_note", note.file_id, "", "video/mp4", note.file_size, note.file_unique_id
            )
        )
    sticker = message.sticker
    if sticker is not None:
        form = "animated" if sticker.is_animated else "video" if sticker.is_video else "static"
        found.append(
            Attachment(
                "sticker",
                sticker.file_id,
                "",
                _STICKER_MIME[form],
                sticker.file_size,
                sticker.file_unique_id,
            )
        )
    return tuple(found)


def _html_of(message: telegram.MaybeInaccessibleMessage) -> str | None:
    if not isinstance(message, telegram.Message):
        return None
    if message.text:
        return message.text_html
    if message.caption:
        return message.caption_html
    return None


def _topic_of(message: telegram.Message) -> int | None:
    """The forum topic: only a real topic message has one (not the General topic, and not
    a reply thread in an ordinary group, which carries a message_thread_id too)."""
    if message.is_topic_message and message.message_thread_id:
        return message.message_thread_id
    return None


def _session(chat_id: int, thread: int | None) -> str:
    return SessionKey("tg", str(chat_id), None if thread is None else str(thread)).key


def _base(message: telegram.Message, user: telegram.User | None) -> Incoming:
    chat = message.chat
    thread = _topic_of(message)
    return Incoming(
        Action.IGNORE,
        session=_session(chat.id, thread),
        chat_id=chat.id,
        thread_id=thread,
        message_id=message.message_id,
        user_id=user.id if user is not None else 0,
        user_name=user.full_name if user is not None else "",
        chat_type=chat.type,
        chat_title=chat.title or "",
        chat_is_private=chat.type == ChatType.PRIVATE,
    )
