"""A lean fake OpenAI-compatible upstream for the benchmark: every token carries its emit time.

    python bench/upstream.py --port 8790 --tokens 200 --interval 0.02

`POST /v1/chat/completions` (stream=True) answers `200 text/event-stream`, chunked, one chunk per
event. Token i is the text ` t<i>@<unix time when it was written>`; tokens are scheduled on absolute
times (start + first_delay + i * interval), so a slow loop does not stretch the stream. The client
measures receive time minus the stamped time for every token. Plain asyncio on uvloop, no framework:
it must stay cheap next to the relay it feeds.
"""

import argparse
import asyncio
import time

import orjson

HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
CHUNK_BASE = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": "gpt-test"}


def _event(payload: dict) -> bytes:
    data = b"data: " + orjson.dumps(payload) + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def _chunk(delta: dict, finish_reason: str | None = None, **extra: object) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    return _event({**CHUNK_BASE, "choices": [choice], **extra})


class Upstream:
    def __init__(self, tokens: int, interval: float, first_delay: float) -> None:
        self.tokens = tokens
        self.interval = interval
        self.first_delay = first_delay
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if length:
            await reader.readexactly(length)
        self.requests += 1
        loop = asyncio.get_running_loop()
        start = loop.time() + self.first_delay
        writer.write(HEAD + _chunk({"role": "assistant", "content": ""}))
        for i in range(self.tokens):
            delay = start + i * self.interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(_chunk({"content": f" t{i}@{time.time():.6f}"}))
        usage = {"prompt_tokens": 12, "completion_tokens": self.tokens, "total_tokens": self.tokens + 12}
        writer.write(_chunk({}, "stop") + _event({**CHUNK_BASE, "choices": [], "usage": usage}))
        data = b"data: [DONE]\n\n"
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
        await writer.drain()
        return True


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--first-delay", type=float, default=0.02)
    args = parser.parse_args()
    upstream = Upstream(args.tokens, args.interval, args.first_delay)
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", args.port, backlog=4096)
    print(f"upstream ready on {args.port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
