"""A local stand-in for the Telegram Bot API, for testing the Telegram transport.

Stdlib only. It listens on 127.0.0.1 on a free port and answers the Bot API methods the
transport uses, for one bot token, the way python-telegram-bot expects::

    with TelegramStub() as stub:
        bot = telegram.Bot(stub.token, base_url=stub.base_url, base_file_url=stub.base_file_url)
        stub.user_sends(42, "/start", user_id=42)  # an update for getUpdates
        ...  # run the transport
        stub.bot_messages(42)  # what the bot sent there, after its edits
        stub.calls  # every method call, oldest first

Requests go to ``/bot<token>/<method>`` (GET or POST; query string, JSON, form-encoded or
multipart), files download from ``/file/bot<token>/<file_path>``. Answers are
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N, "description": ...}``
with Telegram's status codes and descriptions: another token gets 401, an unknown method
404, a chat the bot never saw 400 "chat not found", a text over 4096 UTF-16 units, bad
HTML or an edit that changes nothing 400, a second ``getUpdates`` ends the first with 409.
:meth:`TelegramStub.fail_next` injects errors (429 with ``retry_after``, 5xx, ...).

Standalone: ``python -m tests.stubs.telegram_api --port 0`` prints the base URL and serves
until interrupted.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import html
import itertools
import json
import mimetypes
import re
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

JsonDict = dict[str, Any]
T = TypeVar("T")

DEFAULT_TOKEN = "123456789:stub-telegram-token"
MAX_TEXT_LENGTH = 4096  # UTF-16 code units, counted after entity parsing
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # getFile refuses bigger files

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup"
    " are exactly the same as a current content and reply markup of the message"
)
CONFLICT = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance"
    " is running"
)
QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"

# Tags Telegram's HTML parse mode knows; anything else is refused.
HTML_TAGS = frozenset(
    [
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "tg-emoji",
        "code",
        "pre",
        "blockquote",
    ]
)
CHAT_ACTIONS = frozenset(
    [
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    ]
)
# Form-encoded parameters arrive as strings: these hold JSON, these integers, these booleans.
JSON_PARAMS = frozenset(
    [
        "reply_markup",
        "entities",
        "caption_entities",
        "commands",
        "reaction",
        "allowed_updates",
        "scope",
        "reply_parameters",
        "link_preview_options",
    ]
)
INT_PARAMS = frozenset(
    [
        "offset",
        "limit",
        "timeout",
        "message_id",
        "message_thread_id",
        "reply_to_message_id",
        "cache_time",
    ]
)
BOOL_PARAMS = frozenset(
    [
        "disable_notification",
        "protect_content",
        "show_alert",
        "is_big",
        "drop_pending_updates",
        "disable_web_page_preview",
        "allow_sending_without_reply",
    ]
)
MEDIA_KINDS = {"sendPhoto": "photo", "sendDocument": "document", "sendVoice": "voice"}
_FILE_DIRS = {"photo": "photos", "document": "documents", "voice": "voice"}


class ApiError(Exception):
    """A Bot API error answer: its HTTP status, description and ``retry_after``."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def body(self) -> JsonDict:
        body: JsonDict = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def bad_request(reason: str) -> ApiError:
    return ApiError(400, f"Bad Request: {reason}")


@dataclass
class Call:
    """One Bot API call as the stub received it; ``status`` is set once it is answered."""

    method: str
    params: JsonDict
    at: float  # time.monotonic() on arrival
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # part -> (name, data)
    status: int | None = None


@dataclass(frozen=True)
class StoredFile:
    file_id: str
    file_unique_id: str
    name: str
    content: bytes
    kind: str  # photo, document or voice
    file_path: str  # relative to the file URL, as getFile answers it

    @property
    def mime_type(self) -> str:
        return mimetypes.guess_type(self.name)[0] or "application/octet-stream"


@dataclass
class _Message:
    data: JsonDict  # the Message object as Telegram returns it
    from_bot: bool
    text: str | None = None  # text or caption as the bot sent it (markup unparsed)
    parse_mode: str | None = None
    reply_markup: JsonDict | None = None
    history: list[str] = field(default_factory=list)  # earlier texts, oldest first
    reactions: list[JsonDict] = field(default_factory=list)
    file: StoredFile | None = None
    deleted: bool = False


@dataclass
class _Failure:
    code: int
    description: str
    retry_after: int | None
    times: int


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s[^<>]*)?)>")


