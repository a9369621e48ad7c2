"""A fake OpenAI / Anthropic HTTP server for tests, driven by the real `openai` and `anthropic` clients.

Stdlib only: a ThreadingHTTPServer on 127.0.0.1 in a daemon thread, so sync and async tests can share it.

    with FakeProviderServer() as srv:
        client = openai.OpenAI(base_url=srv.openai_base_url, api_key="test", max_retries=0)
        srv.script_chat('{"facts": ["likes tea"]}', Fault(status=500))
        srv.fail_next("embeddings", Fault(status=429, retry_after=0.1), times=2)

Endpoint families: "embeddings" (POST /v1/embeddings), "chat" (POST /v1/chat/completions) and
"anthropic" (POST /v1/messages). For each request the server picks at most one fault, in this order:
a pending `fail_next` fault, a persistent `set_fault` fault, a `Fault` at the head of the family's script.
A fault that does not decide the answer by itself (only a delay, a 2xx status, headers or truncation)
is applied to the normal answer. A scripted fault takes the script slot of its request, so such a
request answers with the default reply; faults from `fail_next` / `set_fault` never consume the script.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
import math
import re
import socket
import socketserver
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_REPLY",
    "FAMILIES",
    "FakeProviderServer",
    "Fault",
    "RecordedRequest",
    "fact",
    "fake_embedding",
    "relation",
]

log = logging.getLogger(__name__)

FAMILIES = ("embeddings", "chat", "anthropic")
DEFAULT_REPLY = '{"facts": []}'

_ROUTES = {
    "/v1/embeddings": "embeddings",
    "/v1/chat/completions": "chat",
    "/v1/messages": "anthropic",
}
_WORD = re.compile(r"\w+")
_BUCKETS_PER_TOKEN = 2
_PAUSE_SLICE = 0.02

_OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def fake_embedding(text: str, dims: int) -> list[float]:
    """Deterministic, L2-normalised bag-of-words vector: texts sharing words get a high cosine similarity."""
    if dims < 1:
        raise ValueError(f"dims must be positive, got {dims}")
    vector = [0.0] * dims
    for token in _WORD.findall(text.lower()):
        digest = hashlib.blake2b(token.encode(), digest_size=8 * _BUCKETS_PER_TOKEN).digest()
        for i in range(_BUCKETS_PER_TOKEN):
            value = int.from_bytes(digest[8 * i : 8 * i + 8], "little")
            vector[(value >> 1) % dims] += 1.0 if value & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0:
        # Empty text, or (tiny dims) every bucket cancelled out.
        return [1.0 / math.sqrt(dims)] * dims
    return [x / norm for x in vector]


def relation(source: str, name: str, target: str) -> dict[str, str]:
    """One relation of a scripted fact, as the extract-and-decide prompt asks for it."""
    return {"source": source, "relation": name, "target": target}


def fact(
    text: str,
    entities: Sequence[tuple[str, str] | dict[str, Any]] = (),
    relations: Sequence[dict[str, str]] = (),
    *,
    event: str = "ADD",
    target: str | None = None,
    memory_type: str = "LONG_TERM",
) -> dict[str, Any]:
    """One item of a scripted `{"facts": [...]}` answer: entities as (text, type) pairs or dicts
    (e.g. with "same_as"), relations from `relation()`.

        srv.chat_responder = lambda p: json.dumps({"facts": [fact("Lives in Paris", [("Paris", "place")],
                                                               [relation("user", "lives_in", "Paris")])]})
    """
    return {
        "text": text,
        "event": event,
        "target": target,
        "memory_type": memory_type,
        "entities": [e if isinstance(e, dict) else {"text": e[0], "type": e[1]} for e in entities],
        "relations": list(relations),
    }


def _count_words(text: str) -> int:
    return len(_WORD.findall(text))


def _text_of(content: Any) -> str:
    """Plain text of a message `content`: a string or a list of content parts / blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_text_of(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


@dataclass(frozen=True)
class Fault:
    """How to misbehave for one request (or for every request, via `set_fault`).

    `body` is sent verbatim with `status` (default 200) and `content_type`; otherwise a non-2xx
    `status` sends an error in the family's own JSON format. `delay` sleeps before answering,
    `truncate` cuts the JSON body in half (Content-Length matches the cut body), `disconnect`
    closes the connection without any answer. `retry_after` sets Retry-After and retry-after-ms.
    """

    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    body: bytes | None = None
    truncate: bool = False
    disconnect: bool = False
    message: str | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"bad HTTP status {self.status}")
        if self.delay < 0 or (self.retry_after is not None and self.retry_after < 0):
            raise ValueError("delay and retry_after must not be negative")

    @property
    def decides_answer(self) -> bool:
        """True when the fault replaces the normal answer instead of modifying it."""
        return (
            self.disconnect
            or self.body is not None
            or (self.status is not None and not 200 <= self.status < 300)
        )

    def response_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.retry_after is not None:
            headers["retry-after"] = f"{self.retry_after:g}"
            headers["retry-after-ms"] = str(round(self.retry_after * 1000))
        return headers


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    family: str | None
    headers: dict[str, str]
    json: Any
    raw: bytes
    time: float
    """time.monotonic() when the request arrived."""


