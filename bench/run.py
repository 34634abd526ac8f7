"""The streaming benchmark, one command for the whole comparison of issue 20:

    python bench/run.py            (every mode, C=1,50,200,500, SSE at 200, both peers, limits off and on,
                                    2 Daphne + 2 workers at C=1000; add --quick for a run of about 2 minutes)

Starts the fake upstream (bench/upstream.py: 200 tokens a stream, one every 20 ms, each stamped with its
emit time) and the peers (--peers: the tutorial's FastAPI relay, corrected, and LiteLLM proxy, each in its
own process and virtualenv: bench/peers/). For every C it runs the floors with no relay (a raw aiohttp SSE
reader and the official `openai` SDK consuming directly) and the peers, then for every mode and every
--limits setting starts the app (Daphne, plus one `runworker` in Redis mode; 2 Daphne + 2 runworker in
cluster2 mode) and runs C WebSocket clients (and SSE clients for --sse-concurrency) against it. The load
client (bench/client.py) runs in processes of its own. Per run it records token latency percentiles,
added time to first token, send to `accepted`, tokens lost / duplicated / out of order, streams that
timed out, tokens/s achieved against the ideal, the relay's CPU per 1,000 tokens (its processes and
their children, from /proc) and the load client's own, Daphne's threads and the app's PostgreSQL
connections at their peak, database writes and channel-layer messages per reply, and Daphne's memory
per idle WebSocket. Writes bench/results/<time>.json and .md, plots docs/benchmarks.png, prints the table.
--profile writes py-spy flame graphs of Daphne and the worker during the C=50 point (docs/profiles/).

Redis and cluster2 modes use PostgreSQL (--database-url, created if missing) and a private redis-server
on its own port (so other users of the machine's Redis do not show up in its command counts).
Embedded mode uses a temporary SQLite file and in-memory layers, the worker inside Daphne.
Ports: --port is Daphne's; +1 the upstream, +2 the tutorial's relay, +3 LiteLLM, +4 cluster2's second Daphne.
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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as `python bench/run.py`: the tests' process helpers serve here too

import client as load  # noqa: E402 - bench/client.py: combines the parts of a run's client processes
import flamegraphs  # noqa: E402
import peers  # noqa: E402
import report  # noqa: E402

from tests.harness.ports import wait_until_answering  # noqa: E402
from tests.harness.processes import Process  # noqa: E402

BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
PROFILES = ROOT / "docs" / "profiles"
PYTHON = sys.executable
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/streamchat_bench"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
PROFILED_C = 50

# The per-user limits (chat/limits.py, chat/teams.py, the queue room of chat/services/replies.py), all off:
# the peers have none, so the side-by-side rows run without them.
LIMITS_OFF = [
    "CHAT_MAX_CONCURRENT_PER_USER=0",
    "CHAT_MESSAGES_PER_MINUTE=0",
    "CHAT_DAILY_TOKEN_BUDGET=0",
    "CHAT_DAILY_COST_BUDGET=0",
    "CHAT_MONTHLY_COST_BUDGET=0",
    "CHAT_MAX_QUEUED_PER_USER=100000",
]
QUICK = {
    "concurrency": "1,50",
    "tokens": 100,
    "idle_sockets": 100,
    "baselines": "raw",
    "sse_concurrency": "20",
    "peers": "tutorial",
    "limits": "off",
    "mode": "redis,embedded",
}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", default="redis,embedded,cluster2", help="any of redis, embedded, cluster2")
    parser.add_argument("--concurrency", default="1,50,200,500", help="C values of the floors, peers and modes")
    parser.add_argument("--sse-concurrency", default="200", help="C values also run with SSE clients ('' for none)")
    parser.add_argument("--cluster2-concurrency", default="1000", help="C values of cluster2 mode")
    parser.add_argument("--baselines", default="raw,sdk", help="floors with no relay ('' for none)")
    parser.add_argument("--peers", default="tutorial,litellm", help="relays beside ours ('' for none)")
    parser.add_argument("--limits", default="off,on", help="the app's per-user limits: on (as shipped), off, or both")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between tokens of a stream")
    parser.add_argument("--first-delay", type=float, default=0.02, help="upstream's wait before the first token")
    parser.add_argument("--ramp", type=float, default=0.0, help="spread the C sends over this many seconds")
    parser.add_argument("--stream-timeout", type=float, help="a stream not done this long after its send timed out")
    parser.add_argument("--idle-sockets", type=int, default=300)
    parser.add_argument("--passes", type=int, default=1, help="run every point this many times")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-port", type=int, default=6391)
    parser.add_argument("--port", type=int, default=8791, help="Daphne's port (see the ports above)")
    parser.add_argument("--daphne", choices=["uvloop", "asyncio"], default="asyncio")
    parser.add_argument("--env", action="append", default=[], help="extra server setting NAME=VALUE (repeatable)")
    parser.add_argument("--profile", action="store_true", help=f"py-spy flame graphs of the C={PROFILED_C} point")
    parser.add_argument("--label", default="", help="name of this run's results file (and of its profiles)")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="defaults for a short run: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()),
    )
    args = parser.parse_args()
    if args.quick:  # explicit options still win
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
    if args.stream_timeout is None:
        args.stream_timeout = 60 + args.tokens * args.interval
    return args


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def words(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def base_spec(args: argparse.Namespace, upstream_url: str) -> dict:
    """What every client of a run is told, whatever it measures."""
    return {
        "upstream_url": upstream_url,
        "tokens": args.tokens,
        "first_delay": args.first_delay,
        "ramp": args.ramp,
        "stream_timeout": args.stream_timeout,
        "timeout": args.ramp + args.stream_timeout + 120,
    }


def ideal_tokens_per_s(args: argparse.Namespace, c: int) -> int:
    """C streams' tokens over the time the upstream takes to send them: C x rate when all start at once."""
    return round(c * args.tokens / (args.ramp + args.tokens * args.interval))