def parse_html(text: str) -> str:
    """The plain text of a message in HTML parse mode; :class:`ApiError` when Telegram would
    refuse it (unknown or unbalanced tags, a ``<`` that opens no tag)."""
    plain: list[str] = []
    open_tags: list[str] = []
    position = 0
    while (start := text.find("<", position)) >= 0:
        plain.append(text[position:start])
        offset = len(text[:start].encode())
        tag = _TAG.match(text, start)
        if tag is None:
            raise bad_request(
                f'can\'t parse entities: Unsupported start tag "" at byte offset {offset}'
            )
        closing, name, attributes = tag.group(1) == "/", tag.group(2).lower(), tag.group(3)
        if closing:
            if not open_tags:
                raise bad_request(
                    f"can't parse entities: Unexpected end tag at byte offset {offset}"
                )
            if open_tags[-1] != name:
                raise bad_request(
                    f"can't parse entities: Unmatched end tag at byte offset {offset},"
                    f' expected "</{open_tags[-1]}>", found "</{name}>"'
                )
            open_tags.pop()
        elif name not in HTML_TAGS:
            raise bad_request(
                f'can\'t parse entities: Unsupported start tag "{name}" at byte offset {offset}'
            )
        elif name == "span" and "tg-spoiler" not in attributes:
            raise bad_request('can\'t parse entities: Tag "span" must have class "tg-spoiler"')
        else:
            open_tags.append(name)
        position = tag.end()
    if open_tags:
        raise bad_request(
            "can't parse entities: Can't find end tag corresponding to start tag"
            f' "{open_tags[-1]}"'
        )
    plain.append(text[position:])
    return html.unescape("".join(plain))


def plain_text(text: str, parse_mode: str | None, limit: int, what: str = "text") -> str:
    """Check a text or caption as sendMessage/editMessageText do; its plain text."""
    mode = (parse_mode or "").lower()
    if mode == "html":
        plain = parse_html(text)
    elif mode in ("", "markdown", "markdownv2"):
        plain = text
    else:
        raise bad_request("unsupported parse_mode")
    if what == "text" and not plain.strip():
        raise bad_request("message text is empty")
    if utf16_length(plain.strip()) > limit:
        raise bad_request(
            "message is too long" if what == "text" else "message caption is too long"
        )
    return plain


def command_entities(text: str) -> list[JsonDict]:
    """The bot_command entity Telegram adds to a text starting with ``/command``."""
    match = re.match(r"/[a-zA-Z0-9_]+(?:@[a-zA-Z0-9_]+)?", text)
    if match is None:
        return []
    return [{"type": "bot_command", "offset": 0, "length": utf16_length(match.group())}]


def check_reply_markup(markup: Any) -> None:
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    for row in markup.get("inline_keyboard") or []:
        for button in row:
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA_BYTES:
                raise bad_request("BUTTON_DATA_INVALID")


