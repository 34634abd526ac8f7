"""The worker's CPU per streamed token in the provider SDK path, with each HTTP client the SDKs may send
with (CHAT_PROVIDER_TRANSPORT): C concurrent streams of the real providers (chat.providers.openai,
chat.providers.anthropic: the SDK, the transport, our parsing) read to their end against the fake
upstream (tests/fake_upstream.py, in a process of its own so its CPU is not counted).

    python bench/provider_stream.py                      # 50 streams of 200 tokens, 50 tokens/s, 3 rounds
    python bench/provider_stream.py --streams 20 --repeat 5 --providers openai --transports httpx,aiohttp

CPU is this process's time.process_time() (user + system, every thread) over a round, per 1,000
tokens received, after a round of each that is not counted (the SDKs import modules on first use);
rounds of the two transports alternate so a change in the machine's load falls on
both. Each round runs on a new uvloop event loop, as the worker does, connections included.
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def serve_upstream(tokens: int, interval: float) -> None:
    """The child process: the fake upstream, every request answered with `tokens` tokens `interval` apart."""
    from tests.fake_upstream import FakeUpstream, Scenario

    upstream = FakeUpstream().start()
    upstream.default = Scenario.slow(tokens, delay=interval)
    print(upstream.port, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    upstream.stop()


def provider_at(name: str, root_url: str):
    from chat.providers.anthropic import AnthropicProvider
    from chat.providers.openai import OpenAIProvider

    if name == "anthropic":
        return AnthropicProvider(api_key="bench", base_url=f"{root_url}/anthropic", model_names=["claude-bench"])
    return OpenAIProvider(
        name="openai", label="OpenAI", api_key="bench", base_url=f"{root_url}/v1", model_names=["gpt-bench"]
    )


async def one_round(provider, streams: int) -> int:
    """`streams` replies read at once to their end; the tokens received."""
    from chat.providers.base import ChatTurn, GenerationRequest
    from chat.providers.registry import close_clients

    request = GenerationRequest(provider.model_names[0], "", [ChatTurn("user", "go")], max_output_tokens=4096)

    async def read() -> int:
        count = 0
        async with provider.stream(request) as stream:
            async for _ in stream:
                count += 1
        return count

    counts = await asyncio.gather(*(read() for _ in range(streams)))
    await close_clients()
    return sum(counts)


def measure(provider, transport: str, streams: int) -> tuple[float, float, int]:
    """One round: CPU seconds, wall seconds, tokens."""
    import uvloop
    from django.conf import settings

    settings.CHAT_PROVIDER_TRANSPORT = transport
    cpu, wall = time.process_time(), time.perf_counter()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        tokens = runner.run(one_round(provider, streams))
    return time.process_time() - cpu, time.perf_counter() - wall, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between two tokens of a stream")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--providers", default="openai,anthropic")
    parser.add_argument("--transports", default="httpx,aiohttp")
    parser.add_argument("--upstream", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        serve_upstream(args.tokens, args.interval)
        return

    import django

    django.setup()
    child = subprocess.Popen(
        [sys.executable, __file__, "--upstream", "--tokens", str(args.tokens), "--interval", str(args.interval)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        root_url = f"http://127.0.0.1:{int(child.stdout.readline())}"
        run(args, root_url)
    finally:
        child.stdin.close()
        child.wait(timeout=30)


def run(args: argparse.Namespace, root_url: str) -> None:
    expected = args.streams * args.tokens
    print(
        f"{args.streams} streams x {args.tokens} tokens, one every {args.interval * 1000:.0f} ms; {args.repeat} rounds"
    )
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    providers = {name: provider_at(name, root_url) for name in args.providers.split(",")}
    for provider in providers.values():  # the SDKs import their modules on first use: not counted
        for transport in args.transports.split(","):
            measure(provider, transport, 2)
    results: dict[tuple[str, str], list[float]] = {}
    for round_number in range(1, args.repeat + 1):
        for name, provider in providers.items():
            for transport in args.transports.split(","):
                cpu, wall, tokens = measure(provider, transport, args.streams)
                per_1k = cpu * 1000 / tokens * 1000
                results.setdefault((name, transport), []).append(per_1k)
                lost = "" if tokens == expected else f"  ({expected - tokens} tokens missing)"
                print(
                    f"round {round_number} {name:9} {transport:7} {per_1k:6.1f} ms CPU / 1k tokens, {wall:.2f} s{lost}"
                )
    print("\n| provider | transport | CPU ms / 1k tokens (median) | rounds |")
    print("|---|---|--:|---|")
    for (name, transport), values in results.items():
        rounds = ", ".join(f"{value:.0f}" for value in values)
        print(f"| {name} | {transport} | {statistics.median(values):.0f} | {rounds} |")


if __name__ == "__main__":
    main()
