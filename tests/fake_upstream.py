"""A fake LLM provider on 127.0.0.1 speaking the OpenAI and Anthropic streaming wire formats exactly.

It runs in a background thread with its own event loop, so sync tests, async tests, browser tests and
the benchmark can all share one instance. A test scripts what the next requests get:

    upstream.script(Scenario.http_error(503), Scenario.text("Hello there"))

Every request is recorded (path, headers, JSON body); the server notices when a client closes the
connection before the reply finished (`closed_early`, `wait_closed`). Replies use chunked transfer
encoding with one chunk per event, so a cut connection is a transport error for the client, as with a
real provider. Plain asyncio rather than a web framework: the server must control exactly when bytes
are flushed, cut or withheld, and see the client's close at once.
"""

import asyncio
import json
import re
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate, pairwise
from typing import Any, Literal
from urllib.parse import parse_qsl

from tests.fake_responses import RESPONSES_PATH, BackgroundResponse, cancelled_body, response_events

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/anthropic/v1/messages"
DEFAULT_TOKENS = ("Hello", ",", " world", "!")

# "failed" is the Responses API's `response.failed` (elsewhere the same as "error").
End = Literal["finish", "error", "failed", "cut", "stall", "no_finish", "garbled"]
# The delta field a compatible server streams reasoning in: vLLM, DeepSeek and llama.cpp
# `reasoning_content`; Ollama, OpenRouter and newer vLLM `reasoning`; some `reasoning_text`.
ReasoningField = Literal["reasoning_content", "reasoning", "reasoning_text"]
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

# Error `type` each provider puts in an HTTP error body, by status.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
_ANTHROPIC_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}


def split_text(text: str) -> tuple[str, ...]:
    """Small pieces (a word with its leading space, or punctuation), as a tokenizer would stream them."""
    return tuple(re.findall(r"\s*\w+|\s*[^\w\s]|\s+", text))


