"""The OpenAI-compatible API side by side with LiteLLM proxy, one command:

    python bench/gateway.py --concurrency 1,50,200          (LiteLLM is installed on the first run)

Starts the fake upstream (bench/upstream.py: every token stamped with its emit time), then, each in its
own process: streamchat (Daphne, embedded: SQLite, the worker in-process) with a user and an API key,
and LiteLLM proxy (`litellm --config`, one worker, no database) with the upstream as its one model. For
every C, the official `openai` SDK (AsyncOpenAI, `stream=True`, bench/client.py kind `sdk`) opens C
concurrent streams directly to the upstream (the floor), then through streamchat's /v1, then through
LiteLLM. Per run: token latency (receive - emit time), added time to first token, lost tokens, and
the relay's CPU (utime + stime of its processes, from /proc) per 1,000 tokens delivered. At the end it
counts the transcripts streamchat stored (LiteLLM stores none without a database).

LiteLLM lives in its own virtualenv (`--litellm-venv`, default bench/.litellm-venv, git-ignored),
created with `python -m venv` and `pip install litellm[proxy]==LITELLM_VERSION` (bench/peers/) from PyPI
if missing, so nothing of it reaches the app's environment. Writes bench/results/gateway-<time>.json and .md.
"""

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

import peers  # noqa: E402 - bench/peers/: LiteLLM's virtualenv and process
import run as relay  # noqa: E402 - bench/run.py's process, client and /proc helpers

from tests.harness.ports import wait_until_answering  # noqa: E402

MODEL = peers.LITELLM_MODEL
LITELLM_KEY = peers.LITELLM_KEY


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,50,200")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between tokens of a stream")
    parser.add_argument("--first-delay", type=float, default=0.02)
    parser.add_argument("--port", type=int, default=8790, help="streamchat; +1 the upstream, +2 LiteLLM")
    parser.add_argument("--litellm-venv", type=Path, default=peers.LITELLM_VENV)
    parser.add_argument("--label", default="")
    return parser.parse_args()


def streamchat_env(upstream_url: str, sqlite_path: str) -> dict[str, str]:
    """bench/run.py's embedded server environment, with the per-user limits off."""
    options = argparse.Namespace(env=relay.LIMITS_OFF, database_url="", redis_port=0)
    return relay.server_env(options, "embedded", upstream_url, sqlite_path, users=1)


SEED = """
from django.contrib.auth import get_user_model
from chat import services
user = get_user_model().objects.create_user("bench-api", password="bench-api-password")
print(services.api_key_create(user=user, name="bench").secret)
"""


