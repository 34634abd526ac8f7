"""The relay the tutorials teach, in its corrected form, as a peer of the benchmark (written by us).

    bench/.peers-venv/bin/python bench/peers/tutorial_relay.py --port 8802 --upstream http://127.0.0.1:8801/v1

One shared `AsyncOpenAI` client made at startup; an `async def` endpoint, `POST /chat` with a JSON body
`{"message": "..."}`, returns a `StreamingResponse` of an async generator that awaits
`client.chat.completions.create(..., stream=True)` and, `async for chunk in stream`, yields each delta's
text as an SSE `data:` line (`{"content": "..."}`), then `data: [DONE]`. Nothing is stored, counted or
limited. Served by uvicorn, one process, on uvloop and httptools when they are installed. It runs in
bench/.peers-venv (FastAPI, uvicorn[standard] and the app's `openai` pin: bench/peers/__init__.py).
"""

import argparse
import importlib.util
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from openai import AsyncOpenAI
from pydantic import BaseModel


class ChatRequest(BaseModel):
    message: str


def create_app(upstream: str, api_key: str, model: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.client = AsyncOpenAI(base_url=upstream, api_key=api_key)
        yield
        await app.state.client.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/chat")
    async def chat(request: ChatRequest) -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            stream = await app.state.client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": request.message}], stream=True
            )
            async for chunk in stream:
                if chunk.choices and (text := chunk.choices[0].delta.content):
                    yield f"data: {json.dumps({'content': text})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the OpenAI-compatible base URL, .../v1")
    parser.add_argument("--model", default="gpt-test")
    args = parser.parse_args()
    app = create_app(args.upstream, "sk-bench", args.model)
    has = importlib.util.find_spec
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop" if has("uvloop") else "asyncio",
        http="httptools" if has("httptools") else "h11",
        log_level="warning",
    )


if __name__ == "__main__":
    main()