@dataclass(frozen=True)
class Scenario:
    """What the fake upstream does with one request. Build one with the class methods below."""

    tokens: tuple[str, ...] = DEFAULT_TOKENS
    delay: float = 0.0  # seconds before each token
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # HTTP error body; None: the provider's usual error body for `status`
    end: End = "finish"  # how the stream ends once `after` tokens were sent
    after: int | None = None  # tokens sent before `end` happens; None: all of them
    finish_reason: str = "stop"  # OpenAI terms; Anthropic gets end_turn / max_tokens
    input_tokens: int = 12  # reported usage; output tokens = tokens sent, reasoning ones included
    # Prompt-cache usage, reported only when set: OpenAI's prompt_tokens_details.cached_tokens and
    # .cache_write_tokens, Anthropic's cache_read_input_tokens and cache_creation_input_tokens.
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    # Added to the usage of Anthropic's message_delta: newer API versions repeat the cumulative input
    # counts there, and give output_tokens_details.
    delta_usage: dict[str, Any] = field(default_factory=dict)
    error_type: str = "overloaded_error"  # the mid-stream error (end="error")
    error_message: str = "Overloaded"
    error_code: int | str | None = None
    extra_delta: dict[str, Any] = field(default_factory=dict)  # added to OpenAI token deltas (Ollama's role, reasoning)
    # Streamed before the tokens, one chunk each, in the delta field `reasoning_field` (OpenAI wire format
    # only); `after` counts only the tokens.
    reasoning_tokens: tuple[str, ...] = ()
    reasoning_field: ReasoningField = "reasoning_content"
    # Anthropic thinking: the reasoning tokens stream in a `thinking` block ended by a signature_delta
    # with `signature` (a block is sent if either is set), then one `redacted_thinking` block per item
    # of `redacted` (its opaque data), then the text block.
    signature: str = ""
    redacted: tuple[str, ...] = ()
    # Responses API: the reasoning summary's parts (each a tuple of tokens; if unset, `reasoning_tokens`
    # make one), streamed as reasoning_summary_text deltas, or as reasoning_text deltas (`reasoning_kind`).
    summaries: tuple[tuple[str, ...], ...] = ()
    reasoning_kind: Literal["summary", "text"] = "summary"
    # Stop before the delta of this index (reasoning and text counted together) until the test calls
    # `upstream.release()`: a reply held mid-stream whatever the machine's speed.
    hold_after: int | None = None
    # Responses API: send each event as two chunks, cut after this many bytes (a frame split by the network).
    split_at: int | None = None

    @classmethod
    def reply(cls, *tokens: str, delay: float = 0.0, **fields: Any) -> "Scenario":
        return cls(tokens=tokens or DEFAULT_TOKENS, delay=delay, **fields)

    @classmethod
    def text(cls, text: str, *, delay: float = 0.0, **fields: Any) -> "Scenario":
        """A reply whose concatenated tokens are exactly `text`."""
        return cls(tokens=split_text(text), delay=delay, **fields)

    @classmethod
    def with_reasoning(
        cls, reasoning: str, text: str, *, field: ReasoningField = "reasoning_content", **fields: Any
    ) -> "Scenario":
        """A thinking model on a compatible server: `reasoning` in chunks of the delta field `field`, then
        `text` as content. Pass `extra_delta` for the rest of a server's delta (Ollama's role and empty
        content, DeepSeek's nulls): it goes into the reasoning chunks too."""
        return cls(tokens=split_text(text), reasoning_tokens=split_text(reasoning), reasoning_field=field, **fields)

    @classmethod
    def anthropic_thinking(
        cls, reasoning: str, text: str, *, signature: str = "", redacted: tuple[str, ...] = (), **fields: Any
    ) -> "Scenario":
        """Anthropic extended thinking as the API streams it: a `thinking` block with `reasoning` in
        thinking_delta events and a signature_delta, then a `redacted_thinking` block per item of `redacted`,
        then `text` in the next block. An empty `reasoning` with a signature is `display: "omitted"`."""
        signature = signature or f"sig-{len(reasoning)}-" + "Eq0BCkgIBxABGAIiQL+/fake=="
        return cls(
            tokens=split_text(text),
            reasoning_tokens=split_text(reasoning),
            signature=signature,
            redacted=redacted,
            **fields,
        )

    @classmethod
    def with_summaries(cls, summaries: Sequence[str], text: str, **fields: Any) -> "Scenario":
        """A reasoning model on the Responses API: a reasoning item with these summary parts, then `text`."""
        return cls(tokens=split_text(text), summaries=tuple(split_text(summary) for summary in summaries), **fields)

    @classmethod
    def failed(cls, *, after: int = 2, error_type: str = "server_error", **fields: Any) -> "Scenario":
        """Responses API: `response.failed` (its error's code is `error_type`) after `after` text tokens."""
        return cls(end="failed", after=after, error_type=error_type, **fields)

    @classmethod
    def think_inline(
        cls, reasoning: str, text: str, *, open_cut: int | None = None, close_cut: int | None = None, **fields: Any
    ) -> "Scenario":
        """A model that writes its reasoning into the content (Qwen3, an R1 distill on llama.cpp):
        `<think>reasoning</think>\\n\\ntext`, each tag a token of its own. `open_cut` / `close_cut` cut
        that tag after so many characters, each half streamed with the text beside it ("…two.</thi",
        "nk>\\n\\nFour"), as servers that batch tokens into chunks do."""
        content = f"{THINK_OPEN}{reasoning}{THINK_CLOSE}\n\n{text}"
        pieces = (THINK_OPEN, *split_text(reasoning), THINK_CLOSE, *split_text(f"\n\n{text}"))
        ends = set(accumulate(len(piece) for piece in pieces))
        closing = len(THINK_OPEN) + len(reasoning)
        if open_cut is not None:
            assert 0 < open_cut < len(THINK_OPEN), open_cut
            ends = ends - {len(THINK_OPEN)} | {open_cut}
        if close_cut is not None:
            assert 0 < close_cut < len(THINK_CLOSE), close_cut
            ends = ends - {closing, closing + len(THINK_CLOSE)} | {closing + close_cut}
        tokens = tuple(content[start:end] for start, end in pairwise([0, *sorted(ends)]))
        return cls(tokens=tokens, **fields)

    @classmethod
    def slow(cls, count: int = 200, *, delay: float = 0.05, **fields: Any) -> "Scenario":
        """A long reply trickling in: for stop, cancel and reconnect tests."""
        return cls(tokens=tuple(f" t{i}" for i in range(count)), delay=delay, **fields)

    @classmethod
    def http_error(cls, status: int, *, body: Any = None, headers: dict[str, str] | None = None) -> "Scenario":
        return cls(status=status, body=body, headers=headers or {})

    @classmethod
    def rate_limited(cls, *, retry_after: float = 0.1) -> "Scenario":
        return cls.http_error(429, headers={"retry-after": f"{retry_after:g}"})

    @classmethod
    def error_mid_stream(cls, *, after: int = 2, error_type: str = "overloaded_error", **fields: Any) -> "Scenario":
        """OpenAI/vLLM: a `data: {"error": ...}` event then [DONE]; Anthropic: an `event: error`."""
        return cls(end="error", after=after, error_type=error_type, **fields)

    @classmethod
    def cut(cls, *, after: int = 2, **fields: Any) -> "Scenario":
        """The connection drops mid-stream, without the end of the chunked body."""
        return cls(end="cut", after=after, **fields)

    @classmethod
    def stall(cls, *, after: int = 2, **fields: Any) -> "Scenario":
        """The server stops sending but keeps the connection open until the client gives up."""
        return cls(end="stall", after=after, **fields)

    @classmethod
    def garbled(cls, *, after: int = 2, **fields: Any) -> "Scenario":
        """After `after` tokens, an event whose data is not JSON; then the body ends."""
        return cls(end="garbled", after=after, **fields)

    @classmethod
    def no_finish(cls, *, after: int | None = None, **fields: Any) -> "Scenario":
        """The body ends cleanly but no finish (stop) reason was ever sent, as llama.cpp does on errors."""
        return cls(end="no_finish", after=after, **fields)

    @property
    def sent_tokens(self) -> tuple[str, ...]:
        return self.tokens if self.after is None else self.tokens[: self.after]


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or None
    query: dict[str, str] = field(default_factory=dict)
    scenario: Scenario | None = None
    closed_early: bool = False  # the client closed the connection before the reply ended
    at: float = field(default_factory=time.monotonic)  # when the request arrived

    @property
    def retry_count(self) -> int:
        return int(self.headers.get("x-stainless-retry-count", "0"))


