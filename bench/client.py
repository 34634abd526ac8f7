"""The load client: C concurrent streams, every token's delivery latency (receive time - stamped emit time).

    python bench/client.py SPEC.json      (written by bench/run.py; writes this process's part to SPEC.result.json)

Kinds of client (spec["kind"]):
  ws        real WebSocket clients of the app: `send`, then read accepted/start/delta.../done
  sse       the SSE endpoint for frames, the JSON API to send (session cookie + CSRF token)
  raw       aiohttp reading an OpenAI-compatible streaming endpoint's SSE: the fake upstream directly (the
            floor), or with spec["raw"] = {"url", "headers", "model"} a relay that speaks that API (LiteLLM)
  sdk       the official `openai` SDK (AsyncOpenAI, `async for chunk in stream`) consuming directly; with
            spec["sdk"] = {"base_url", "api_key", "model"} through that OpenAI-compatible relay instead
  tutorial  the tutorial's FastAPI relay (bench/peers/tutorial_relay.py): POST {"message"}, read `data:` lines
  idle      open N WebSockets and hold them (memory per idle socket), print "open", exit on stdin EOF
It runs in its own process (uvloop), so it never shares a GIL with the upstream or the server. Once every
stream is connected it prints "go" on stderr and waits for a line on stdin (bench/run.py reads the server's
counters, and starts every client process of a run at once). A stream not done within spec["stream_timeout"]
seconds of its send counts as timed out. The result is a *part*: counts and raw samples, which `combine`
turns into one run's figures, whatever the number of client processes.
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
    last_at: float | None = None
    accepted_at: float | None = None  # ws: the `accepted` frame; HTTP kinds: the POST's response headers
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
            self.last_at = now
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


async def _ramp(spec: dict, i: int) -> None:
    await asyncio.sleep(spec["ramp"] * i / max(spec["concurrency"], 1))


async def ws_stream(session: aiohttp.ClientSession, spec: dict, i: int, stream: Stream, start: "Barrier") -> None:
    headers = {"Origin": spec["origin"], "Cookie": f"sessionid={spec['sessions'][i]}"}
    conversation = spec["conversations"][i]
    async with session.ws_connect(spec["ws_url"], headers=headers, max_msg_size=0, autoping=True) as ws:
        hello = orjson.loads((await ws.receive()).data)
        assert hello["type"] == "hello", hello
        await _ready(start)
        await _ramp(spec, i)
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
                stream.last_at = now
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
    """A browser's way: the event stream open, the send POSTed, and the events read while the POST is in
    flight (EventSource does not wait for a fetch), so a slow answer to the POST does not delay them."""
    conversation = spec["conversations"][i]
    cookie = f"sessionid={spec['sessions'][i]}; csrftoken={CSRF}"
    headers = {"Origin": spec["origin"], "Cookie": cookie, "X-CSRFToken": CSRF}
    url = f"{spec['http_url']}/api/conversations/{conversation}"
    async with session.get(f"{url}/events", headers=headers, timeout=aiohttp.ClientTimeout(total=None)) as response:
        events = _sse_events(response)
        kind, _ = await anext(events)
        assert kind == "snapshot", kind
        await _ready(start)
        await _ramp(spec, i)
        stream.sent_at = time.time()
        body = {"client_id": uuid.uuid4().hex, "content": "go"}
        reading = asyncio.ensure_future(_read_reply_events(events, stream))
        try:
            async with session.post(f"{url}/messages", json=body, headers=headers) as sent:
                stream.accepted_at = time.time()
                if sent.status >= 300:
                    stream.error = f"http {sent.status}"
                    return
            await reading
        finally:
            reading.cancel()


async def _read_reply_events(events: AsyncIterator[tuple[str, bytes]], stream: Stream) -> None:
    async for kind, data in events:
        now = time.time()
        if kind == "delta":
            stream.take_delta(orjson.loads(data), now)
        elif kind == "start":
            stream.started_at = now
        elif kind == "done":
            stream.last_at = now
            stream.done = orjson.loads(data)["message"]["status"] == "complete"
            return


async def _data_lines(response: aiohttp.ClientResponse, stream: Stream) -> AsyncIterator[bytes]:
    """The payloads of an SSE response's `data:` lines up to `[DONE]`, which marks the stream done."""
    if response.status >= 300:
        stream.error = f"http {response.status}"
        return
    async for line in response.content:
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            stream.last_at = time.time()
            stream.done = True
            return
        yield payload


async def raw_stream(session: aiohttp.ClientSession, spec: dict, i: int, stream: Stream, start: "Barrier") -> None:
    target = spec.get("raw") or {"url": f"{spec['upstream_url']}/chat/completions", "headers": {}, "model": "gpt-test"}
    await start.wait()
    await _ramp(spec, i)
    body = {"model": target["model"], "messages": [{"role": "user", "content": "go"}], "stream": True}
    stream.sent_at = time.time()
    async with session.post(target["url"], json=body, headers=target["headers"]) as response:
        stream.accepted_at = time.time()
        async for payload in _data_lines(response, stream):
            chunk = orjson.loads(payload)
            if chunk["choices"] and (text := chunk["choices"][0]["delta"].get("content")):
                stream.frames += 1
                stream.take_text(text, time.time())


async def tutorial_stream(session: aiohttp.ClientSession, spec: dict, i: int, stream: Stream, start: "Barrier") -> None:
    await start.wait()
    await _ramp(spec, i)
    stream.sent_at = time.time()
    async with session.post(spec["tutorial_url"], json={"message": "go"}) as response:
        stream.accepted_at = time.time()
        async for payload in _data_lines(response, stream):
            stream.frames += 1
            stream.take_text(orjson.loads(payload)["content"], time.time())


