"""A local stand-in for the OpenAI Responses API, for running the real Codex CLI.

Stdlib only. It listens on 127.0.0.1 on a free port and answers ``POST /v1/responses``
with a server-sent event stream, the only way Codex asks::

    with OpenAIStub() as stub:
        argv += codex_provider_args(stub)  # a custom provider with wire_api "responses"
        env = {"OPENAI_API_KEY": "sk-fake", "CODEX_HOME": ...}
        stub.set_behaviour("echo", chunk_size=2, chunk_delay=0.05)

Behaviours (:class:`tests.stubs.model_stub.Mode`): ``echo`` answers ``ECHO: <the last
user text>`` in ``response.output_text.delta`` events; ``stall`` sends
``response.created`` and then nothing until the client leaves; ``error`` fails with
HTTP ``status`` and an error body in OpenAI's shape; ``midstream`` streams half the
answer and then ``response.failed``; ``tool`` asks for one ``exec_command`` call and
answers the follow-up request (which carries its output) with ``Tool said: <output>``.

Codex's built-in provider first tries a WebSocket on ``GET /v1/responses``; the stub
refuses it (426), and Codex falls back to the event stream.

Standalone: ``python -m tests.stubs.openai_api --port 0`` prints the base URL and serves
until interrupted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
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

__all__ = ["ECHO_PREFIX", "TOOL_ANSWER_PREFIX", "TOOL_PREAMBLE", "OpenAIStub", "codex_args"]

# OpenAI's error "type" and "code" for each HTTP status the stub is asked for.
ERRORS = {
    400: ("invalid_request_error", "bad_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", "server_error"),
    503: ("server_error", "overloaded"),
}


def error_body(status: int) -> JsonDict:
    kind, code = ERRORS.get(status, ("server_error", "server_error"))
    return {"error": {"message": f"stub {code} (HTTP {status})", "type": kind, "code": code}}


def codex_args(base_url: str) -> list[str]:
    """Codex options that send its requests to ``base_url`` (``/v1`` is added).

    A custom provider: Codex ignores ``OPENAI_BASE_URL``, and its built-in provider
    tries a WebSocket for seconds before it streams over HTTP.
    """
    provider = (
        '{name="stub",base_url="' + base_url + '/v1",env_key="OPENAI_API_KEY",wire_api="responses"}'
    )
    return ["-c", "model_provider=stub", "-c", f"model_providers.stub={provider}"]


def _texts(item: Mapping[str, Any]) -> list[str]:
    content = item.get("content")
    if isinstance(content, str):
        return [content]
    return [
        str(part.get("text", ""))
        for part in content or []
        if isinstance(part, dict) and part.get("type") in ("input_text", "output_text", "text")
    ]


def last_user_text(body: Mapping[str, Any]) -> str:
    """The last text of the last user message: the prompt of this turn."""
    for item in reversed(body.get("input") or []):
        if isinstance(item, dict) and item.get("role") == "user":
            texts = _texts(item)
            if texts:
                return texts[-1]
    return ""


def tool_output(body: Mapping[str, Any]) -> str | None:
    """The output of the tool call answered in the last input item, None when the
    request does not end with one. Codex wraps it: "Chunk ID ... Output:\\n<output>"."""
    items = [i for i in body.get("input") or [] if isinstance(i, dict)]
    if not items or items[-1].get("type") != "function_call_output":
        return None
    output = items[-1].get("output")
    if isinstance(output, dict):
        output = output.get("content", "")
    text = str(output or "")
    return text.split("Output:\n", 1)[-1].strip()


class OpenAIStub(ModelStub):
    name = "OpenAI"

    def handler_class(self) -> type[StubHandler]:
        return _Handler


class _Handler(StubHandler):
    server: Any

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        body = self.read_json()
        if path.endswith("/responses"):
            behaviour = self.stub.record("POST", self.path, body)
            self.guarded(lambda: self._responses(body, behaviour))
            return
        self.stub.record("POST", self.path, None)
        self.unknown()

    def do_GET(self) -> None:
        self.stub.record("GET", self.path, None)
        path = urlsplit(self.path).path.rstrip("/")
        if path.endswith("/responses"):  # the WebSocket of the built-in provider
            self.send_json(426, {"error": {"message": "no WebSocket here", "type": "stub"}})
        elif path.endswith("/models"):
            self.send_json(200, {"object": "list", "data": [], "models": []})
        else:
            self.unknown()

    def _responses(self, body: JsonDict, behaviour: Behaviour) -> None:
        number = self.stub.next_id()
        request_id = f"req_stub_{number}"
        self.sleep(behaviour.first_byte_delay)
        if behaviour.mode is Mode.ERROR:
            self.send_json(behaviour.status, error_body(behaviour.status), x_request_id=request_id)
            return
        response_id = f"resp_stub_{number:04d}"
        model = str(body.get("model") or "gpt-stub")
        self.start_stream(x_request_id=request_id)
        created = {"id": response_id, "object": "response", "model": model, "status": "in_progress"}
        self.sse({"type": "response.created", "response": created}, "response.created")
        if behaviour.mode is Mode.STALL:
            self.wait_for_client_to_leave()
            return
        output = tool_output(body)
        items: list[JsonDict] = []
        if behaviour.mode is Mode.TOOL and output is None:
            items.append(
                self._message(len(items), f"msg_stub_{number}_0", TOOL_PREAMBLE, behaviour)
            )
            call = {
                "type": "function_call",
                "id": f"fc_stub_{number}",
                "call_id": f"call_stub_{number}",
                "name": "exec_command",
                "arguments": json.dumps({"cmd": behaviour.command}),
                "status": "completed",
            }
            self.sse(
                {"type": "response.output_item.done", "output_index": len(items), "item": call},
                "response.output_item.done",
            )
            items.append(call)
        else:
            text = (
                TOOL_ANSWER_PREFIX + output
                if behaviour.mode is Mode.TOOL and output is not None
                else ECHO_PREFIX + last_user_text(body)
            )
            if behaviour.mode is Mode.MIDSTREAM:
                item_id = f"msg_stub_{number}_0"
                item = {"type": "message", "role": "assistant", "id": item_id, "content": []}
                self.sse(
                    {"type": "response.output_item.added", "output_index": 0, "item": item},
                    "response.output_item.added",
                )
                self._deltas(item_id, 0, text[: len(text) // 2], behaviour)
                failed = {
                    **created,
                    "status": "failed",
                    "error": {"code": "server_error", "message": "stub mid-stream failure"},
                }
                self.sse({"type": "response.failed", "response": failed}, "response.failed")
                self.end_stream()
                return
            items.append(self._message(0, f"msg_stub_{number}_0", text, behaviour))
        input_tokens = token_estimate(json.dumps(body.get("input", [])))
        output_tokens = sum(token_estimate(json.dumps(i)) for i in items)
        completed = {
            **created,
            "status": "completed",
            "output": items,
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + output_tokens,
            },
        }
        self.sse({"type": "response.completed", "response": completed}, "response.completed")
        self.end_stream()

    def _message(self, index: int, item_id: str, text: str, behaviour: Behaviour) -> JsonDict:
        item: JsonDict = {"type": "message", "role": "assistant", "id": item_id, "content": []}
        self.sse(
            {"type": "response.output_item.added", "output_index": index, "item": item},
            "response.output_item.added",
        )
        self._deltas(item_id, index, text, behaviour)
        done = {**item, "status": "completed"}
        done["content"] = [{"type": "output_text", "text": text, "annotations": []}]
        self.sse(
            {"type": "response.output_item.done", "output_index": index, "item": done},
            "response.output_item.done",
        )
        return done

    def _deltas(self, item_id: str, index: int, text: str, behaviour: Behaviour) -> None:
        for number, piece in enumerate(chunks(text, behaviour.chunk_size)):
            if number:
                self.sleep(behaviour.chunk_delay)
            delta = {
                "type": "response.output_text.delta",
                "item_id": item_id,
                "output_index": index,
                "content_index": 0,
                "delta": piece,
            }
            self.sse(delta, "response.output_text.delta")


def main(argv: list[str] | None = None) -> int:
    args = standalone_options("tests.stubs.openai_api", "the OpenAI Responses API").parse_args(argv)
    return serve_standalone(OpenAIStub, args)


if __name__ == "__main__":
    sys.exit(main())
