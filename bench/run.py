"""The streaming benchmark, one command:

    python bench/run.py --mode redis,embedded --concurrency 1,50,200,500     (add --quick for a 70-second run)

Starts the fake upstream (bench/upstream.py: 200 tokens a stream, one every 20 ms, each stamped with its
emit time), then for every C runs the floors with no relay (a raw aiohttp SSE reader and the official
`openai` SDK consuming directly), then for every mode starts the app (Daphne, plus one `runworker` in
Redis mode) and runs C WebSocket clients (and SSE clients for --sse-concurrency) against it, each in
a process of its own (bench/client.py). Per run it records token latency percentiles, added time to
first token, tokens lost / duplicated / out of order, server CPU per 1,000 tokens (Daphne + worker,
from /proc), database writes and channel-layer messages per reply, and Daphne's memory per idle
WebSocket. Writes bench/results/<time>.json and .md, plots docs/benchmarks.png, prints the table.

Redis mode uses PostgreSQL (database streamchat_bench, created if missing) and a private redis-server
on its own port (so other users of the machine's Redis do not show up in its command counts).
Embedded mode uses a temporary SQLite file and in-memory layers, the worker inside Daphne.
"""

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as `python bench/run.py`: the tests' process helpers serve here too

from tests.harness.ports import wait_until_answering  # noqa: E402
from tests.harness.processes import Process  # noqa: E402

BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
PYTHON = sys.executable
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/streamchat_bench"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", default="redis,embedded")
    parser.add_argument("--concurrency", default="1,50,200,500")
    parser.add_argument("--sse-concurrency", default="20", help="C values also run with SSE clients ('' for none)")
    parser.add_argument("--baselines", default="raw,sdk", help="floors with no relay ('' for none)")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between tokens of a stream")
    parser.add_argument("--first-delay", type=float, default=0.02, help="upstream's wait before the first token")
    parser.add_argument("--ramp", type=float, default=0.0, help="spread the C sends over this many seconds")
    parser.add_argument("--idle-sockets", type=int, default=300)
    parser.add_argument("--passes", type=int, default=1, help="run every point this many times")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-port", type=int, default=6391)
    parser.add_argument("--port", type=int, default=8791, help="Daphne's port (the upstream takes port+1)")
    parser.add_argument("--daphne", choices=["uvloop", "asyncio"], default="asyncio")
    parser.add_argument("--env", action="append", default=[], help="extra server setting NAME=VALUE (repeatable)")
    parser.add_argument("--label", default="", help="name of this run's results file")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--quick", action="store_true", help="C=1,50; 100 tokens; 100 idle sockets; no SDK floor")
    args = parser.parse_args()
    if args.quick:
        args.concurrency, args.tokens, args.idle_sockets, args.baselines = "1,50", 100, 100, "raw"
    return args


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def words(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


# --- processes ---------------------------------------------------------------------------------


def start_child(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Process:
    """A process of the run, its output in `<log_dir>/<name>.log` (the tests' own process helper)."""
    return Process(args, log_dir / f"{name}.log", env=env)


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / TICKS


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def load_average() -> float:
    return os.getloadavg()[0]


def run_client(spec: dict, work: Path, on_start: Callable[[], None] | None = None) -> dict:
    path = work / f"spec-{spec['kind']}-{spec['concurrency']}.json"
    path.write_text(json.dumps(spec))
    with subprocess.Popen(
        [PYTHON, str(BENCH / "client.py"), str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as client:
        for line in client.stderr:
            if line.startswith("go"):
                break
            sys.stderr.write(line)
        started = on_start() if on_start else None
        out, err = client.communicate(timeout=spec["timeout"] + 120)
    if client.returncode != 0 or not out.strip():
        raise RuntimeError(f"client failed ({client.returncode}): {err[-3000:]}")
    return {"result": json.loads(out.strip().splitlines()[-1]), "started": started}


# --- measurements of the server side --------------------------------------------------------


class Counters:
    """Server CPU, database writes to chat_message, and Redis commands: read before and after a run."""

    def __init__(self, mode: str, pids: list[int], database_url: str, sqlite_path: str, redis_port: int) -> None:
        self.mode, self.pids = mode, pids
        self.database_url, self.sqlite_path, self.redis_port = database_url, sqlite_path, redis_port

    def cpu(self) -> float:
        return cpu_seconds(self.pids)

    def cpu_each(self) -> list[float]:
        return [cpu_seconds([pid]) for pid in self.pids]

    def db_writes(self) -> int:
        if self.mode == "embedded":
            import sqlite3

            with contextlib.closing(sqlite3.connect(self.sqlite_path, timeout=30)) as db:
                return db.execute("SELECT n FROM bench_writes WHERE kind = 'message'").fetchone()[0]
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as db:
            query = "SELECT n_tup_ins + n_tup_upd FROM pg_stat_user_tables WHERE relname = 'chat_message'"
            return db.execute(query).fetchone()[0]

    def settled_db_writes(self) -> int | None:
        """PostgreSQL publishes table statistics lazily (up to ~10 s late): wait until they stop moving."""
        try:
            return self._settled_db_writes()
        except Exception as exc:  # noqa: BLE001 - e.g. PostgreSQL out of connections: report, go on
            print(f"database writes not counted: {exc}", file=sys.stderr)
            return None

    def _settled_db_writes(self) -> int:
        value = self.db_writes()
        if self.mode == "embedded":
            return value
        for _ in range(12):
            time.sleep(1.5)
            again = self.db_writes()
            if again == value:
                return value
            value = again
        return value

    def redis_commands(self) -> dict[str, int]:
        if self.mode == "embedded":
            return {}
        import redis

        stats = redis.Redis(port=self.redis_port).info("commandstats")
        return {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}


def measure_relay(kind: str, c: int, spec: dict, counters: Counters, work: Path) -> dict:
    before: dict = {}

    def at_start() -> None:
        before.update(
            cpu=counters.cpu(), each=counters.cpu_each(), redis=counters.redis_commands(), load=load_average()
        )

    writes0 = counters.settled_db_writes()
    outcome = run_client({**spec, "kind": kind, "concurrency": c}, work, at_start)
    cpu = counters.cpu() - before["cpu"]
    each = [after - first for after, first in zip(counters.cpu_each(), before["each"], strict=True)]
    redis_after = counters.redis_commands()
    writes1 = counters.settled_db_writes()
    writes = None if writes0 is None or writes1 is None else writes1 - writes0
    result = outcome["result"]
    replies = max(result["streams_complete"], 1)
    tokens = max(result["tokens_received"], 1)
    redis_delta = {k: v - before["redis"].get(k, 0) for k, v in redis_after.items() if v != before["redis"].get(k, 0)}
    result.update(
        load=round(before["load"], 2),
        server_cpu_s=round(cpu, 3),
        cpu_ms_per_1000_tokens=round(cpu * 1000 / tokens * 1000, 1),
        cpu_ms_per_1000_tokens_by_process=[round(x * 1e6 / tokens, 1) for x in each],
        db_writes_per_reply=None if writes is None else round(writes / replies, 2),
        frames_per_reply=round(result["frames"] / replies, 1),
        redis_publish_per_reply=round(redis_delta.get("publish", 0) / replies, 1) if redis_delta else None,
        redis_commands_per_reply=round(sum(redis_delta.values()) / replies, 1) if redis_delta else None,
        redis_commands=redis_delta,
    )
    return result


def measure_idle(spec: dict, count: int, daphne_pid: int, work: Path) -> dict:
    path = work / "spec-idle.json"
    path.write_text(json.dumps({**spec, "kind": "idle", "concurrency": count}))
    time.sleep(1)
    before = rss_bytes(daphne_pid)
    with subprocess.Popen(
        [PYTHON, str(BENCH / "client.py"), str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as client:
        assert client.stdout.readline().strip() == "open"
        time.sleep(2)
        after = rss_bytes(daphne_pid)
        client.communicate("", timeout=60)
    return {
        "sockets": count,
        "rss_before_mb": round(before / 2**20, 1),
        "kb_per_socket": round((after - before) / count / 1024, 1),
    }


# --- modes ------------------------------------------------------------------------------------


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as db:
        if not db.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            db.execute(f'CREATE DATABASE "{name}"')


def server_env(args: argparse.Namespace, mode: str, upstream_url: str, sqlite_path: str, users: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "CHAT_", "OPENAI"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="false",
        DJANGO_LOG_LEVEL="WARNING",
        OPENAI_API_KEY="sk-bench",
        OPENAI_BASE_URL=upstream_url,
        OPENAI_MODELS="gpt-test",
        LOCAL_MODEL_ENABLED="false",
        CHAT_DEFAULT_MODEL="openai:gpt-test",
        CHAT_WORKER_CONCURRENCY=str(max(users, 500)),
        PYTHONUNBUFFERED="1",
    )
    if mode == "redis":
        env.update(
            DATABASE_URL=args.database_url,
            REDIS_URL=f"redis://127.0.0.1:{args.redis_port}/0",
            CHAT_REDIS_PREFIX=f"bench{os.getpid()}",
        )
    else:
        env.update(SQLITE_PATH=sqlite_path)
    for item in args.env:
        name, _, value = item.partition("=")
        env[name] = value
    return env


def run_mode(args: argparse.Namespace, mode: str, upstream_url: str, work: Path, base_spec: dict) -> dict:
    cs, sse_cs = ints(args.concurrency), ints(args.sse_concurrency)
    users = max(cs + sse_cs + [args.idle_sockets, 1])
    sqlite_path = str(work / "bench.sqlite3")
    env = server_env(args, mode, upstream_url, sqlite_path, users)
    rounds = 1 + args.passes * (len(cs) + len(sse_cs))
    children: list[Process] = []
    redis_server = None
    if mode == "redis":
        ensure_database(args.database_url)
        redis_server = start_child(
            "redis",
            ["redis-server", "--port", str(args.redis_port), "--save", "", "--appendonly", "no"],
            env,
            work,
        )
        wait_until_answering(f"tcp://127.0.0.1:{args.redis_port}", redis_server)
    try:
        print(f"[{mode}] seeding {users} users x {rounds} conversations", file=sys.stderr)
        seeded = json.loads(
            subprocess.run(
                [PYTHON, str(BENCH / "seed.py"), "--users", str(users), "--rounds", str(rounds)],
                env=env,
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        daphne_cmd = [PYTHON, str(BENCH / "daphne_uvloop.py")] if args.daphne == "uvloop" else [PYTHON, "-m", "daphne"]
        daphne = start_child(
            "daphne", [*daphne_cmd, "-b", "127.0.0.1", "-p", str(args.port), "config.asgi:application"], env, work
        )
        children.append(daphne)
        if mode == "redis":
            worker = start_child(
                "worker", [PYTHON, "manage.py", "runworker", "--layer", "jobs", "chat-generate"], env, work
            )
            children.append(worker)
        wait_until_answering(f"tcp://127.0.0.1:{args.port}", daphne)
        pids = [child.popen.pid for child in children]
        counters = Counters(mode, pids, args.database_url, sqlite_path, args.redis_port)
        spec = {
            **base_spec,
            "origin": f"http://127.0.0.1:{args.port}",
            "ws_url": f"ws://127.0.0.1:{args.port}/ws/chat/",
            "http_url": f"http://127.0.0.1:{args.port}",
            "sessions": seeded["sessions"],
        }
        conversations = iter(seeded["conversations"])
        warm = run_client({**spec, "kind": "ws", "concurrency": 1, "conversations": next(conversations)}, work)
        print(f"[{mode}] warm-up: {warm['result']['streams_complete']} reply", file=sys.stderr)
        idle = measure_idle(spec, args.idle_sockets, daphne.popen.pid, work)
        print(f"[{mode}] idle sockets: {idle}", file=sys.stderr)
        runs = []
        for kind, values in (("ws", cs), ("sse", sse_cs)):
            for c in values:
                for _ in range(args.passes):
                    conversations_now = next(conversations)[:c]
                    try:
                        result = measure_relay(kind, c, {**spec, "conversations": conversations_now}, counters, work)
                    except Exception as exc:  # noqa: BLE001 - one failed point must not lose the others
                        print(f"[{mode}] {kind} C={c} failed: {exc}", file=sys.stderr)
                        continue
                    result["mode"] = mode
                    print(f"[{mode}] {kind} C={c}: {brief(result)}", file=sys.stderr)
                    runs.append(result)
        return {"mode": mode, "idle": idle, "runs": runs}
    finally:
        for child in reversed(children):
            child.stop(grace=25)  # longer than the worker's shutdown grace
        if redis_server is not None:
            redis_server.stop()


def brief(r: dict) -> str:
    return (
        f"p50 {r['latency_ms']['p50']} p99 {r['latency_ms']['p99']} max {r['latency_ms']['max']} ms, "
        f"ttft+ {r['added_ttft_ms']['p50']} ms, lost {r['lost']} dup {r['duplicated']}, "
        f"cpu {r.get('cpu_ms_per_1000_tokens', '-')} ms/1k, load {r.get('load', '-')}, "
        f"done {r['streams_complete']}/{r['concurrency']} {r['errors']}"
    )


def run_baselines(args: argparse.Namespace, base_spec: dict, work: Path) -> list[dict]:
    runs = []
    for c in ints(args.concurrency):
        for kind in words(args.baselines):
            for _ in range(args.passes):
                load = load_average()
                result = run_client({**base_spec, "kind": kind, "concurrency": c}, work)["result"]
                result.update(mode="none", load=round(load, 2))
                result["client_cpu_ms_per_1000_tokens"] = round(
                    result["client_cpu_s"] * 1e6 / max(result["tokens_received"], 1), 1
                )
                print(f"[none] {kind} C={c}: {brief(result)}", file=sys.stderr)
                runs.append(result)
    return runs


# --- report -----------------------------------------------------------------------------------

NAMES = {
    ("none", "raw"): "none: raw SSE client (aiohttp)",
    ("none", "sdk"): "none: official `openai` SDK consuming directly",
    ("redis", "ws"): "streamchat, Redis mode, WebSocket",
    ("redis", "sse"): "streamchat, Redis mode, SSE",
    ("embedded", "ws"): "streamchat, embedded, WebSocket",
    ("embedded", "sse"): "streamchat, embedded, SSE",
}


def table(report: dict) -> str:
    head = (
        "| relay | C | token p50 / p95 / p99 / max ms | added TTFT p50 / p99 ms | lost / dup / order "
        "| CPU ms per 1k tokens | DB writes per reply | frames per reply | Redis cmds (publish) per reply | load |\n"
        "|---|---:|---|---|---|---:|---:|---:|---|---:|\n"
    )
    rows = []
    for r in report["runs"]:
        lat, ttft = r["latency_ms"], r["added_ttft_ms"]
        cpu = r.get("cpu_ms_per_1000_tokens")
        cpu_text = f"{cpu}" if cpu is not None else f"({r.get('client_cpu_ms_per_1000_tokens')} client)"
        redis = (
            "-"
            if r.get("redis_commands_per_reply") is None
            else f"{r['redis_commands_per_reply']} ({r['redis_publish_per_reply']})"
        )
        done = (
            "" if r["streams_complete"] == r["concurrency"] else f" ({r['streams_complete']}/{r['concurrency']} done)"
        )
        rows.append(
            f"| {NAMES[(r['mode'], r['kind'])]}{done} | {r['concurrency']} "
            f"| {lat['p50']} / {lat['p95']} / {lat['p99']} / {lat['max']} | {ttft['p50']} / {ttft['p99']} "
            f"| {r['lost']} / {r['duplicated']} / {r['out_of_order']} | {cpu_text} "
            f"| {r.get('db_writes_per_reply', '-')} | {r.get('frames_per_reply', '-')} | {redis} | {r['load']} |"
        )
    idle = "\n".join(
        f"- {m['mode']}: {m['idle']['kb_per_socket']} KB of Daphne RSS per idle WebSocket "
        f"({m['idle']['sockets']} sockets, RSS before {m['idle']['rss_before_mb']} MB)"
        for m in report["modes"]
    )
    return head + "\n".join(rows) + "\n\nMemory per open idle WebSocket:\n" + idle + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat_ax, cpu_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    series: dict[tuple[str, str], list[dict]] = {}
    for r in report["runs"]:
        series.setdefault((r["mode"], r["kind"]), []).append(r)
    for key, runs in series.items():
        runs = sorted(runs, key=lambda r: r["concurrency"])
        cs = [r["concurrency"] for r in runs]
        if len(cs) < 2:
            continue
        line = lat_ax.plot(cs, [r["latency_ms"]["p99"] for r in runs], marker="o", label=f"{NAMES[key]} p99")[0]
        lat_ax.plot(cs, [r["latency_ms"]["p50"] for r in runs], marker=".", ls="--", color=line.get_color())
        cpu = [r.get("cpu_ms_per_1000_tokens") or r.get("client_cpu_ms_per_1000_tokens") for r in runs]
        cpu_ax.plot(cs, cpu, marker="o", label=NAMES[key] + (" (client)" if key[0] == "none" else ""))
    lat_ax.set(
        xscale="log", yscale="log", xlabel="concurrent streams C", ylabel="token latency ms (p99 solid, p50 dashed)"
    )
    cpu_ax.set(xscale="log", xlabel="concurrent streams C", ylabel="CPU ms per 1,000 tokens")
    lat_ax.legend(fontsize=7)
    cpu_ax.legend(fontsize=7)
    lat_ax.grid(True, which="both", alpha=0.3)
    cpu_ax.grid(True, alpha=0.3)
    fig.suptitle("streamchat relay: 200 tokens per stream at 50 tokens/s; floors with no relay", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    args = arguments()
    RESULTS.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="streamchat-bench-"))
    upstream_port = args.port + 1
    upstream = start_child(
        "upstream",
        [
            PYTHON, str(BENCH / "upstream.py"), "--port", str(upstream_port), "--tokens", str(args.tokens),
            "--interval", str(args.interval), "--first-delay", str(args.first_delay),
        ],
        dict(os.environ),
        work,
    )  # fmt: skip
    upstream.wait_for_output("upstream ready")
    upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
    base_spec = {
        "upstream_url": upstream_url,
        "tokens": args.tokens,
        "first_delay": args.first_delay,
        "ramp": args.ramp,
        "timeout": args.tokens * args.interval + 120,
    }
    started = time.time()
    report: dict = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": machine(),
        "settings": vars(args),
        "runs": [],
        "modes": [],
    }
    try:
        report["runs"] += run_baselines(args, base_spec, work)
        for mode in words(args.mode):
            try:
                outcome = run_mode(args, mode, upstream_url, work, base_spec)
            except Exception as exc:  # noqa: BLE001 - keep the other mode's figures
                print(f"[{mode}] failed: {exc} (logs in {work})", file=sys.stderr)
                continue
            report["runs"] += outcome["runs"]
            report["modes"].append({"mode": mode, "idle": outcome["idle"]})
    finally:
        upstream.stop()
    report["duration_s"] = round(time.time() - started, 1)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}{'-' + args.label if args.label else ''}"
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=1))
    markdown = table(report)
    (RESULTS / f"{name}.md").write_text(markdown)
    if not args.no_plot:
        # A --quick run plots beside its results: docs/benchmarks.png shows the full matrix.
        plot(report, RESULTS / f"{name}.png" if args.quick else ROOT / "docs" / "benchmarks.png")
    print(markdown)
    print(f"results: bench/results/{name}.json ({report['duration_s']} s)", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()}


if __name__ == "__main__":
    main()