async def sdk_stream(client: object, spec: dict, i: int, stream: Stream, start: "Barrier") -> None:
    await start.wait()
    await _ramp(spec, i)
    stream.sent_at = time.time()
    model = spec.get("sdk", {}).get("model", "gpt-test")
    response = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "go"}], stream=True
    )
    async for chunk in response:
        if chunk.choices and (text := chunk.choices[0].delta.content):
            stream.frames += 1
            stream.take_text(text, time.time())
    stream.last_at = time.time()
    stream.done = True


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def part(spec: dict, streams: list[Stream], wall: float, cpu: float) -> dict:
    """This process's share of a run: counts, and the samples `combine` takes percentiles of."""
    lost = duplicated = out_of_order = 0
    for s in streams:
        unique = set(s.seen)
        lost += s.tokens - len(unique & set(range(s.tokens)))
        duplicated += len(s.seen) - len(unique)
        out_of_order += sum(1 for a, b in zip(s.seen, s.seen[1:], strict=False) if b < a)
    sent = [s.sent_at for s in streams if s.sent_at]
    ends = [s.last_at for s in streams if s.last_at]
    return {
        "kind": spec["kind"],
        "concurrency": len(streams),
        "streams_complete": sum(s.done for s in streams),
        "errors": sorted({s.error for s in streams if s.error}),
        "timed_out": sum(s.error == "timeout" for s in streams),
        "tokens_expected": sum(s.tokens for s in streams),
        "lost": lost,
        "duplicated": duplicated,
        "out_of_order": out_of_order,
        "offset_errors": sum(s.offset_errors for s in streams),
        "frames": sum(s.frames for s in streams),
        "first_send": min(sent, default=None),
        "last_token": max(ends, default=None),
        "wall_s": round(wall, 3),
        "client_cpu_s": round(cpu, 3),
        "samples": {
            "latency": [round(x * 1000, 2) for s in streams for x in s.latencies],
            "ttft": [round((s.first_at - s.sent_at - spec["first_delay"]) * 1000, 2) for s in streams if s.first_at],
            "accepted": [round((s.accepted_at - s.sent_at) * 1000, 2) for s in streams if s.accepted_at],
            "start": [round((s.started_at - s.sent_at) * 1000, 2) for s in streams if s.started_at],
        },
    }


def _summary(values: list[float]) -> dict:
    return {p: percentile(values, float(p[1:])) for p in ("p50", "p95", "p99")} | {"max": max(values, default=None)}


def combine(parts: list[dict]) -> dict:
    """One run's figures from the parts of its client processes (in bench/run.py)."""
    total = {key: sum(p[key] for p in parts) for key in ("concurrency", "streams_complete", "timed_out")}
    for key in ("tokens_expected", "lost", "duplicated", "out_of_order", "offset_errors", "frames"):
        total[key] = sum(p[key] for p in parts)
    samples = {key: [x for p in parts for x in p["samples"][key]] for key in parts[0]["samples"]}
    sent = [p["first_send"] for p in parts if p["first_send"]]
    ends = [p["last_token"] for p in parts if p["last_token"]]
    span = max(ends) - min(sent) if sent and ends else None
    wall = max(p["wall_s"] for p in parts)
    cpu = sum(p["client_cpu_s"] for p in parts)
    tokens = len(samples["latency"])
    return {
        "kind": parts[0]["kind"],
        **total,
        "client_processes": len(parts),
        "errors": sorted({e for p in parts for e in p["errors"]}),
        "tokens_received": tokens,
        "latency_ms": _summary(samples["latency"]),
        "added_ttft_ms": _summary(samples["ttft"]),
        "accepted_ms": _summary(samples["accepted"]),
        "start_ms_p50": percentile(samples["start"], 50),
        "tokens_per_s": round(tokens / span) if span else None,
        "wall_s": wall,
        "client_cpu_s": round(cpu, 3),
        "client_cpu_ms_per_1000_tokens": round(cpu * 1e6 / max(tokens, 1), 1),
        "client_cpu_pct_of_core": round(cpu / wall * 100, 1) if wall else None,
    }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


RUNNERS = {"ws": ws_stream, "sse": sse_stream, "raw": raw_stream, "tutorial": tutorial_stream}


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
            tasks = [asyncio.create_task(RUNNERS[kind](s, spec, i, streams[i], start)) for i in range(count)]
        arrived = asyncio.create_task(start.all_arrived.wait())
        await asyncio.wait([arrived, *tasks], timeout=120, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.sleep(0.5)  # let the server settle after the connection storm
        print("go", file=sys.stderr, flush=True)  # bench/run.py reads the server's counters now
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        cpu0, t0 = _cpu(), time.monotonic()
        start.set()
        _, late = await asyncio.wait(tasks, timeout=spec["ramp"] + spec["stream_timeout"])
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        wall, cpu = time.monotonic() - t0, _cpu() - cpu0
        for stream, task in zip(streams, tasks, strict=True):
            if task in late:
                stream.error = "timeout"
            elif not task.cancelled() and task.exception() is not None:
                stream.error = stream.error or type(task.exception()).__name__
        return part(spec, streams, wall, cpu)


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
    # Into a file beside the spec, not stdout: after uvloop has run, a line over the pipe's 64 KiB (C=1,000
    # streams' figures) came out cut at 65,536 bytes, with no error.
    Path(sys.argv[1]).with_suffix(".result.json").write_bytes(orjson.dumps(result))


if __name__ == "__main__":
    main()