@dataclass
class _Answer:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    disconnect: bool = False


class _RequestError(Exception):
    """A client error (4xx) found while validating a request."""

    def __init__(self, message: str, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param


Reply = str | dict[str, Any] | Fault
Responder = Callable[[dict[str, Any]], str | dict[str, Any]]


class FakeProviderServer:
    """Fake OpenAI and Anthropic APIs with scripted replies, fault injection and request recording."""

    def __init__(self, embedding_dims: int = 384, *, port: int = 0) -> None:
        if embedding_dims < 1:
            raise ValueError("embedding_dims must be positive")
        self.embedding_dims = embedding_dims
        self._port = port
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)
        self._generation = 0
        self._init_state()

    def _init_state(self) -> None:
        self._requests: list[RecordedRequest] = []
        self._scripts: dict[str, deque[Reply]] = {family: deque() for family in FAMILIES}
        self._fail_next: dict[str, deque[Fault]] = {family: deque() for family in FAMILIES}
        self._faults: dict[str | None, Fault] = {}
        self._embeddings: dict[str, list[float]] = {}
        # Unexpected exceptions raised while serving, e.g. by a responder.
        self.errors: list[BaseException] = []
        # Seconds added before every answer.
        self.latency = 0.0
        # When set, every embedding has this size, whatever was asked for.
        self.embedding_dims_override: int | None = None
        self.default_chat_reply = DEFAULT_REPLY
        self.chat_responder: Responder | None = None
        self.default_anthropic_reply = DEFAULT_REPLY
        self.anthropic_responder: Responder | None = None

    # Lifecycle

    def start(self) -> FakeProviderServer:
        if self._server is not None:
            raise RuntimeError("FakeProviderServer is already running")
        self._stop_event = threading.Event()
        self._server = _HTTPServer(self, self._port)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-provider-server:{self._server.server_port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut down promptly: requests still waiting out a delay are dropped without an answer."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stop_event.set()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeProviderServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeProviderServer is not running")
        return self._server.server_port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    # Configuration

    def reset(self) -> None:
        """Forget scripts, faults, overrides, recordings and errors; requests still in flight are dropped."""
        with self._lock:
            self._generation += 1
            self._init_state()

    def script_chat(self, *replies: Reply) -> None:
        self._script("chat", replies)

    def script_anthropic(self, *replies: Reply) -> None:
        self._script("anthropic", replies)

    def _script(self, family: str, replies: Iterable[Reply]) -> None:
        replies = list(replies)
        for reply in replies:
            if not isinstance(reply, str | dict | Fault):
                raise TypeError(f"a scripted reply must be a str, dict or Fault, not {type(reply).__name__}")
        with self._lock:
            self._scripts[family].extend(replies)

    def fail_next(self, family: str, fault: Fault, times: int = 1) -> None:
        """Answer the next `times` requests of `family` with `fault`, before anything scripted."""
        _check_family(family)
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._fail_next[family].extend([fault] * times)

    def set_fault(self, fault: Fault | None, family: str | None = None) -> None:
        """Apply `fault` to every request of `family` (all families when None) until cleared with None."""
        if family is not None:
            _check_family(family)
        with self._lock:
            if fault is None:
                self._faults.pop(family, None)
            else:
                self._faults[family] = fault

    def set_embedding(self, text: str, vector: Sequence[float]) -> None:
        """Return exactly `vector` whenever `text` is embedded."""
        with self._lock:
            self._embeddings[text] = [float(x) for x in vector]

    # Recordings

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, family: str) -> list[RecordedRequest]:
        _check_family(family)
        with self._lock:
            return [r for r in self._requests if r.family == family]

    def count(self, family: str | None = None) -> int:
        """Requests received for `family`, or in total when None."""
        if family is None:
            with self._lock:
                return len(self._requests)
        return len(self.requests_for(family))

    def last_request(self, family: str | None = None) -> RecordedRequest:
        found = self.requests if family is None else self.requests_for(family)
        if not found:
            raise LookupError(f"no request recorded for {family or 'any family'}")
        return found[-1]

    # Serving (runs on the server's handler threads)

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = urlsplit(handler.path).path
        family = _ROUTES.get(path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length > 0 else b""
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        record = RecordedRequest(
            method=method,
            path=path,
            family=family,
            headers={k.lower(): v for k, v in handler.headers.items()},
            json=payload,
            raw=raw,
            time=time.monotonic(),
        )
        with self._lock:
            self._requests.append(record)

        answer: _Answer | None
        if family is None:
            answer = _error_answer(None, 404, f"Unknown request URL: {method} {path}")
        elif method != "POST":
            answer = _error_answer(family, 405, f"Method {method} not allowed for {path}")
        else:
            try:
                answer = self._answer(family, payload)
            except Exception as exc:
                with self._lock:
                    self.errors.append(exc)
                log.exception("fake provider server failed on %s", path)
                answer = _error_answer(family, 500, f"fake server error: {exc!r}")
        if answer is not None:
            _send(handler, answer)

    def _answer(self, family: str, payload: Any) -> _Answer | None:
        """The answer for one request of `family`, or None to drop it (server stopped or reset)."""
        with self._lock:
            generation = self._generation
            latency = self.latency
            fault = self._take_fault(family)
            scripted = False
            script = self._scripts[family]
            if fault is None and script and isinstance(script[0], Fault):
                head = script.popleft()
                assert isinstance(head, Fault)
                fault, scripted = head, True

        if not self._pause(latency + (fault.delay if fault else 0.0), generation):
            return None
        if fault is not None and fault.decides_answer:
            return _fault_answer(family, fault)
        try:
            if not isinstance(payload, dict):
                raise _RequestError("We could not parse the JSON body of your request.")
            if family == "embeddings":
                body = self._embeddings_response(payload)
            else:
                outcome = self._chat_body(family, payload, generation, scripted)
                if outcome is None or isinstance(outcome, _Answer):
                    return outcome
                body, fault = outcome[0], outcome[1] or fault
        except _RequestError as exc:
            return _error_answer(family, exc.status, str(exc), param=exc.param)
        return self._with_fault(family, json.dumps(body).encode(), fault)

    def _chat_body(
        self, family: str, payload: dict[str, Any], generation: int, scripted: bool
    ) -> tuple[dict[str, Any], Fault | None] | _Answer | None:
        """A chat completion body (and the scripted fault that shapes it), a fault's answer, or None."""
        fault: Fault | None = None
        reply = self._next_reply(family, payload, generation, use_script=not scripted)
        if isinstance(reply, Fault):
            # A scripted fault reached the head of the queue while this request was pausing.
            if not self._pause(reply.delay, generation):
                return None
            if reply.decides_answer:
                return _fault_answer(family, reply)
            fault = reply
            reply = self._next_reply(family, payload, generation, use_script=False)
        if reply is None:
            return None
        assert not isinstance(reply, Fault)
        return self._chat_response(family, payload, reply), fault

    def _with_fault(self, family: str, data: bytes, fault: Fault | None) -> _Answer:
        answer = _Answer(status=200, body=data, headers={_request_id_header(family): self._new_id("req")})
        if fault is not None:
            answer.status = fault.status or 200
            answer.headers.update(fault.response_headers())
            if fault.truncate:
                answer.body = data[: len(data) // 2]
        return answer

    def _take_fault(self, family: str) -> Fault | None:
        pending = self._fail_next[family]
        if pending:
            return pending.popleft()
        return self._faults.get(family) or self._faults.get(None)

    def _next_reply(
        self, family: str, payload: dict[str, Any], generation: int, *, use_script: bool
    ) -> Reply | None:
        with self._lock:
            if generation != self._generation:
                return None
            script = self._scripts[family]
            if use_script and script:
                return script.popleft()
            if family == "chat":
                responder, default = self.chat_responder, self.default_chat_reply
            else:
                responder, default = self.anthropic_responder, self.default_anthropic_reply
        return default if responder is None else responder(payload)

    def _pause(self, seconds: float, generation: int) -> bool:
        """Sleep in small slices; False as soon as the server stops or is reset."""
        deadline = time.monotonic() + seconds
        while True:
            if self._stop_event.is_set() or generation != self._generation:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            self._stop_event.wait(min(_PAUSE_SLICE, remaining))

    def _embeddings_response(self, payload: dict[str, Any]) -> dict[str, Any]:
        texts = _embedding_inputs(payload.get("input"))
        dims = payload.get("dimensions")
        if dims is None:
            dims = self.embedding_dims
        elif isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
            raise _RequestError(
                f"Invalid 'dimensions': {dims!r}. Expected a positive integer.", param="dimensions"
            )
        encoding = payload.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise _RequestError(
                f"Invalid 'encoding_format': {encoding!r}. Expected 'float' or 'base64'.",
                param="encoding_format",
            )
        with self._lock:
            overrides = dict(self._embeddings)
            if self.embedding_dims_override is not None:
                dims = self.embedding_dims_override

        data = []
        for index, text in enumerate(texts):
            vector = overrides[text] if text in overrides else fake_embedding(text, dims)
            embedding: list[float] | str = vector
            if encoding == "base64":
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(max(1, _count_words(text)) for text in texts)
        return {
            "object": "list",
            "data": data,
            "model": payload.get("model", "fake-embedding"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _chat_response(
        self, family: str, payload: dict[str, Any], reply: str | dict[str, Any]
    ) -> dict[str, Any]:
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _RequestError("'messages' must be a non-empty array.", param="messages")
        if payload.get("stream"):
            raise _RequestError("The fake provider server does not support streaming.", param="stream")
        if isinstance(reply, dict):
            return reply
        if not isinstance(reply, str):
            raise TypeError(f"a responder must return a str or dict, not {type(reply).__name__}")

        prompt_text = " ".join(_text_of(m.get("content")) for m in messages if isinstance(m, dict))
        model = payload.get("model", "fake-model")
        if family == "chat":
            prompt_tokens, completion_tokens = _count_words(prompt_text), _count_words(reply)
            return {
                "id": self._new_id("chatcmpl"),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        system = _text_of(payload.get("system"))
        return {
            "id": self._new_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": reply}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": _count_words(system + " " + prompt_text),
                "output_tokens": _count_words(reply),
            },
        }

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):06d}"


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")


def _embedding_inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    if isinstance(value, list) and value:
        raise _RequestError("The fake server accepts string inputs only, not token arrays.", param="input")
    raise _RequestError("'input' must be a string or a non-empty array of strings.", param="input")


def _request_id_header(family: str | None) -> str:
    return "request-id" if family == "anthropic" else "x-request-id"


def _error_answer(family: str | None, status: int, message: str, param: str | None = None) -> _Answer:
    """An error in the family's format: Anthropic's for "anthropic", OpenAI's for everything else."""
    if family == "anthropic":
        body: dict[str, Any] = {
            "type": "error",
            "error": {"type": _ANTHROPIC_ERRORS.get(status, "api_error"), "message": message},
        }
    else:
        error_type, code = _OPENAI_ERRORS.get(status, ("server_error", None))
        body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return _Answer(
        status=status, body=json.dumps(body).encode(), headers={_request_id_header(family): "req_fake_error"}
    )


def _fault_answer(family: str, fault: Fault) -> _Answer:
    if fault.disconnect:
        return _Answer(status=0, disconnect=True)
    if fault.body is not None:
        answer = _Answer(status=fault.status or 200, body=fault.body, content_type=fault.content_type)
    else:
        assert fault.status is not None
        answer = _error_answer(family, fault.status, fault.message or f"Injected fault: HTTP {fault.status}")
    answer.headers.update(fault.response_headers())
    if fault.truncate:
        answer.body = answer.body[: len(answer.body) // 2]
    return answer


def _send(handler: BaseHTTPRequestHandler, answer: _Answer) -> None:
    if answer.disconnect:
        handler.close_connection = True
        return
    handler.send_response(answer.status)
    handler.send_header("Content-Type", answer.content_type)
    handler.send_header("Content-Length", str(len(answer.body)))
    for name, value in answer.headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(answer.body)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so no idle keep-alive threads outlive stop().
    protocol_version = "HTTP/1.0"
    server_version = "FakeProviderServer/1.0"
    sys_version = ""
    server: _HTTPServer

    def _dispatch(self) -> None:
        self.server.owner._handle(self, self.command)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("fake provider server: " + format, *args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: FakeProviderServer, port: int) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call socket.getfqdn(), a reverse DNS lookup that can be slow.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.server_address[1]

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        # A client that timed out and hung up is expected in fault tests; anything else is worth a log.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        log.exception("fake provider server: error while serving %s", client_address)
