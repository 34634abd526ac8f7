"""The load client: C concurrent streams, every token's delivery latency (receive time - stamped emit time).

    python bench/client.py SPEC.json      (written by bench/run.py; prints one JSON result line)

Kinds of client (spec["kind"]):
  ws    real WebSocket clients of the app: `send`, then read accepted/start/delta.../done
  sse   the SSE endpoint for frames, the JSON API to send (session cookie + CSRF token)
  raw   no relay: aiohttp reading the fake upstream's SSE directly (the floor)
  sdk   no relay: the official `openai` SDK (AsyncOpenAI, `async for chunk in stream`) consuming directly;
        with spec["sdk"] = {"base_url", "api_key", "model"} it streams through that OpenAI-compatible
        relay instead (streamchat's /v1, LiteLLM proxy: bench/gateway.py)
  idle  open N WebSockets and hold them (memory per idle socket), print "open", exit on stdin EOF
It runs in its own process (uvloop), so it never shares a GIL with the upstream or the server.
"""

import asyncio
import re
import resource
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

TOKEN = re.compile(r" t(\d+)@(\d+\.\d+)")
CSRF = "benchcsrftoken0123456789abcdefgh"  # any 32 characters: Django compares cookie and header


@dataclass
class Stream:
    tokens: int
    seen: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    sent_at: float = 0.0
    first_at: float | None = None
    accepted_at: float | None = None  # the server stored the message and queued the reply
    started_at: float | None = None  # a worker claimed the reply (the `start` frame)
    text_length: int = 0
    offset_errors: int = 0
    frames: int = 0
    done: bool = False
    error: str = ""

    def take_text(self, text: str, now: float) -> None:
        for match in TOKEN.finditer(text):
            if self.first_at is None:
                self.first_at = now
            self.seen.append(int(match.group(1)))
            self.latencies.append(now - float(match.group(2)))

    def take_delta(self, frame: dict, now: float) -> None:
        self.frames += 1
        if frame["offset"] != self.text_length:
            self.offset_errors += 1
        self.text_length = frame["offset"] + len(frame["text"])
        self.take_text(frame["text"], now)