def start_streamchat(args: argparse.Namespace, env: dict[str, str], work: Path) -> tuple[relay.Process, str]:
    manage = [relay.PYTHON, str(relay.ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, cwd=relay.ROOT, check=True)
    seeded = subprocess.run([*manage, "shell", "-c", SEED], env=env, cwd=relay.ROOT, check=True, capture_output=True)
    secret = seeded.stdout.decode().strip().splitlines()[-1]
    daphne = relay.start_child(
        "daphne", [relay.PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(args.port), "config.asgi:application"],
        env, work,
    )  # fmt: skip
    wait_until_answering(f"http://127.0.0.1:{args.port}/healthz", daphne)
    return daphne, secret


def measure(name: str, c: int, spec: dict, pids: list[int], work: Path) -> dict:
    before: dict = {}

    def at_start() -> None:
        before.update(cpu=relay.cpu_seconds(pids), load=relay.load_average())

    outcome = relay.run_client({**spec, "kind": "sdk", "concurrency": c}, work, at_start)
    result = outcome["result"]
    tokens = max(result["tokens_received"], 1)
    if pids:
        cpu = relay.cpu_seconds(pids) - before["cpu"]
        result.update(relay_cpu_s=round(cpu, 3), cpu_ms_per_1000_tokens=round(cpu * 1e6 / tokens, 1))
    result.update(relay=name, load=round(before["load"], 2))
    result["client_cpu_ms_per_1000_tokens"] = round(result["client_cpu_s"] * 1e6 / tokens, 1)
    print(f"[{name}] C={c}: {relay.brief(result)}", file=sys.stderr)
    return result


def transcripts(sqlite_path: str) -> dict:
    with sqlite3.connect(sqlite_path) as db:
        conversations = db.execute("SELECT count(*) FROM chat_conversation WHERE source = 'api'").fetchone()[0]
        replies = db.execute(
            "SELECT status, count(*) FROM chat_message WHERE role = 'assistant' GROUP BY status"
        ).fetchall()
    return {"conversations": conversations, "replies_by_status": dict(replies)}


def table(report: dict) -> str:
    head = (
        "| relay | C | token p50 / p95 / p99 / max ms | added TTFT p50 / p99 ms | lost / dup | "
        "relay CPU ms per 1k tokens | done | load |\n|---|---:|---|---|---|---:|---|---:|\n"
    )
    rows = []
    for r in report["runs"]:
        lat, ttft = r["latency_ms"], r["added_ttft_ms"]
        rows.append(
            f"| {r['relay']} | {r['concurrency']} | {lat['p50']} / {lat['p95']} / {lat['p99']} / {lat['max']} "
            f"| {ttft['p50']} / {ttft['p99']} | {r['lost']} / {r['duplicated']} "
            f"| {r.get('cpu_ms_per_1000_tokens', '-')} | {r['streams_complete']}/{r['concurrency']} | {r['load']} |"
        )
    return head + "\n".join(rows) + f"\n\nTranscripts stored by streamchat: {report['transcripts']}\n"


def main() -> None:
    args = arguments()
    relay.RESULTS.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="streamchat-gateway-bench-"))
    litellm = peers.ensure_litellm(args.litellm_venv)
    upstream_port, litellm_port = args.port + 1, args.port + 2
    upstream = relay.start_child(
        "upstream",
        [
            relay.PYTHON, str(BENCH / "upstream.py"), "--port", str(upstream_port), "--tokens", str(args.tokens),
            "--interval", str(args.interval), "--first-delay", str(args.first_delay),
        ],
        dict(os.environ), work,
    )  # fmt: skip
    upstream.wait_for_output("upstream ready")
    upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
    sqlite_path = str(work / "bench.sqlite3")
    children = [upstream]
    report: dict = {"command": " ".join(sys.argv), "machine": relay.machine(), "settings": vars(args) | {}, "runs": []}
    report["settings"]["litellm_venv"] = str(args.litellm_venv)
    started = time.time()
    try:
        daphne, secret = start_streamchat(args, streamchat_env(upstream_url, sqlite_path), work)
        children.append(daphne)
        proxy = peers.start_litellm(litellm, litellm_port, upstream_url, work)
        children.append(proxy)
        base = relay.base_spec(
            argparse.Namespace(**vars(args), ramp=0.0, stream_timeout=60 + args.tokens * args.interval), upstream_url
        )
        targets = [
            ("none: the SDK straight to the upstream", {"base_url": upstream_url, "api_key": "x", "model": "gpt-test"}),
            (
                "streamchat /v1 (embedded)",
                {"base_url": f"http://127.0.0.1:{args.port}/v1", "api_key": secret, "model": MODEL},
            ),
            ("LiteLLM proxy", {"base_url": f"http://127.0.0.1:{litellm_port}", "api_key": LITELLM_KEY, "model": MODEL}),
        ]
        pids = {targets[1][0]: [daphne.popen.pid], targets[2][0]: relay.process_tree(proxy.popen.pid)}
        for _, target in targets[1:]:  # warm both relays up: first-request imports are not the relay's cost
            relay.run_client({**base, "kind": "sdk", "concurrency": 1, "sdk": target}, work)
        for c in relay.ints(args.concurrency):
            for name, target in targets:
                report["runs"].append(measure(name, c, {**base, "sdk": target}, pids.get(name, []), work))
        report["transcripts"] = transcripts(sqlite_path)
    finally:
        for child in reversed(children):
            child.stop(grace=25)
    report["duration_s"] = round(time.time() - started, 1)
    name = f"gateway-{time.strftime('%Y%m%d-%H%M%S')}{'-' + args.label if args.label else ''}"
    (relay.RESULTS / f"{name}.json").write_text(json.dumps(report, indent=1))
    markdown = table(report)
    (relay.RESULTS / f"{name}.md").write_text(markdown)
    print(markdown)
    print(f"results: bench/results/{name}.json ({report['duration_s']} s; logs in {work})", file=sys.stderr)


if __name__ == "__main__":
    main()