class FakeUpstream:
    """The fake provider server. `start()` it once, `script()` per test, `reset()` between tests."""

    def __init__(self) -> None:
        self.default = Scenario()
        self.requests: list[RecordedRequest] = []
        self.closed_early = 0
        self.port = 0
        self._queue: deque[Scenario] = deque()
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        # Background responses of the Responses API, by id; and the release of held scenarios.
        self.responses: dict[str, BackgroundResponse] = {}
        self.held = 0
        self._release: asyncio.Event | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url_openai(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def base_url_anthropic(self) -> str:
        return f"{self.base_url}/anthropic"

    def start(self) -> "FakeUpstream":
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="fake-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=30) or not self.port:
            raise RuntimeError("the fake upstream did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop = self._thread = None

    def script(self, *scenarios: Scenario) -> None:
        """The next requests get these scenarios, in order; later ones get `default`."""
        with self._changed:
            self._queue.extend(scenarios)

    def reset(self) -> None:
        """Forget scripted scenarios, recorded requests, background responses and counters; restore the
        default scenario."""
        with self._changed:
            self._queue.clear()
            self.requests = []
            self.closed_early = 0
            self.held = 0
            self.default = Scenario()
            responses, self.responses = list(self.responses.values()), {}
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._forget, responses)

    def _forget(self, responses: list[BackgroundResponse]) -> None:
        for response in responses:
            response.cancel()
        self._release = asyncio.Event()

    def release(self) -> None:
        """Let held scenarios (`hold_after`) go on."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(lambda: self._release.set())

    def wait_held(self, count: int = 1, within: float = 15.0) -> bool:
        """Block until `count` replies reached their hold; False if that takes over `within` s."""
        with self._changed:
            return self._changed.wait_for(lambda: self.held >= count, timeout=within)

    async def wait_held_async(self, count: int = 1, within: float = 15.0) -> bool:
        return await asyncio.to_thread(self.wait_held, count, within)

    def requests_to(self, path: str, method: str = "") -> list[RecordedRequest]:
        """The recorded requests to `path` (and of `method`, if given)."""
        with self._changed:
            return [r for r in self.requests if r.path == path and (not method or r.method == method)]

    def wait_request_to(self, path: str, within: float = 15.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: any(r.path == path for r in self.requests), timeout=within)

    def wait_closed(self, count: int = 1, within: float = 15.0) -> bool:
        """Block until `count` replies were closed early by clients; False if that takes over `within` s."""
        with self._changed:
            return self._changed.wait_for(lambda: self.closed_early >= count, timeout=within)

    async def wait_closed_async(self, count: int = 1, within: float = 15.0) -> bool:
        return await asyncio.to_thread(self.wait_closed, count, within)

    def wait_requests(self, count: int, within: float = 15.0) -> bool:
        """Block until `count` requests arrived; False if that takes over `within` s."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.requests) >= count, timeout=within)

    # --- server thread ---------------------------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        self._release = asyncio.Event()
        try:
            self._server = loop.run_until_complete(
                loop.create_server(lambda: _Connection(self), "127.0.0.1", 0, reuse_address=True)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
        finally:
            ready.set()
            loop.close()

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        tasks = [task for connection in list(self._connections) if (task := connection.abort())]
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _take(self, request: RecordedRequest) -> Scenario:
        with self._changed:
            request.scenario = self._queue.popleft() if self._queue else self.default
            self.requests.append(request)
            self._changed.notify_all()
            return request.scenario

    def _record(self, request: RecordedRequest) -> None:
        """A request that plays no scenario (a Responses API retrieve or cancel)."""
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()

    def _note_held(self) -> None:
        with self._changed:
            self.held += 1
            self._changed.notify_all()

    async def _hold(self, closed: asyncio.Event) -> None:
        """Wait for `release()` (or the client to leave)."""
        assert self._release is not None
        self._note_held()
        waits = [asyncio.ensure_future(self._release.wait()), asyncio.ensure_future(closed.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()

    def _background(self, scenario: Scenario, body: dict[str, Any]) -> BackgroundResponse:
        assert self._release is not None
        with self._changed:
            response_id = f"resp_fake{len(self.responses) + 1:04d}"
        planned = response_events(scenario, body, response_id)
        response = BackgroundResponse(response_id, scenario, planned, self._release)
        with self._changed:
            self.responses[response_id] = response
        response.task = asyncio.get_running_loop().create_task(response.run(self._note_held))
        return response

    def _note_closed_early(self, request: RecordedRequest) -> None:
        with self._changed:
            request.closed_early = True
            self.closed_early += 1
            self._changed.notify_all()


class _ClientGone(Exception):
    """The client closed the connection."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection: parse requests, answer each per its scenario."""

    def __init__(self, upstream: FakeUpstream) -> None:
        self.upstream = upstream
        self.buffer = bytearray()
        self.received = asyncio.Event()
        self.closed = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None

    # asyncio.Protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.upstream._connections.add(self)
        self.task = asyncio.get_running_loop().create_task(self.serve())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.received.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        self.received.set()
        self.writable.set()
        self.upstream._connections.discard(self)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def abort(self) -> "asyncio.Task[None] | None":
        if self.transport is not None:
            self.transport.abort()
        if self.task is not None:
            self.task.cancel()
        return self.task

    # request handling
    async def serve(self) -> None:
        try:
            while not self.closed.is_set():
                request = await self.read_request()
                if request is None:
                    return
                await self.respond(request)
        except _ClientGone:
            return
        finally:
            if self.transport is not None:
                self.transport.close()

    async def read_request(self) -> RecordedRequest | None:
        while b"\r\n\r\n" not in self.buffer:
            if self.closed.is_set():
                return None
            self.received.clear()
            await self.received.wait()
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            if self.closed.is_set():
                return None
            self.received.clear()
            await self.received.wait()
            rest = bytes(self.buffer).partition(b"\r\n\r\n")[2]
        self.buffer = bytearray(rest[length:])
        body = json.loads(rest[:length]) if length else None
        path, _, query = path.partition("?")
        return RecordedRequest(method=method, path=path, headers=headers, body=body, query=dict(parse_qsl(query)))

    async def respond(self, request: RecordedRequest) -> None:
        if request.path.startswith(RESPONSES_PATH):
            await self.respond_responses(request)
            return
        if request.path not in (OPENAI_PATH, ANTHROPIC_PATH):
            await self.send_json(404, {"error": {"message": "Not found", "type": "not_found_error"}}, {})
            return
        scenario = self.upstream._take(request)
        anthropic = request.path == ANTHROPIC_PATH
        if scenario.status != 200:
            body = scenario.body if scenario.body is not None else _error_body(scenario, request, anthropic)
            await self.send_json(scenario.status, body, scenario.headers)
            return
        events = _AnthropicEvents(scenario, request) if anthropic else _OpenAIEvents(scenario, request)
        try:
            await self.stream(scenario, events)
        except _ClientGone:
            self.upstream._note_closed_early(request)
            raise

    async def respond_responses(self, request: RecordedRequest) -> None:
        """The Responses API: create (streamed; kept if `background`), retrieve (streamed from
        `starting_after` + 1) and cancel."""
        upstream = self.upstream
        if request.path == RESPONSES_PATH and request.method == "POST":
            scenario = upstream._take(request)
            if scenario.status != 200:
                body = scenario.body if scenario.body is not None else _error_body(scenario, request, False)
                await self.send_json(scenario.status, body, scenario.headers)
                return
            if request.body.get("background"):
                await self.stream_kept(request, upstream._background(scenario, request.body), 0)
            else:
                await self.stream_responses(request, scenario)
            return
        upstream._record(request)
        response_id, _, action = request.path.removeprefix(RESPONSES_PATH + "/").partition("/")
        kept = upstream.responses.get(response_id)
        if kept is None:
            await self.send_json(404, {"error": {"message": "No such response", "type": "invalid_request_error"}}, {})
        elif action == "cancel" and request.method == "POST":
            kept.cancel()
            await self.send_json(200, cancelled_body(kept, {"background": True}), {})
        elif request.method == "GET" and request.query.get("stream") == "true":
            await self.stream_kept(request, kept, int(request.query.get("starting_after", "-1")) + 1)
        else:
            await self.send_json(400, {"error": {"message": "Unsupported", "type": "invalid_request_error"}}, {})

    async def stream_responses(self, request: RecordedRequest, scenario: Scenario) -> None:
        """A response that is not kept: its events as it generates them, ended as the scenario says."""
        await self.open_stream(scenario)
        deltas = 0
        try:
            for event in response_events(scenario, request.body, "resp_fake_unstored"):
                if event.delta:
                    if deltas == scenario.hold_after:
                        await self.upstream._hold(self.closed)
                    deltas += 1
                    await self.pause(scenario.delay)
                await self.send_event(event.sse, scenario.split_at)
            await self.end_stream(scenario, _responses_closing(scenario))
        except _ClientGone:
            self.upstream._note_closed_early(request)
            raise

    async def stream_kept(self, request: RecordedRequest, kept: BackgroundResponse, start: int) -> None:
        """A background response's events from `start` on: those generated so far at once, then live.
        The client leaving does not stop it."""
        await self.open_stream(kept.scenario)
        try:
            async for frame in kept.frames(start):
                await self.send_event(frame, kept.scenario.split_at)
            if kept.cancelled:
                await self.write(b"0\r\n\r\n")
                return
            await self.end_stream(kept.scenario, _responses_closing(kept.scenario))
        except _ClientGone:
            self.upstream._note_closed_early(request)
            raise

    async def open_stream(self, scenario: Scenario) -> None:
        head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in scenario.headers.items())
        await self.write((head + "transfer-encoding: chunked\r\n\r\n").encode())

    async def end_stream(self, scenario: Scenario, closing: list[str]) -> None:
        """Once the tokens are out, whatever the scenario's `end` does: cut or stall, else send the
        `closing` frames and end the body."""
        if scenario.end == "cut":
            self.transport.close()  # FIN once the buffered tokens are out, in the middle of the body
            return
        if scenario.end == "stall":
            await self.closed.wait()
            raise _ClientGone
        for frame in closing:
            await self.send_chunk(frame)
        await self.write(b"0\r\n\r\n")

    async def stream(self, scenario: Scenario, events: "_OpenAIEvents | _AnthropicEvents") -> None:
        await self.open_stream(scenario)
        for frame in events.opening():
            await self.send_chunk(frame)
        deltas = 0
        for token in scenario.reasoning_tokens:
            await self.before_delta(scenario, deltas)
            deltas += 1
            await self.send_chunk(events.reasoning(token))
        for frame in events.after_reasoning():
            await self.send_chunk(frame)
        for index, token in enumerate(scenario.sent_tokens):
            await self.before_delta(scenario, deltas)
            deltas += 1
            await self.send_chunk(events.token(token, index))
        await self.end_stream(scenario, events.closing())

    async def before_delta(self, scenario: Scenario, sent: int) -> None:
        """The scenario's hold (before its `hold_after`-th delta), then its delay."""
        if sent == scenario.hold_after:
            await self.upstream._hold(self.closed)
        await self.pause(scenario.delay)

    async def pause(self, seconds: float) -> None:
        """Wait before the next token, noticing at once if the client leaves meanwhile."""
        if seconds <= 0:
            await asyncio.sleep(0)  # let other connections stream too
        else:
            try:
                await asyncio.wait_for(self.closed.wait(), seconds)
            except TimeoutError:
                return
        if self.closed.is_set():
            raise _ClientGone

    async def send_event(self, frame: str, split_at: int | None) -> None:
        if split_at is None:
            await self.send_chunk(frame)
        else:
            await self.send_chunk(frame[:split_at])
            await self.send_chunk(frame[split_at:])

    async def send_chunk(self, frame: str) -> None:
        data = frame.encode()
        await self.write(b"%x\r\n%s\r\n" % (len(data), data))

    async def write(self, data: bytes) -> None:
        if self.closed.is_set():
            raise _ClientGone
        self.transport.write(data)
        await self.writable.wait()

    async def send_json(self, status: int, body: Any, headers: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\ncontent-type: application/json\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        await self.write((head + f"content-length: {len(data)}\r\n\r\n").encode() + data)


def _error_body(scenario: Scenario, request: RecordedRequest, anthropic: bool) -> dict[str, Any]:
    """The provider's usual error body. A 401 echoes the presented key, the worst case for leaks."""
    error_type = _ERROR_TYPES.get(scenario.status, "api_error")
    if scenario.status == 401:
        key = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        message = f"Incorrect API key provided: {key}."
    else:
        message = f"Fake upstream error {scenario.status}"
    if anthropic:
        return {"type": "error", "error": {"type": error_type, "message": message}}
    return {"error": {"message": message, "type": error_type, "param": None, "code": None}}


def _responses_closing(scenario: Scenario) -> list[str]:
    """What a Responses stream sends after its events (which end it, if they do): a garbled event, or nothing."""
    return [_sse("{not json", "response.output_text.delta")] if scenario.end == "garbled" else []


def _reported(**counts: int | None) -> dict[str, int]:
    """The usage counts a scenario sets; unset ones stay off the wire, so other scenarios send what they always did."""
    return {name: count for name, count in counts.items() if count is not None}


def _sse(data: Any, event: str | None = None) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


class _OpenAIEvents:
    """Chat Completions chunks: role chunk, one per token, finish chunk, usage chunk if asked, [DONE]."""

    def __init__(self, scenario: Scenario, request: RecordedRequest) -> None:
        self.scenario = scenario
        body = request.body or {}
        self.model = body.get("model", "fake-model")
        self.include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> str:
        return _sse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
        )

    def opening(self) -> list[str]:
        return [self.chunk({"role": "assistant", "content": ""})]

    def reasoning(self, text: str) -> str:
        return self.chunk({**self.scenario.extra_delta, self.scenario.reasoning_field: text})

    def after_reasoning(self) -> list[str]:
        return []

    def token(self, text: str, index: int) -> str:
        return self.chunk({**self.scenario.extra_delta, "content": text})

    def closing(self) -> list[str]:
        scenario = self.scenario
        if scenario.end == "error":
            error = {"message": scenario.error_message, "type": scenario.error_type, "code": scenario.error_code}
            return [_sse({"error": error}), _sse("[DONE]")]
        if scenario.end == "garbled":
            return [_sse("{not json")]
        if scenario.end == "no_finish":
            return [_sse("[DONE]")]
        frames = [self.chunk({}, scenario.finish_reason)]
        if self.include_usage:
            output = len(scenario.reasoning_tokens) + len(scenario.sent_tokens)
            usage: dict[str, Any] = {"prompt_tokens": scenario.input_tokens, "completion_tokens": output}
            usage["total_tokens"] = scenario.input_tokens + output
            if cache := _reported(cached_tokens=scenario.cached_tokens, cache_write_tokens=scenario.cache_write_tokens):
                usage["prompt_tokens_details"] = cache
            if scenario.reasoning_tokens:
                usage["completion_tokens_details"] = {"reasoning_tokens": len(scenario.reasoning_tokens)}
            frames.append(
                _sse(
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion.chunk",
                        "created": 1_700_000_000,
                        "model": self.model,
                        "choices": [],
                        "usage": usage,
                    }
                )
            )
        return [*frames, _sse("[DONE]")]


class _AnthropicEvents:
    """Messages stream events, each with its `event:` line, including a ping: a thinking block and
    redacted thinking blocks first if the scenario has them, then the text block."""

    def __init__(self, scenario: Scenario, request: RecordedRequest) -> None:
        self.scenario = scenario
        self.model = (request.body or {}).get("model", "fake-model")
        self.thinking = bool(scenario.reasoning_tokens or scenario.signature)
        self.text_index = len(scenario.redacted) + 1 if self.thinking else 0

    def opening(self) -> list[str]:
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self.scenario.input_tokens,
                "output_tokens": 1,
                **_reported(
                    cache_read_input_tokens=self.scenario.cached_tokens,
                    cache_creation_input_tokens=self.scenario.cache_write_tokens,
                ),
            },
        }
        first = {"type": "thinking", "thinking": ""} if self.thinking else {"type": "text", "text": ""}
        return [
            _sse({"type": "message_start", "message": message}, "message_start"),
            _block_start(0, first),
            _sse({"type": "ping"}, "ping"),
        ]

    def reasoning(self, text: str) -> str:
        return _block_delta(0, {"type": "thinking_delta", "thinking": text})

    def after_reasoning(self) -> list[str]:
        """The thinking block's signature and end, the redacted blocks, the start of the text block."""
        if not self.thinking:
            return []
        frames = [_block_delta(0, {"type": "signature_delta", "signature": self.scenario.signature}), _block_stop(0)]
        for index, data in enumerate(self.scenario.redacted, start=1):
            frames += [_block_start(index, {"type": "redacted_thinking", "data": data}), _block_stop(index)]
        return [*frames, _block_start(self.text_index, {"type": "text", "text": ""})]

    def token(self, text: str, index: int) -> str:
        return _block_delta(self.text_index, {"type": "text_delta", "text": text})

    def closing(self) -> list[str]:
        scenario = self.scenario
        if scenario.end == "error":
            error = {"type": "error", "error": {"type": scenario.error_type, "message": scenario.error_message}}
            return [_sse(error, "error")]
        if scenario.end == "garbled":
            return [_sse("{not json", "content_block_delta")]
        if scenario.end == "no_finish":
            return []
        stop_reason = _ANTHROPIC_STOP_REASONS.get(scenario.finish_reason, scenario.finish_reason)
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {
                "output_tokens": len(scenario.reasoning_tokens) + len(scenario.sent_tokens),
                **scenario.delta_usage,
            },
        }
        return [
            _block_stop(self.text_index),
            _sse(delta, "message_delta"),
            _sse({"type": "message_stop"}, "message_stop"),
        ]


def _block_start(index: int, block: dict[str, Any]) -> str:
    return _sse({"type": "content_block_start", "index": index, "content_block": block}, "content_block_start")


def _block_delta(index: int, delta: dict[str, Any]) -> str:
    return _sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta")


def _block_stop(index: int) -> str:
    return _sse({"type": "content_block_stop", "index": index}, "content_block_stop")


__all__ = ["FakeUpstream", "RecordedRequest", "Scenario", "split_text"]