class Barrier(asyncio.Event):
    """Set by the main task once every client is connected; clients count themselves in."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.arrived = 0
        self.all_arrived = asyncio.Event()


async def _ready(start: Barrier) -> None:
    start.arrived += 1
    if start.arrived >= start.expected:
        start.all_arrived.set()
    await start.wait()


async def ws_stream(session: aiohttp.ClientSession, spec: dict, i: int, stream: Stream, start: "Barrier") -> None:
    headers = {"Origin": spec["origin"], "Cookie": f"sessionid={spec['sessions'][i]}"}
    conversation = spec["conversations"][i]
    async with session.ws_connect(spec["ws_url"], headers=headers, max_msg_size=0, autoping=True) as ws:
        hello = orjson.loads((await ws.receive()).data)
        assert hello["type"] == "hello", hello
        await _ready(start)
        await asyncio.sleep(spec["ramp"] * i / max(len(spec["conversations"]), 1))
        frame = {"type": "send", "conversation": conversation, "client_id": uuid.uuid4().hex, "content": "go"}
        stream.sent_at = time.time()
        await ws.send_str(orjson.dumps(frame).decode())
        async for message in ws:
            now = time.time()
            frame = orjson.loads(message.data)
            kind = frame["type"]
            if kind == "delta":
                stream.take_delta(frame, now)
            elif kind == "accepted":
                stream.accepted_at = now
            elif kind == "start":
                stream.started_at = now
            elif kind == "done":
                stream.done = frame["message"]["status"] == "complete"
                if not stream.done:
                    stream.error = frame["message"]["status"]
                return
            elif kind == "error":
                stream.error = frame.get("code", "error")
                return


async def _sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, bytes]]:
    kind = ""
    async for line in response.content:
        if line.startswith(b"event:"):
            kind = line[6:].strip().decode()
        elif line.startswith(b"data:"):
            yield kind, line[5:].strip()


async def sse_stream(session: aiohttp.ClientSession, spec: dict, i: int, stream: Stream, start: "Barrier") -> None:
    conversation = spec["conversations"][i]
    cookie = f"sessionid={spec['sessions'][i]}; csrftoken={CSRF}"
    headers = {"Origin": spec["origin"], "Cookie": cookie, "X-CSRFToken": CSRF}
    url = f"{spec['http_url']}/api/conversations/{conversation}"
    async with session.get(f"{url}/events", headers=headers, timeout=aiohttp.ClientTimeout(total=None)) as response:
        events = _sse_events(response)
        kind, _ = await anext(events)
        assert kind == "snapshot", kind
        await _ready(start)
        await asyncio.sleep(spec["ramp"] * i / max(len(spec["conversations"]), 1))
        stream.sent_at = time.time()
        body = {"client_id": uuid.uuid4().hex, "content": "go"}
        async with session.post(f"{url}/messages", json=body, headers=headers) as sent:
            if sent.status >= 300:
                stream.error = f"http {sent.status}"
                return
        async for kind, data in events:
            now = time.time()
            if kind == "delta":
                stream.take_delta(orjson.loads(data), now)
            elif kind == "start":
                stream.started_at = now
            elif kind == "done":
                stream.done = orjson.loads(data)["message"]["status"] == "complete"
                return


async def raw_stream(session: aiohttp.ClientSession, spec: dict, i: int, stream: Stream, start: "Barrier") -> None:
    await start.wait()
    await asyncio.sleep(spec["ramp"] * i / spec["concurrency"])
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "go"}], "stream": True}
    stream.sent_at = time.time()
    async with session.post(f"{spec['upstream_url']}/chat/completions", json=body) as response:
        async for line in response.content:
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                stream.done = True
                return
            chunk = orjson.loads(payload)
            if chunk["choices"] and (text := chunk["choices"][0]["delta"].get("content")):
                stream.frames += 1
                stream.take_text(text, time.time())


async def sdk_stream(client: object, spec: dict, i: int, stream: Stream, start: "Barrier") -> None:
    await start.wait()
    await asyncio.sleep(spec["ramp"] * i / spec["concurrency"])
    stream.sent_at = time.time()
    model = spec.get("sdk", {}).get("model", "gpt-test")
    response = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "go"}], stream=True
    )
    async for chunk in response:
        if chunk.choices and (text := chunk.choices[0].delta.content):
            stream.frames += 1
            stream.take_text(text, time.time())
    stream.done = True


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def summarize(spec: dict, streams: list[Stream], wall: float, cpu: float) -> dict:
    latencies = [x for s in streams for x in s.latencies]
    first = [s.first_at - s.sent_at - spec["first_delay"] for s in streams if s.first_at is not None]
    lost = duplicated = out_of_order = 0
    for s in streams:
        unique = set(s.seen)
        lost += s.tokens - len(unique & set(range(s.tokens)))
        duplicated += len(s.seen) - len(unique)
        out_of_order += sum(1 for a, b in zip(s.seen, s.seen[1:], strict=False) if b < a)
    return {
        "kind": spec["kind"],
        "concurrency": spec["concurrency"],
        "streams_complete": sum(s.done for s in streams),
        "errors": sorted({s.error for s in streams if s.error}),
        "tokens_expected": sum(s.tokens for s in streams),
        "tokens_received": len(latencies),
        "lost": lost,
        "duplicated": duplicated,
        "out_of_order": out_of_order,
        "offset_errors": sum(s.offset_errors for s in streams),
        "frames": sum(s.frames for s in streams),
        "latency_ms": {p: _ms(percentile(latencies, float(p[1:]))) for p in ("p50", "p95", "p99")}
        | {"max": _ms(max(latencies, default=None))},
        "added_ttft_ms": {p: _ms(percentile(first, float(p[1:]))) for p in ("p50", "p95", "p99")}
        | {"max": _ms(max(first, default=None))},
        "accepted_ms_p50": _ms(percentile([s.accepted_at - s.sent_at for s in streams if s.accepted_at], 50)),
        "start_ms_p50": _ms(percentile([s.started_at - s.sent_at for s in streams if s.started_at], 50)),
        "wall_s": round(wall, 2),
        "client_cpu_s": round(cpu, 3),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(spec: dict) -> dict:
    kind = spec["kind"]
    count = spec["concurrency"]
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=spec["timeout"])
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), timeout=timeout) as s:
        if kind == "idle":
            return await hold_idle(s, spec)
        streams = [Stream(tokens=spec["tokens"]) for _ in range(count)]
        start = Barrier(count if kind in ("ws", "sse") else 0)
        if start.expected == 0:
            start.all_arrived.set()
        if kind == "sdk":
            import openai

            target = spec.get("sdk", {"base_url": spec["upstream_url"], "api_key": "bench"})
            client = openai.AsyncOpenAI(
                api_key=target["api_key"], base_url=target["base_url"], max_retries=0, timeout=600
            )
            tasks = [asyncio.create_task(sdk_stream(client, spec, i, streams[i], start)) for i in range(count)]
        else:
            runner = {"ws": ws_stream, "sse": sse_stream, "raw": raw_stream}[kind]
            tasks = [asyncio.create_task(runner(s, spec, i, streams[i], start)) for i in range(count)]
        arrived = asyncio.create_task(start.all_arrived.wait())
        await asyncio.wait([arrived, *tasks], timeout=120, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.sleep(0.5)  # let the server settle after the connection storm
        print("go", file=sys.stderr, flush=True)  # bench/run.py reads the server's counters now
        cpu0, t0 = _cpu(), time.monotonic()
        start.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        wall, cpu = time.monotonic() - t0, _cpu() - cpu0
        for stream, result in zip(streams, results, strict=True):
            if isinstance(result, BaseException):
                stream.error = stream.error or type(result).__name__
        return summarize(spec, streams, wall, cpu)


async def hold_idle(session: aiohttp.ClientSession, spec: dict) -> dict:
    sockets = []
    for i in range(spec["concurrency"]):
        headers = {"Origin": spec["origin"], "Cookie": f"sessionid={spec['sessions'][i]}"}
        ws = await session.ws_connect(spec["ws_url"], headers=headers)
        await ws.receive()  # hello
        sockets.append(ws)
    print("open", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for ws in sockets:
        await ws.close()
    return {"kind": "idle", "open": len(sockets)}


def main() -> None:
    import uvloop

    spec = orjson.loads(Path(sys.argv[1]).read_bytes())
    result = uvloop.run(run(spec))
    print(orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    main()
