"""A WebSocket client that follows one conversation by the documented client rules (docs/protocol.md)."""

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import websockets


class Follower:
    """Follows one conversation like the browser does (static/chat/app.js):

    a delta at our length is appended, one that overlaps has the overlap dropped, one past our
    length is a gap: subscribe again for a snapshot. A `done` whose length differs from ours, or
    silence while a reply runs, asks for a snapshot too; once asked, no gap asks again before that
    snapshot comes (the frames already on their way would each ask: a flood the server refuses and
    ends with 4429). A dropped socket reconnects and resumes with `after: {message, seq}`.
    """

    def __init__(self, port: int, cookie: bytes, conversation: int) -> None:
        self.port = port
        self.cookie = cookie
        self.conversation = conversation
        self.ws: Any = None
        self.message: int | None = None
        self.text = ""
        self.seen = ""  # the longest text assembled from live frames (a resync may replace `text`)
        self.seq = 0
        self.status: str | None = None
        self.frames: list[dict[str, Any]] = []
        self.gaps = 0
        self.reconnects = 0
        self.resyncs = 0
        self._pending_resync = False  # a gap was seen: ask for a snapshot before reading on
        self._awaiting_snapshot = False  # asked for one (a subscribe without `after`), not yet come

    async def connect(self) -> "Follower":
        headers = {"Origin": f"http://127.0.0.1:{self.port}", "Cookie": self.cookie.decode()}
        self.ws = await websockets.connect(f"ws://127.0.0.1:{self.port}/ws/chat/", additional_headers=headers)
        hello = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
        assert hello["type"] == "hello"
        return self

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def subscribe(self, *, resume: bool = False) -> None:
        frame: dict[str, Any] = {"type": "subscribe", "conversation": self.conversation}
        if resume and self.message is not None and self.status in (None, "pending", "streaming"):
            frame["after"] = {"message": self.message, "seq": self.seq}
        self._awaiting_snapshot = "after" not in frame
        await self.send(frame)

    async def ask(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send a command (send, continue, retry...) and return its `accepted` or `error` frame."""
        client_id = uuid.uuid4().hex
        await self.send({"type": kind, "conversation": self.conversation, "client_id": client_id, **fields})
        return await self.next_matching(
            lambda f: (
                (f["type"] == "accepted" and f["client_id"] == client_id)
                or (f["type"] == "error" and f.get("ref") == client_id)
            )
        )

    async def receive(self, timeout: float) -> dict[str, Any] | None:
        try:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        except TimeoutError:
            return None
        except websockets.ConnectionClosed:
            await self._reconnect()
            return None
        self.frames.append(frame)
        self._apply(frame)
        return frame

    async def _reconnect(self) -> None:
        self.reconnects += 1
        for attempt in range(60):
            try:
                await self.connect()
                await self.subscribe(resume=True)
                return
            except (OSError, websockets.WebSocketException, TimeoutError):
                await asyncio.sleep(min(0.2 * (attempt + 1), 1.0))
        raise AssertionError("could not reconnect")

    async def next_matching(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.receive(timeout)
                if frame is not None and predicate(frame):
                    return frame

    def _apply(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if frame.get("conversation") not in (self.conversation, None) and kind != "conversation":
            return
        if kind == "accepted":
            payload = frame["message"]
            self.message, self.text, self.seq, self.status = payload["id"], payload["content"], 0, payload["status"]
        elif kind == "snapshot":  # the answer to a subscribe, with the latest reply if there is one
            self._awaiting_snapshot = False
            if frame["message"] is None:
                return
            payload = frame["message"]
            self.message, self.text, self.seq, self.status = (
                payload["id"],
                payload["content"],
                payload["seq"],
                payload["status"],
            )
        elif kind == "message" and frame["message"]["role"] == "assistant":
            payload = frame["message"]
            self.message, self.text, self.seq, self.status = payload["id"], payload["content"], 0, payload["status"]
        elif kind == "start":
            self.message, self.text, self.seq, self.status = frame["message"], "", 0, "streaming"
        elif kind == "delta" and frame["message"] == self.message:
            if frame["offset"] > len(self.text):
                self.gaps += 1
                self._pending_resync = not self._awaiting_snapshot
                return
            self.text += frame["text"][len(self.text) - frame["offset"] :]
            self.seq = frame["seq"]
            if len(self.text) > len(self.seen):
                self.seen = self.text
        elif kind == "done" and frame["message"]["id"] == self.message:
            if frame["message"]["length"] != len(self.text):
                self.gaps += 1
                self._pending_resync = not self._awaiting_snapshot
                return
            self.status = frame["message"]["status"]

    async def follow(self, timeout: float = 40, quiet: float = 3.0) -> tuple[str, str]:
        """Read until the followed reply ends; returns (text, status)."""
        async with asyncio.timeout(timeout):
            while self.status in (None, "pending", "streaming"):
                if self._pending_resync:
                    self._pending_resync = False
                    self.resyncs += 1
                    await self.subscribe()
                frame = await self.receive(quiet)
                if frame is None and self.ws.state == websockets.protocol.State.OPEN:
                    # Silence while a reply runs: a lost frame (or a lost `done`); ask where it stands.
                    self.resyncs += 1
                    await self.subscribe(resume=True)
        return self.text, self.status

    async def wait_text(self, chars: int, timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while len(self.text) < chars:
                await self.receive(timeout)
