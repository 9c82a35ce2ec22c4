"""A local stand-in for the Gemini API, for running the real Gemini CLI.

Stdlib only. It listens on 127.0.0.1 on a free port and answers
``POST /v1beta/models/<model>:streamGenerateContent?alt=sse`` (the turn, an event
stream) and ``:generateContent`` (the CLI's side calls: its model router, which asks for
JSON in a schema, and session summaries)::

    with GeminiStub() as stub:
        env = gemini_env(stub, home)  # GOOGLE_GEMINI_BASE_URL, GEMINI_API_KEY, ...
        stub.set_behaviour("echo", chunk_size=2, chunk_delay=0.05)

Behaviours (:class:`tests.stubs.model_stub.Mode`) apply to the turn; side calls always
succeed, so an error test does not wait for the router's own retries. ``echo`` answers
``ECHO: <the last user text>`` in chunks; ``stall`` sends the headers and then nothing
until the client leaves; ``error`` fails with HTTP ``status`` and an error body in
Google's shape; ``midstream`` streams half the answer and ends the stream without a
finish reason; ``tool`` asks for one ``run_shell_command`` call (when the CLI offers
that tool; else it echoes) and answers the follow-up with ``Tool said: <output>``.

Standalone: ``python -m tests.stubs.gemini_api --port 0`` prints the base URL and serves
until interrupted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.stubs.model_stub import (
    ECHO_PREFIX,
    TOOL_ANSWER_PREFIX,
    TOOL_PREAMBLE,
    Behaviour,
    JsonDict,
    Mode,
    ModelStub,
    StubHandler,
    chunks,
    serve_standalone,
    standalone_options,
    token_estimate,
)

__all__ = ["ECHO_PREFIX", "TOOL_ANSWER_PREFIX", "TOOL_PREAMBLE", "GeminiStub", "gemini_home"]

SHELL_TOOL = "run_shell_command"
STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}

# What the CLI needs in its home to use an API key against a base URL in headless mode:
# without a pinned auth type, GOOGLE_GEMINI_BASE_URL selects "gateway", which headless
# mode refuses (exit 41).
SETTINGS: JsonDict = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "privacy": {"usageStatisticsEnabled": False},
    "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
}


def gemini_home(home: Path, *, max_attempts: int | None = None) -> Path:
    """Write the CLI's settings into ``home`` (its GEMINI_CLI_HOME); returns ``home``.

    ``max_attempts`` caps the tries of a failing turn (the CLI's default is 10)."""
    values = json.loads(json.dumps(SETTINGS))
    if max_attempts is not None:
        values["general"]["maxAttempts"] = max_attempts
    settings = home / ".gemini" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")
    return home


def error_body(status: int) -> JsonDict:
    name = STATUSES.get(status, "INTERNAL")
    return {"error": {"code": status, "message": f"stub {name} (HTTP {status})", "status": name}}


def _contents(body: Mapping[str, Any]) -> list[JsonDict]:
    return [c for c in body.get("contents") or [] if isinstance(c, dict)]


def last_user_text(body: Mapping[str, Any]) -> str:
    """The last text part of the last user content that has one: the prompt."""
    for content in reversed(_contents(body)):
        if content.get("role", "user") != "user":
            continue
        texts = [
            p["text"] for p in content.get("parts") or [] if isinstance(p, dict) and "text" in p
        ]
        if texts:
            return str(texts[-1])
    return ""


def tool_output(body: Mapping[str, Any]) -> str | None:
    """The output in the function response of the last content, None without one."""
    contents = _contents(body)
    if not contents:
        return None
    for part in contents[-1].get("parts") or []:
        if isinstance(part, dict) and isinstance(part.get("functionResponse"), dict):
            response = part["functionResponse"].get("response") or {}
            output = response.get("output", response) if isinstance(response, dict) else response
            return output if isinstance(output, str) else json.dumps(output)
    return None


def offers_tool(body: Mapping[str, Any], name: str) -> bool:
    for tool in body.get("tools") or []:
        for declaration in (tool or {}).get("functionDeclarations") or []:
            if isinstance(declaration, dict) and declaration.get("name") == name:
                return True
    return False


def schema_answer(schema: Mapping[str, Any]) -> Any:
    """A small value that fits a JSON schema: what the router's side call wants."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = str(schema.get("type", "string")).lower()
    if kind == "object":
        properties = schema.get("properties") or {}
        return {key: schema_answer(value) for key, value in properties.items()}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return max(1, int(schema.get("minimum", 1)))
    if kind == "boolean":
        return False
    return "simple"


class GeminiStub(ModelStub):
    name = "Gemini"

    def handler_class(self) -> type[StubHandler]:
        return _Handler


class _Handler(StubHandler):
    server: Any

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self.read_json()
        model = path.rsplit("/", 1)[-1].split(":", 1)[0]
        if path.endswith(":streamGenerateContent"):
            behaviour = self.stub.record("POST", self.path, body)
            self.guarded(lambda: self._stream(model, body, behaviour))
        elif path.endswith(":generateContent"):
            self.stub.record("POST", self.path, None)
            self._side_call(model, body)
        elif path.endswith(":countTokens"):
            self.stub.record("POST", self.path, None)
            self.send_json(200, {"totalTokens": token_estimate(json.dumps(body))})
        else:
            self.stub.record("POST", self.path, None)
            self.unknown()

    def do_GET(self) -> None:
        self.stub.record("GET", self.path, None)
        self.unknown()

    def _side_call(self, model: str, body: JsonDict) -> None:
        config = body.get("generationConfig") or {}
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        text = json.dumps(schema_answer(schema)) if isinstance(schema, dict) else "Stub summary"
        self.send_json(200, self._chunk(model, [{"text": text}], body, text, finished=True))

    def _stream(self, model: str, body: JsonDict, behaviour: Behaviour) -> None:
        self.sleep(behaviour.first_byte_delay)
        if behaviour.mode is Mode.ERROR:
            self.send_json(behaviour.status, error_body(behaviour.status))
            return
        self.start_stream()
        if behaviour.mode is Mode.STALL:
            self.wait_for_client_to_leave()
            return
        output = tool_output(body)
        if behaviour.mode is Mode.TOOL and output is None and offers_tool(body, SHELL_TOOL):
            self._text(model, body, TOOL_PREAMBLE, behaviour, finished=False)
            call = {"functionCall": {"name": SHELL_TOOL, "args": {"command": behaviour.command}}}
            self.sse(self._chunk(model, [call], body, TOOL_PREAMBLE, finished=True))
            self.end_stream()
            return
        if behaviour.mode is Mode.TOOL and output is not None:
            text = TOOL_ANSWER_PREFIX + output
        else:
            text = ECHO_PREFIX + last_user_text(body)
        if behaviour.mode is Mode.MIDSTREAM:
            self._text(model, body, text[: len(text) // 2], behaviour, finished=False)
        else:
            self._text(model, body, text, behaviour, finished=True)
        self.end_stream()

    def _text(
        self, model: str, body: JsonDict, text: str, behaviour: Behaviour, *, finished: bool
    ) -> None:
        pieces = chunks(text, behaviour.chunk_size)
        for number, piece in enumerate(pieces):
            if number:
                self.sleep(behaviour.chunk_delay)
            last = finished and number == len(pieces) - 1
            self.sse(self._chunk(model, [{"text": piece}], body, text, finished=last))

    def _chunk(
        self, model: str, parts: list[JsonDict], body: JsonDict, text: str, *, finished: bool
    ) -> JsonDict:
        candidate: JsonDict = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finished:
            candidate["finishReason"] = "STOP"
        prompt_tokens = token_estimate(json.dumps(body.get("contents", [])))
        answer_tokens = token_estimate(text)
        return {
            "candidates": [candidate],
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": answer_tokens,
                "totalTokenCount": prompt_tokens + answer_tokens,
            },
            "modelVersion": model,
            "responseId": f"stub-{self.stub.next_id()}",
        }


def main(argv: list[str] | None = None) -> int:
    args = standalone_options("tests.stubs.gemini_api", "the Gemini API").parse_args(argv)
    return serve_standalone(GeminiStub, args)


if __name__ == "__main__":
    sys.exit(main())