class TelegramStub:
    """The stub server and the state behind it: a context manager, one thread per
    connection. Every method is thread-safe."""

    def __init__(
        self, port: int = 0, token: str = DEFAULT_TOKEN, bot_username: str = "stub_bot"
    ) -> None:
        self.token = token
        self.bot_user: JsonDict = {
            "id": int(token.split(":", 1)[0]),
            "is_bot": True,
            "first_name": "Stub Bot",
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self._lock = threading.Condition(threading.RLock())
        self._closing = False
        self.calls: list[Call] = []
        self._chats: dict[int, JsonDict] = {}
        self._left: set[int] = set()
        self._pinned: dict[int, list[JsonDict]] = {}  # chat -> pinChatMessage calls
        self._may_pin: set[int] = set()  # chats where the bot has the right to pin
        self._messages: dict[int, dict[int, _Message]] = {}
        self._updates: list[JsonDict] = []
        self._update_ids = itertools.count(1)
        self._allowed_updates: list[str] = []
        self._poll_generation = 0
        self._queries: dict[str, JsonDict | None] = {}  # callback query id -> its answer
        self._query_ids = itertools.count(1)
        self._commands: dict[tuple[str, str], list[JsonDict]] = {}
        self._files: dict[str, StoredFile] = {}
        self._file_numbers = itertools.count(1)
        self._failures: dict[str, deque[_Failure]] = {}
        self._server = _Server(("127.0.0.1", port), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="telegram-stub",
            daemon=True,
        )

    # -- addresses --------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """For ``Bot(base_url=...)``: the bot appends its token and then ``/<method>``."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        """For ``Bot(base_file_url=...)``: the bot appends its token and the file path."""
        return f"http://127.0.0.1:{self.port}/file/bot"

    # -- what users do ----------------------------------------------------------------

    def add_chat(
        self, chat_id: int, chat_type: str = "private", title: str | None = None
    ) -> JsonDict:
        """Make a chat known to the bot (as if it had been added to it); its Chat object."""
        with self._lock:
            chat = self._chats.get(chat_id)
            if chat is None:
                chat = {"id": chat_id, "type": chat_type}
                if chat_type == "private":
                    chat |= {"first_name": f"User {chat_id}", "username": f"user{chat_id}"}
                else:
                    chat["title"] = title or f"Chat {chat_id}"
                self._chats[chat_id] = chat
                self._messages[chat_id] = {}
            self._left.discard(chat_id)
            return dict(chat)

    def bot_added_to(
        self, chat_id: int, *, by_user: int, chat_type: str = "supergroup", may_pin: bool = False
    ) -> None:
        """A user adds the bot to a group: the my_chat_member update (left → member).
        ``may_pin``: the bot gets the right to pin messages there."""
        with self._lock:
            chat = self.add_chat(chat_id, chat_type)
            if may_pin:
                self._may_pin.add(chat_id)
            change = {
                "chat": chat,
                "from": _user(by_user),
                "date": int(time.time()),
                "old_chat_member": {"user": self.bot_user, "status": "left"},
                "new_chat_member": {"user": self.bot_user, "status": "member"},
            }
            self._enqueue({"my_chat_member": change})

    def pinned(self, chat_id: int) -> list[JsonDict]:
        """The bot's successful pinChatMessage calls in a chat (message_id, ...)."""
        with self._lock:
            return list(self._pinned.get(chat_id, []))

    def add_file(self, content: bytes, name: str, kind: str = "document") -> str:
        """Store a file as if a user had uploaded it; its file_id, for user_sends()."""
        with self._lock:
            return self._store_file(content, name, kind).file_id

    def user_sends(
        self,
        chat_id: int,
        text: str | None = None,
        *,
        user_id: int,
        chat_type: str = "private",
        thread_id: int | None = None,
        reply_to: int | None = None,
        entities: list[JsonDict] | None = None,
        photo: str | None = None,
        document: str | None = None,
        voice: str | None = None,
        caption: str | None = None,
    ) -> int:
        """A user writes in a chat (created on first use): queue the update; the
        message_id. ``photo``, ``document`` and ``voice`` are file ids from add_file()."""
        with self._lock:
            self.add_chat(chat_id, chat_type)
            if thread_id is not None and chat_type == "supergroup":
                self._chats[chat_id]["is_forum"] = True
            data = self._new_message(chat_id, _user(user_id), thread_id, reply_to)
            if text is not None:
                data["text"] = text
                data["entities"] = entities if entities is not None else command_entities(text)
            if caption is not None:
                data["caption"] = caption
                data["caption_entities"] = entities if entities is not None else []
            for kind, file_id in (("photo", photo), ("document", document), ("voice", voice)):
                if file_id is not None:
                    data[kind] = _media(self._files[file_id], kind)
            for key in ("entities", "caption_entities"):
                if not data.get(key):
                    data.pop(key, None)
            self._keep(chat_id, _Message(data, from_bot=False, text=text or caption))
            self._enqueue({"message": data})
            return int(data["message_id"])

    def user_presses(self, chat_id: int, message_id: int, data: str, *, user_id: int) -> str:
        """A user presses an inline button carrying ``data`` under a message: queue the
        callback_query update; the query id."""
        with self._lock:
            message = self._find(chat_id, message_id)
            if message is None:
                raise KeyError(f"no message {message_id} in chat {chat_id}")
            query_id = f"{next(self._query_ids)}{user_id}"
            self._queries[query_id] = None
            query = {
                "id": query_id,
                "from": _user(user_id),
                "message": message.data,
                "chat_instance": str(chat_id),
                "data": data,
            }
            self._enqueue({"callback_query": query})
            return query_id

    # -- what tests look at -----------------------------------------------------------

    def bot_messages(self, chat_id: int, include_deleted: bool = False) -> list[JsonDict]:
        """What the bot sent in a chat, oldest first, as it is now (after edits)."""
        with self._lock:
            return [
                {
                    "message_id": m.data["message_id"],
                    "text": m.text,
                    "plain_text": m.data.get("text", m.data.get("caption")),
                    "parse_mode": m.parse_mode,
                    "reply_markup": m.reply_markup,
                    "reply_to_message_id": (m.data.get("reply_to_message") or {}).get("message_id"),
                    "message_thread_id": m.data.get("message_thread_id"),
                    "history": list(m.history),
                    "reactions": list(m.reactions),
                    "file": m.file,
                    "deleted": m.deleted,
                }
                for m in self._messages.get(chat_id, {}).values()
                if m.from_bot and (include_deleted or not m.deleted)
            ]

    def reactions(self, chat_id: int, message_id: int) -> list[JsonDict]:
        """The reactions the bot set on a message (setMessageReaction)."""
        with self._lock:
            message = self._find(chat_id, message_id)
            return list(message.reactions) if message else []

    def callback_answer(self, query_id: str) -> JsonDict | None:
        """The answerCallbackQuery parameters for a query, None while unanswered."""
        with self._lock:
            return self._queries.get(query_id)

    def bot_commands(
        self, scope: JsonDict | None = None, language_code: str = ""
    ) -> list[JsonDict]:
        with self._lock:
            return list(self._commands.get(_commands_key(scope, language_code), []))

    def file(self, file_id: str) -> StoredFile:
        with self._lock:
            return self._files[file_id]

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method.lower() == method.lower()]

    @property
    def pending_updates(self) -> list[JsonDict]:
        """Updates not yet confirmed by a getUpdates offset."""
        with self._lock:
            return list(self._updates)

    def fail_next(
        self,
        method: str,
        error_code: int,
        description: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with this error instead."""
        if description is None:
            description = {
                400: "Bad Request",
                403: "Forbidden",
                429: f"Too Many Requests: retry after {retry_after or 1}",
                500: "Internal Server Error",
                502: "Bad Gateway",
            }.get(error_code, "Error")
        with self._lock:
            failures = self._failures.setdefault(method.lower(), deque())
            failures.append(_Failure(error_code, description, retry_after, times))

    def enable_control(self, enabled: bool = True) -> None:
        """Serve ``POST /_test/user_sends`` and ``/_test/bot_messages``: JSON in, JSON out.

        For tests whose programs run in another network namespace (a booted systemd):
        they reach the stub over HTTP only, so the test plays the user the same way.
        """
        self._server.control = enabled

    def _control(self, op: str, args: JsonDict) -> JsonDict:
        if op == "user_sends":
            chat = int(args.pop("chat_id"))
            text = args.pop("text", None)
            return {"message_id": self.user_sends(chat, text, **args)}
        if op == "add_chat":
            return {"chat": self.add_chat(int(args["chat_id"]))}
        if op == "bot_messages":
            messages = self.bot_messages(int(args["chat_id"]))
            keep = ("message_id", "text", "plain_text", "reply_to_message_id", "message_thread_id")
            return {"messages": [{k: m.get(k) for k in keep} for m in messages]}
        if op == "calls":
            return {"calls": [c.method for c in self.calls]}
        return {"error": f"unknown control operation {op}"}

    def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        """Block until ``predicate()`` is true (checked after every call and update); its
        value. TimeoutError naming the calls seen otherwise."""
        with self._lock:
            value = self._lock.wait_for(predicate, timeout)
            if not value:
                seen = [c.method for c in self.calls]
                raise TimeoutError(f"the Telegram stub waited {timeout} s in vain; calls: {seen}")
            return value

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        with self._lock:
            self._closing = True  # ends long polls
            self._lock.notify_all()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- state helpers (under the lock) -----------------------------------------------

    def _enqueue(self, update: JsonDict) -> None:
        self._updates.append({"update_id": next(self._update_ids), **update})
        self._lock.notify_all()

    def _chat(self, chat_id: Any) -> JsonDict:
        chat = self._chats.get(chat_id) if isinstance(chat_id, int) else None
        if chat is None:
            raise bad_request("chat not found")
        if chat_id in self._left:
            raise ApiError(403, f"Forbidden: bot is not a member of the {chat['type']} chat")
        return chat

    def _find(self, chat_id: Any, message_id: Any) -> _Message | None:
        message = self._messages.get(chat_id, {}).get(message_id)
        return None if message is None or message.deleted else message

    def _new_message(
        self, chat_id: int, sender: JsonDict, thread_id: int | None, reply_to: int | None
    ) -> JsonDict:
        messages = self._messages[chat_id]
        data: JsonDict = {
            "message_id": max(messages, default=0) + 1,
            "date": int(time.time()),
            "chat": dict(self._chats[chat_id]),
            "from": sender,
        }
        if thread_id is not None:
            data |= {"message_thread_id": thread_id, "is_topic_message": True}
        if reply_to is not None:
            replied = self._find(chat_id, reply_to)
            if replied is None:
                raise bad_request("message to be replied not found")
            data["reply_to_message"] = {
                k: v for k, v in replied.data.items() if k != "reply_to_message"
            }
        return data

    def _keep(self, chat_id: int, message: _Message) -> None:
        self._messages[chat_id][message.data["message_id"]] = message
        self._lock.notify_all()

    def _store_file(self, content: bytes, name: str, kind: str) -> StoredFile:
        number = next(self._file_numbers)
        suffix = "." + name.rsplit(".", 1)[1] if "." in name else ""
        stored = StoredFile(
            file_id=f"stub-file-{number}",
            file_unique_id=f"stub-unique-{number}",
            name=name,
            content=content,
            kind=kind,
            file_path=f"{_FILE_DIRS.get(kind, 'documents')}/file_{number}{suffix}",
        )
        self._files[stored.file_id] = stored
        return stored

    # -- the Bot API (called by the handler) --------------------------------------------

    def _call(self, method: str, params: JsonDict, files: dict[str, tuple[str, bytes]]) -> Any:
        name = API_METHODS.get(method.lower())
        call = Call(name or method, params, time.monotonic(), files)
        with self._lock:
            self.calls.append(call)
            self._lock.notify_all()
        try:
            with self._lock:
                failures = self._failures.get(method.lower())
                if failures:
                    failure = failures[0]
                    failure.times -= 1
                    if failure.times <= 0:
                        failures.popleft()
                    raise ApiError(failure.code, failure.description, failure.retry_after)
            if name is None:
                raise ApiError(404, "Not Found: method not found")
            result = getattr(self, f"_{name}")(params, files)
        except ApiError as error:
            self._answered(call, error.code)
            raise
        self._answered(call, 200)
        return result

    def _answered(self, call: Call, status: int) -> None:
        with self._lock:
            call.status = status
            self._lock.notify_all()

    def _getMe(self, params: JsonDict, files: Mapping[str, Any]) -> JsonDict:
        return dict(self.bot_user)

    def _getUpdates(self, params: JsonDict, files: Mapping[str, Any]) -> list[JsonDict]:
        offset = int(params.get("offset") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        with self._lock:
            self._poll_generation += 1
            generation = self._poll_generation
            self._lock.notify_all()  # an older long poll ends with 409
            if params.get("allowed_updates") is not None:
                self._allowed_updates = list(params["allowed_updates"])
            if offset > 0:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            elif offset < 0:
                self._updates = self._updates[offset:]
            while True:
                if generation != self._poll_generation:
                    raise ApiError(409, CONFLICT)
                if self._allowed_updates:
                    allowed = set(self._allowed_updates) | {"update_id"}
                    self._updates = [u for u in self._updates if set(u) <= allowed]
                left = deadline - time.monotonic()
                if self._updates or self._closing or left <= 0:
                    return self._updates[:limit]
                self._lock.wait(left)

    def _deleteWebhook(self, params: JsonDict, files: Mapping[str, Any]) -> bool:
        if params.get("drop_pending_updates"):
            with self._lock:
                self._updates.clear()
        return True

    def _sendMessage(self, params: JsonDict, files: Mapping[str, Any]) -> JsonDict:
        text = str(params.get("text") or "")
        plain = plain_text(text, params.get("parse_mode"), MAX_TEXT_LENGTH)
        with self._lock:
            data = self._bot_message(params)
            data["text"] = plain
            if params.get("entities"):
                data["entities"] = params["entities"]
            return self._keep_bot_message(data, params, text)

    def _bot_message(self, params: JsonDict) -> JsonDict:
        chat_id = self._chat(params.get("chat_id"))["id"]
        if params.get("reply_markup") is not None:
            check_reply_markup(params["reply_markup"])
        reply_to = params.get("reply_to_message_id")
        if isinstance(params.get("reply_parameters"), dict):
            reply_to = params["reply_parameters"].get("message_id")
        thread_id = params.get("message_thread_id")
        return self._new_message(chat_id, dict(self.bot_user), thread_id, reply_to)

    def _keep_bot_message(
        self, data: JsonDict, params: JsonDict, text: str | None, file: StoredFile | None = None
    ) -> JsonDict:
        markup = params.get("reply_markup")
        if markup is not None:
            data["reply_markup"] = markup
        message = _Message(data, True, text, params.get("parse_mode"), markup, file=file)
        self._keep(data["chat"]["id"], message)
        return data

    def _editable(self, params: JsonDict) -> _Message:
        if params.get("inline_message_id"):
            raise bad_request("inline messages are not supported by the stub")
        chat_id = params.get("chat_id")
        self._chat(chat_id)
        message = self._find(chat_id, params.get("message_id"))
        if message is None:
            raise bad_request("message to edit not found")
        if not message.from_bot:
            raise bad_request("message can't be edited")
        return message

    def _editMessageText(self, params: JsonDict, files: Mapping[str, Any]) -> JsonDict:
        text = str(params.get("text") or "")
        plain = plain_text(text, params.get("parse_mode"), MAX_TEXT_LENGTH)
        markup = params.get("reply_markup")
        with self._lock:
            message = self._editable(params)
            if markup is not None:
                check_reply_markup(markup)
            same = (text, params.get("parse_mode"), markup)
            if same == (message.text, message.parse_mode, message.reply_markup):
                raise ApiError(400, NOT_MODIFIED)
            message.history.append(message.text or "")
            message.text, message.parse_mode = text, params.get("parse_mode")
            message.data["text"] = plain
            message.data["edit_date"] = int(time.time())
            self._set_markup(message, markup)
            return message.data

    def _editMessageReplyMarkup(self, params: JsonDict, files: Mapping[str, Any]) -> JsonDict:
        markup = params.get("reply_markup")
        with self._lock:
            message = self._editable(params)
            if markup is not None:
                check_reply_markup(markup)
            if markup == message.reply_markup:
                raise ApiError(400, NOT_MODIFIED)
            message.data["edit_date"] = int(time.time())
            self._set_markup(message, markup)
            return message.data

    def _set_markup(self, message: _Message, markup: JsonDict | None) -> None:
        message.reply_markup = markup
        if markup is None:
            message.data.pop("reply_markup", None)
        else:
            message.data["reply_markup"] = markup
        self._lock.notify_all()

    def _deleteMessage(self, params: JsonDict, files: Mapping[str, Any]) -> bool:
        with self._lock:
            self._chat(params.get("chat_id"))
            message = self._find(params.get("chat_id"), params.get("message_id"))
            if message is None:
                raise bad_request("message to delete not found")
            message.deleted = True
            self._lock.notify_all()
            return True

    def _sendChatAction(self, params: JsonDict, files: Mapping[str, Any]) -> bool:
        with self._lock:
            self._chat(params.get("chat_id"))
        if params.get("action") not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        return True

    def _setMessageReaction(self, params: JsonDict, files: Mapping[str, Any]) -> bool:
        with self._lock:
            self._chat(params.get("chat_id"))
            message = self._find(params.get("chat_id"), params.get("message_id"))
            if message is None:
                raise bad_request("message to react not found")
            message.reactions = list(params.get("reaction") or [])
            self._lock.notify_all()
            return True

    def _answerCallbackQuery(self, params: JsonDict, files: Mapping[str, Any]) -> bool:
        query_id = str(params.get("callback_query_id"))
        with self._lock:
            if query_id not in self._queries or self._queries[query_id] is not None:
                raise bad_request(QUERY_INVALID.removeprefix("Bad Request: "))
            self._queries[query_id] = {k: v for k, v in params.items() if k != "callback_query_id"}
            return True

    def _setMyCommands(self, params: JsonDict, files: Mapping[str, Any]) -> bool:
        commands = list(params.get("commands") or [])
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command"))):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description") or "")) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        key = _commands_key(params.get("scope"), params.get("language_code") or "")
        with self._lock:
            self._commands[key] = commands
        return True

    def _deleteMyCommands(self, params: JsonDict, files: Mapping[str, Any]) -> bool:
        key = _commands_key(params.get("scope"), params.get("language_code") or "")
        with self._lock:
            self._commands.pop(key, None)
        return True

    def _getMyCommands(self, params: JsonDict, files: Mapping[str, Any]) -> list[JsonDict]:
        return self.bot_commands(params.get("scope"), params.get("language_code") or "")

    def _send_media(
        self, method: str, params: JsonDict, files: Mapping[str, tuple[str, bytes]]
    ) -> JsonDict:
        kind = MEDIA_KINDS[method]
        caption = params.get("caption")
        plain = None
        if caption is not None:
            plain = plain_text(
                str(caption), params.get("parse_mode"), MAX_CAPTION_LENGTH, "caption"
            )
        with self._lock:
            data = self._bot_message(params)
            value = params.get(kind)
            if kind in files:
                name, content = files[kind]
                stored = self._store_file(content, name or kind, kind)
            elif isinstance(value, str) and value.startswith("attach://") and value[9:] in files:
                name, content = files[value[9:]]
                stored = self._store_file(content, name or kind, kind)
            elif isinstance(value, str) and value in self._files:
                stored = self._files[value]
            else:
                raise bad_request("wrong file identifier/HTTP URL specified")
            data[kind] = _media(stored, kind)
            if plain:
                data["caption"] = plain
            return self._keep_bot_message(data, params, caption, stored)

    def _sendPhoto(self, params: JsonDict, files: Mapping[str, tuple[str, bytes]]) -> JsonDict:
        return self._send_media("sendPhoto", params, files)

    def _sendDocument(self, params: JsonDict, files: Mapping[str, tuple[str, bytes]]) -> JsonDict:
        return self._send_media("sendDocument", params, files)

    def _sendVoice(self, params: JsonDict, files: Mapping[str, tuple[str, bytes]]) -> JsonDict:
        return self._send_media("sendVoice", params, files)

    def _getFile(self, params: JsonDict, files: Mapping[str, Any]) -> JsonDict:
        with self._lock:
            stored = self._files.get(str(params.get("file_id")))
        if stored is None:
            raise bad_request("invalid file_id")
        if len(stored.content) > MAX_DOWNLOAD_BYTES:
            raise bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.content),
            "file_path": stored.file_path,
        }

    def _leaveChat(self, params: JsonDict, files: Mapping[str, Any]) -> bool:
        with self._lock:
            chat = self._chat(params.get("chat_id"))
            if chat["type"] == "private":
                raise bad_request("chat member status can't be changed in private chats")
            self._left.add(chat["id"])
            self._lock.notify_all()
            return True

    def _pinChatMessage(self, params: JsonDict, files: Mapping[str, Any]) -> bool:
        with self._lock:
            chat = self._chat(params.get("chat_id"))
            if chat["type"] != "private" and chat["id"] not in self._may_pin:
                raise bad_request("not enough rights to manage pinned messages in the chat")
            if self._find(chat["id"], params.get("message_id")) is None:
                raise bad_request("message to pin not found")
            self._pinned.setdefault(chat["id"], []).append(dict(params))
            self._lock.notify_all()
            return True

    def _getChat(self, params: JsonDict, files: Mapping[str, Any]) -> JsonDict:
        with self._lock:
            chat = dict(self._chat(params.get("chat_id")))
        gifts = dict.fromkeys(
            (
                "unlimited_gifts",
                "limited_gifts",
                "unique_gifts",
                "premium_subscription",
                "gifts_from_channels",
            ),
            False,
        )
        return chat | {"accent_color_id": 0, "max_reaction_count": 11, "accepted_gift_types": gifts}

    def _download(self, file_path: str) -> bytes | None:
        with self._lock:
            for stored in self._files.values():
                if stored.file_path == file_path:
                    return stored.content
        return None


# The Bot API methods the stub answers, each by TelegramStub._<method>; names are
# case-insensitive, as Telegram's are.
API_METHODS = {
    name.lower(): name
    for name in [
        "getMe",
        "getUpdates",
        "deleteWebhook",
        "sendMessage",
        "editMessageText",
        "editMessageReplyMarkup",
        "deleteMessage",
        "sendChatAction",
        "setMessageReaction",
        "answerCallbackQuery",
        "setMyCommands",
        "deleteMyCommands",
        "getMyCommands",
        "sendPhoto",
        "sendDocument",
        "sendVoice",
        "getFile",
        "leaveChat",
        "getChat",
        "pinChatMessage",
    ]
}


def _user(user_id: int) -> JsonDict:
    return {
        "id": user_id,
        "is_bot": False,
        "first_name": f"User {user_id}",
        "username": f"user{user_id}",
        "language_code": "en",
    }


def _media(stored: StoredFile, kind: str) -> Any:
    common = {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "file_size": len(stored.content),
    }
    if kind == "photo":
        return [common | {"width": 640, "height": 480}]
    if kind == "voice":
        return common | {"duration": 1, "mime_type": "audio/ogg"}
    return common | {"file_name": stored.name, "mime_type": stored.mime_type}


def _commands_key(scope: Any, language_code: str) -> tuple[str, str]:
    return json.dumps(scope or {"type": "default"}, sort_keys=True), language_code


def _coerce(name: str, value: str) -> Any:
    """A form field (always a string) as the JSON value it stands for."""
    try:
        if name in JSON_PARAMS:
            return json.loads(value)
        if name in INT_PARAMS:
            return int(value)
    except ValueError:
        raise bad_request(f"can't parse {name}") from None
    if name in BOOL_PARAMS:
        return value.lower() in ("true", "1")
    if name in ("chat_id", "user_id") and re.fullmatch(r"-?\d+", value):
        return int(value)
    return value


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], stub: TelegramStub
    ) -> None:
        super().__init__(address, handler)
        self.stub = stub
        self.control = False  # serve /_test/... (see TelegramStub.enable_control)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that went away
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm and delayed ACKs
    # every answer would wait about 40 ms, which real Telegram does not add.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _route(self) -> None:
        stub = self.server.stub
        url = urlsplit(self.path)
        body = self._read_body()
        if match := re.fullmatch(r"/file/bot([^/]+)/(.+)", url.path):
            if unquote(match.group(1)) != stub.token:
                self._send_json(401, ApiError(401, "Unauthorized").body())
                return
            content = stub._download(unquote(match.group(2)))
            if content is None:
                self._send_json(404, ApiError(404, "Not Found").body())
            else:
                self._send(200, "application/octet-stream", content)
            return
        if self.server.control and (control := re.fullmatch(r"/_test/([a-z_]+)", url.path)):
            self._send_json(200, stub._control(control.group(1), json.loads(body or b"{}")))
            return
        match = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)/?", url.path)
        if match is None:
            self._send_json(404, ApiError(404, "Not Found").body())
            return
        if unquote(match.group(1)) != stub.token:
            self._send_json(401, ApiError(401, "Unauthorized").body())
            return
        try:
            params, files = self._params(url.query, body)
            result = stub._call(match.group(2), params, files)
        except ApiError as error:
            self._send_json(error.code, error.body())
            return
        self._send_json(200, {"ok": True, "result": result})

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _params(self, query: str, body: bytes) -> tuple[JsonDict, dict[str, tuple[str, bytes]]]:
        params: JsonDict = {k: _coerce(k, v) for k, v in parse_qsl(query)}
        files: dict[str, tuple[str, bytes]] = {}
        content_type = self.headers.get("Content-Type") or ""
        if content_type.startswith("application/json"):
            try:
                decoded = json.loads(body or b"{}")
            except ValueError:
                raise bad_request("can't parse JSON body") from None
            if not isinstance(decoded, dict):
                raise bad_request("JSON body must be an object")
            params |= decoded
        elif content_type.startswith("application/x-www-form-urlencoded"):
            params |= {k: _coerce(k, v) for k, v in parse_qsl(body.decode())}
        elif content_type.startswith("multipart/form-data"):
            head = f"Content-Type: {content_type}\r\n\r\n".encode()
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True) or b""
                if not isinstance(name, str) or not isinstance(payload, bytes):
                    continue
                if part.get_filename() is not None:
                    files[name] = (part.get_filename() or "", payload)
                else:
                    params[name] = _coerce(name, payload.decode())
        return params, files

    def _send_json(self, status: int, body: Mapping[str, Any]) -> None:
        self._send(status, "application/json", json.dumps(body, ensure_ascii=False).encode())

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.stubs.telegram_api",
        description="Serve a stub of the Telegram Bot API on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the one token it accepts")
    parser.add_argument(
        "--control",
        action="store_true",
        help="also serve POST /_test/user_sends and /_test/bot_messages (JSON), so a test"
        " in another network namespace can play the user",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _options().parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with TelegramStub(args.port, args.token) as stub:
        stub.enable_control(args.control)
        print(stub.base_url, flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