# --- processes ---------------------------------------------------------------------------------


def start_child(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Process:
    """A process of the run, its output in `<log_dir>/<name>.log` (the tests' own process helper)."""
    return Process(args, log_dir / f"{name}.log", env=env)


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a child that has ended
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / TICKS


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (a proxy may fork its server), for their CPU."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            for child in (task / "children").read_text().split():
                pids += process_tree(int(child))
    return pids


def thread_count(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Threads:"))


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def load_average() -> float:
    return os.getloadavg()[0]


def _client_specs(spec: dict, splits: list[dict] | None) -> list[dict]:
    """One spec per client process: with `splits`, the streams cut in equal slices, each with its overrides
    (cluster2: one process per Daphne port)."""
    if not splits:
        return [spec]
    n, c = len(splits), spec["concurrency"]
    bounds = [c * k // n for k in range(n + 1)]
    return [
        {
            **spec,
            **extra,
            "concurrency": bounds[k + 1] - bounds[k],
            "conversations": spec["conversations"][bounds[k] : bounds[k + 1]],
            "sessions": spec["sessions"][bounds[k] : bounds[k + 1]],
        }
        for k, extra in enumerate(splits)
    ]


def run_client(
    spec: dict, work: Path, on_start: Callable[[], None] | None = None, splits: list[dict] | None = None
) -> dict:
    """Run the load client (several processes with `splits`): all connect, `on_start` reads the counters,
    then every process starts its streams at once. Returns the combined result."""
    clients, paths = [], []
    try:
        for k, one in enumerate(_client_specs(spec, splits)):
            path = work / f"spec-{spec['kind']}-{spec['concurrency']}-{k}.json"
            path.write_text(json.dumps(one))
            path.with_suffix(".result.json").unlink(missing_ok=True)
            paths.append(path)
            command = [PYTHON, str(BENCH / "client.py"), str(path)]
            pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
            clients.append(subprocess.Popen(command, text=True, **pipes))
        for client in clients:
            for line in client.stderr:
                if line.startswith("go"):
                    break
                sys.stderr.write(line)
        started = on_start() if on_start else None
        for client in clients:
            with contextlib.suppress(BrokenPipeError):
                client.stdin.write("go\n")
                client.stdin.flush()
        parts = []
        for client in clients:
            _, err = client.communicate(timeout=spec["timeout"] + 120)
            result = paths[clients.index(client)].with_suffix(".result.json")
            if client.returncode != 0 or not result.exists():
                raise RuntimeError(f"client failed ({client.returncode}): {err[-3000:]}")
            parts.append(json.loads(result.read_text()))
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()
    return {"result": load.combine(parts), "started": started}


# --- measurements of the server side --------------------------------------------------------


class Counters:
    """The app's database writes to chat_message and Redis commands: read before and after a run."""

    def __init__(self, mode: str, database_url: str, sqlite_path: str, redis_port: int) -> None:
        self.mode, self.database_url, self.sqlite_path, self.redis_port = mode, database_url, sqlite_path, redis_port

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


class Peaks(threading.Thread):
    """Polls, while a run streams, the server's threads (/proc/<pid>/status) and the PostgreSQL connections
    the app holds (pg_stat_activity by application_name: CHAT_DB_APPLICATION_NAME's default names each
    process `streamchat-<pid>`); keeps the highest of each."""

    def __init__(self, thread_pids: list[int], pg_pids: list[int], database_url: str) -> None:
        super().__init__(daemon=True)
        self.thread_pids, self.database_url = thread_pids, database_url
        self.pg_names = [f"streamchat-{pid}" for pid in pg_pids]
        self.threads = 0
        self.pg_connections: int | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        db = None
        if self.pg_names:
            import psycopg

            with contextlib.suppress(Exception):
                db = psycopg.connect(self.database_url, autocommit=True)
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = ANY(%s)"
        while not self.stopping.wait(0.25):
            with contextlib.suppress(FileNotFoundError, StopIteration):
                self.threads = max(self.threads, sum(thread_count(pid) for pid in self.thread_pids))
            if db is not None:
                with contextlib.suppress(Exception):
                    held = db.execute(query, [self.pg_names]).fetchone()[0]
                    self.pg_connections = max(self.pg_connections or 0, held)
        if db is not None:
            db.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


@dataclass
class Relay:
    """What a row measures: the relay's processes (their CPU), the ones whose threads and PostgreSQL
    connections are counted, and for the app its write and Redis counters."""

    mode: str
    limits: str | None
    names: list[str]
    pids: list[int]
    thread_pids: list[int]
    pg_pids: list[int] = field(default_factory=list)
    database_url: str = ""
    counters: Counters | None = None
    splits: list[dict] | None = None
    tree: bool = False  # count the processes' children too (a peer may fork its server)

    def cpu_pids(self) -> list[list[int]]:
        return [process_tree(pid) if self.tree else [pid] for pid in self.pids]


def measure(kind: str, c: int, spec: dict, relay: Relay, work: Path, profile: dict[int, Path] | None = None) -> dict:
    """One point: C streams of `kind` through `relay`, its counters read around the streaming."""
    before: dict = {}
    counters = relay.counters
    peaks = Peaks(relay.thread_pids, relay.pg_pids, relay.database_url)
    recordings: list[flamegraphs.Recording] = []

    def at_start() -> None:
        groups = relay.cpu_pids()
        before.update(groups=groups, each=[cpu_seconds(g) for g in groups], load=load_average())
        before["redis"] = counters.redis_commands() if counters else {}
        peaks.start()
        for pid, path in (profile or {}).items():
            recordings.append(flamegraphs.Recording(pid, path, work / f"py-spy-{pid}.log"))

    writes0 = counters.settled_db_writes() if counters else None
    try:
        outcome = run_client({**spec, "kind": kind, "concurrency": c}, work, at_start, relay.splits)
    finally:
        for recording in recordings:
            print(f"[{relay.mode}] flame graph: {recording.stop()}", file=sys.stderr)
        if peaks.is_alive():
            peaks.stop()
    each = [cpu_seconds(g) - first for g, first in zip(before["groups"], before["each"], strict=True)]
    result = outcome["result"]
    result.update(mode=relay.mode, limits=relay.limits, load=round(before["load"], 2))
    result.update(server_threads_peak=peaks.threads or None, pg_connections_peak=peaks.pg_connections)
    _cpu_figures(result, relay.names, each)
    if counters:
        writes1 = counters.settled_db_writes()
        _app_figures(
            result, counters, before["redis"], None if writes0 is None or writes1 is None else writes1 - writes0
        )
    return result


def _cpu_figures(result: dict, names: list[str], each: list[float]) -> None:
    if not names:  # a floor: no relay, only the client's own CPU
        return
    tokens = max(result["tokens_received"], 1)
    cpu = sum(each)
    result.update(
        server_cpu_s=round(cpu, 3),
        cpu_ms_per_1000_tokens=round(cpu * 1e6 / tokens, 1),
        cpu_ms_per_1000_tokens_by_process={n: round(x * 1e6 / tokens, 1) for n, x in zip(names, each, strict=True)},
        cores_used=round(cpu / result["wall_s"], 2) if result["wall_s"] else None,
        tokens_per_cpu_s=round(result["tokens_received"] / cpu) if cpu else None,
    )


def _app_figures(result: dict, counters: Counters, redis_before: dict, writes: int | None) -> None:
    replies = max(result["streams_complete"], 1)
    redis_after = counters.redis_commands()
    redis_delta = {k: v - redis_before.get(k, 0) for k, v in redis_after.items() if v != redis_before.get(k, 0)}
    result.update(
        db_writes_per_reply=None if writes is None else round(writes / replies, 2),
        frames_per_reply=round(result["frames"] / replies, 1),
        redis_publish_per_reply=round(redis_delta.get("publish", 0) / replies, 1) if redis_delta else None,
        redis_commands_per_reply=round(sum(redis_delta.values()) / replies, 1) if redis_delta else None,
        redis_commands=redis_delta,
    )


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


def server_env(
    args: argparse.Namespace, mode: str, upstream_url: str, sqlite_path: str, users: int, limits: str = "on"
) -> dict:
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
    if mode == "embedded":
        env.update(SQLITE_PATH=sqlite_path)
    else:
        env.update(
            DATABASE_URL=args.database_url,
            REDIS_URL=f"redis://127.0.0.1:{args.redis_port}/0",
            CHAT_REDIS_PREFIX=f"bench{os.getpid()}",
        )
    for item in (LIMITS_OFF if limits == "off" else []) + args.env:
        name, _, value = item.partition("=")
        env[name] = value
    return env


def concurrencies(args: argparse.Namespace, mode: str) -> tuple[list[int], list[int]]:
    """The WebSocket and SSE C values of a mode."""
    if mode == "cluster2":
        return ints(args.cluster2_concurrency), []
    return ints(args.concurrency), ints(args.sse_concurrency)


def seed(args: argparse.Namespace, env: dict, users: int, rounds: int) -> dict:
    command = [PYTHON, str(BENCH / "seed.py"), "--users", str(users), "--rounds", str(rounds)]
    done = subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_app(args: argparse.Namespace, mode: str, env: dict, work: Path) -> tuple[list[Process], list[Process]]:
    """Daphne (two in cluster2 mode, on --port and --port+4) and the runworker processes of the mode."""
    ports = [args.port, args.port + 4] if mode == "cluster2" else [args.port]
    workers = {"redis": 1, "cluster2": 2}.get(mode, 0)
    daphne_cmd = [PYTHON, str(BENCH / "daphne_uvloop.py")] if args.daphne == "uvloop" else [PYTHON, "-m", "daphne"]
    daphnes = [
        start_child(
            f"daphne-{port}", [*daphne_cmd, "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"], env, work
        )
        for port in ports
    ]
    command = [PYTHON, "manage.py", "runworker", "--layer", "jobs", "chat-generate"]
    runworkers = [start_child(f"worker-{k}", command, env, work) for k in range(workers)]
    for port, daphne in zip(ports, daphnes, strict=True):
        wait_until_answering(f"tcp://127.0.0.1:{port}", daphne)
    return daphnes, runworkers


def _endpoints(port: int) -> dict:
    return {
        "origin": f"http://127.0.0.1:{port}",
        "ws_url": f"ws://127.0.0.1:{port}/ws/chat/",
        "http_url": f"http://127.0.0.1:{port}",
    }


def run_mode(args: argparse.Namespace, mode: str, limits: str, upstream_url: str, work: Path, base: dict) -> dict:
    cs, sse_cs = concurrencies(args, mode)
    idle_sockets = 0 if mode == "cluster2" else args.idle_sockets
    users = max(cs + sse_cs + [idle_sockets, 2])
    sqlite_path = str(work / f"bench-{limits}.sqlite3")
    env = server_env(args, mode, upstream_url, sqlite_path, users, limits)
    rounds = 1 + args.passes * (len(cs) + len(sse_cs))
    children: list[Process] = []
    redis_server = None
    tag = f"{mode}, limits {limits}"
    if mode != "embedded":
        ensure_database(args.database_url)
        redis_server = start_child(
            "redis",
            ["redis-server", "--port", str(args.redis_port), "--save", "", "--appendonly", "no"],
            env,
            work,
        )
        wait_until_answering(f"tcp://127.0.0.1:{args.redis_port}", redis_server)
    try:
        print(f"[{tag}] seeding {users} users x {rounds} conversations", file=sys.stderr)
        seeded = seed(args, env, users, rounds)
        daphnes, runworkers = start_app(args, mode, env, work)
        children += daphnes + runworkers
        ports = [args.port, args.port + 4][: len(daphnes)]
        relay = Relay(
            mode=mode,
            limits=limits,
            names=[f"daphne{k or ''}" for k in range(len(daphnes))]
            + [f"worker{k or ''}" for k in range(len(runworkers))],
            pids=[child.popen.pid for child in children],
            thread_pids=[d.popen.pid for d in daphnes],
            pg_pids=[] if mode == "embedded" else [child.popen.pid for child in children],
            database_url=args.database_url,
            counters=Counters(mode, args.database_url, sqlite_path, args.redis_port),
            splits=[_endpoints(port) for port in ports] if len(ports) > 1 else None,
        )
        spec = {**base, **_endpoints(args.port), "sessions": seeded["sessions"]}
        conversations = iter(seeded["conversations"])
        warm_round = next(conversations)
        for k, port in enumerate(ports):  # first-request imports are not the relay's cost
            warm = {**spec, **_endpoints(port), "kind": "ws", "concurrency": 1}
            warm.update(conversations=[warm_round[k]], sessions=[seeded["sessions"][k]])
            print(f"[{tag}] warm-up: {run_client(warm, work)['result']['streams_complete']} reply", file=sys.stderr)
        idle = measure_idle(spec, idle_sockets, daphnes[0].popen.pid, work) if idle_sockets else None
        print(f"[{tag}] idle sockets: {idle}", file=sys.stderr)
        runs = []
        for kind, values in (("ws", cs), ("sse", sse_cs)):
            for c in values:
                for n in range(args.passes):
                    conversations_now = next(conversations)[:c]
                    profile = (
                        profile_paths(args, mode, limits, daphnes, runworkers)
                        if (kind, c, n) == ("ws", PROFILED_C, 0)
                        else None
                    )
                    point = {**spec, "conversations": conversations_now}
                    measure_point(args, runs, tag, kind, c, point, relay, work, profile)
        return {"mode": mode, "limits": limits, "idle": idle, "runs": runs}
    finally:
        for child in reversed(children):
            child.stop(grace=25)  # longer than the worker's shutdown grace
        if redis_server is not None:
            redis_server.stop()


def measure_point(
    args: argparse.Namespace,
    runs: list[dict],
    tag: str,
    kind: str,
    c: int,
    spec: dict,
    relay: Relay,
    work: Path,
    profile: dict[int, Path] | None = None,
) -> None:
    """Measure one point and add it to `runs`; a failed point is said on stderr and the others still run."""
    try:
        result = measure(kind, c, spec, relay, work, profile)
    except Exception as exc:  # noqa: BLE001 - one failed point must not lose the others
        print(f"[{tag}] {kind} C={c} failed: {exc}", file=sys.stderr)
        return
    result["ideal_tokens_per_s"] = ideal_tokens_per_s(args, c)
    print(f"[{tag}] {kind} C={c}: {brief(result)}", file=sys.stderr)
    runs.append(result)


def profile_paths(
    args: argparse.Namespace, mode: str, limits: str, daphnes: list[Process], runworkers: list[Process]
) -> dict[int, Path] | None:
    """Where --profile writes this mode's flame graphs: docs/profiles/<label>-<mode>[-limits-<x>]-<process>.svg
    (the limits named only when the run has both settings)."""
    if not args.profile or mode == "cluster2":
        return None
    name = f"{args.label or 'run'}-{mode}" + (f"-limits-{limits}" if len(words(args.limits)) > 1 else "")
    processes = {"daphne": daphnes[0]} | ({"worker": runworkers[0]} if runworkers else {})
    for process in processes.values():
        flamegraphs.check(process.popen.pid)
    return {p.popen.pid: PROFILES / f"{name}-{what}.svg" for what, p in processes.items()}


def brief(r: dict) -> str:
    return (
        f"p50 {r['latency_ms']['p50']} p99 {r['latency_ms']['p99']} max {r['latency_ms']['max']} ms, "
        f"ttft+ {r['added_ttft_ms']['p50']} ms, accepted {r['accepted_ms']['p50']} ms, "
        f"lost {r['lost']} dup {r['duplicated']}, cpu {r.get('cpu_ms_per_1000_tokens', '-')} ms/1k "
        f"(client {r['client_cpu_ms_per_1000_tokens']}, {r['client_cpu_pct_of_core']}%), "
        f"{r['tokens_per_s']} tokens/s, load {r.get('load', '-')}, "
        f"done {r['streams_complete']}/{r['concurrency']} {r['errors']}"
    )


# --- floors and peers -------------------------------------------------------------------------


def start_peers(args: argparse.Namespace, upstream_url: str, work: Path) -> dict[str, tuple[Process, dict]]:
    """Each peer's process and what its clients are told: kind `tutorial`, or kind `raw` for LiteLLM
    (the OpenAI streaming API read by the floor's own cheap SSE reader, not the heavier SDK). A peer that
    cannot be installed or started is left out, said on stderr: the other rows still count."""
    litellm_port, tutorial_port = args.port + 3, args.port + 2
    litellm = {
        "url": f"http://127.0.0.1:{litellm_port}/chat/completions",
        "headers": {"Authorization": f"Bearer {peers.LITELLM_KEY}"},
        "model": peers.LITELLM_MODEL,
    }
    known = {
        "tutorial": (
            lambda: peers.start_tutorial(tutorial_port, upstream_url, work),
            {"kind": "tutorial", "tutorial_url": f"http://127.0.0.1:{tutorial_port}/chat"},
        ),
        "litellm": (
            lambda: peers.start_litellm(peers.ensure_litellm(), litellm_port, upstream_url, work),
            {"kind": "raw", "raw": litellm},
        ),
    }
    started: dict[str, tuple[Process, dict]] = {}
    for name in words(args.peers):
        if name not in known:
            raise SystemExit(f"unknown peer {name!r} (tutorial, litellm)")
        start, extra = known[name]
        try:
            started[name] = (start(), extra)
        except Exception as exc:  # noqa: BLE001 - keep the other rows
            print(f"[{name}] not started: {exc} (logs in {work})", file=sys.stderr)
    return started


def run_floors_and_peers(args: argparse.Namespace, base: dict, upstream_url: str, work: Path) -> list[dict]:
    runs = []
    started = start_peers(args, upstream_url, work)
    try:
        for name, (_, extra) in started.items():  # first-request imports are not the relay's cost
            run_client({**base, **extra, "concurrency": 1}, work)
            print(f"[{name}] warmed up", file=sys.stderr)
        for c in ints(args.concurrency):
            rows: list[tuple[str, dict, Relay]] = []
            for kind in words(args.baselines):
                rows.append(
                    ("none", {"kind": kind}, Relay(mode="none", limits=None, names=[], pids=[], thread_pids=[]))
                )
            for name, (process, extra) in started.items():
                pid = process.popen.pid
                rows.append(
                    (name, extra, Relay(mode=name, limits=None, names=[name], pids=[pid], thread_pids=[pid], tree=True))
                )
            for name, extra, relay in rows:
                for _ in range(args.passes):
                    measure_point(args, runs, name, extra["kind"], c, {**base, **extra}, relay, work)
    finally:
        for process, _ in started.values():
            process.stop()
    return runs


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
    base = base_spec(args, upstream_url)
    started = time.time()
    result: dict = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": machine(),
        "settings": vars(args),
        "runs": [],
        "modes": [],
    }
    try:
        result["runs"] += run_floors_and_peers(args, base, upstream_url, work)
        for mode in words(args.mode):
            for limits in words(args.limits):
                try:
                    outcome = run_mode(args, mode, limits, upstream_url, work, base)
                except Exception as exc:  # noqa: BLE001 - keep the other modes' figures
                    print(f"[{mode}, limits {limits}] failed: {exc} (logs in {work})", file=sys.stderr)
                    continue
                result["runs"] += outcome["runs"]
                result["modes"].append({k: outcome[k] for k in ("mode", "limits", "idle")})
    finally:
        upstream.stop()
    result["duration_s"] = round(time.time() - started, 1)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}{'-' + args.label if args.label else ''}"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
    markdown = report.table(result)
    (RESULTS / f"{name}.md").write_text(markdown)
    if not args.no_plot:
        # A --quick run plots beside its results: docs/benchmarks.png shows the full matrix.
        report.plot(result, RESULTS / f"{name}.png" if args.quick else ROOT / "docs" / "benchmarks.png")
    print(markdown)
    print(f"results: bench/results/{name}.json ({result['duration_s']} s)", file=sys.stderr)
    if any(r["errors"] for r in result["runs"]):
        print(f"some streams failed: the processes' logs are in {work}", file=sys.stderr)
    else:
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
