"""The benchmark's table (bench/results/<time>.md, printed) and plot (docs/benchmarks.png) of bench/run.py."""

from pathlib import Path

NAMES = {
    ("none", "raw"): "none: raw SSE client (aiohttp)",
    ("none", "sdk"): "none: official `openai` SDK consuming directly",
    ("tutorial", "tutorial"): "the tutorial's FastAPI relay, corrected (AsyncOpenAI)",
    ("litellm", "raw"): "LiteLLM proxy",
    ("redis", "ws"): "streamchat, Redis mode, WebSocket",
    ("redis", "sse"): "streamchat, Redis mode, SSE",
    ("embedded", "ws"): "streamchat, embedded, WebSocket",
    ("embedded", "sse"): "streamchat, embedded, SSE",
    ("cluster2", "ws"): "streamchat, 2 Daphne + 2 workers, WebSocket",
}
COLUMNS = [
    ("relay", "---"),
    ("C", "--:"),
    ("done", "--:"),
    ("token p50 / p95 / p99 / max ms", "---"),
    ("added TTFT p50 / p99 ms", "---"),
    ("send→accepted p50 / p99 ms", "---"),
    ("lost / dup / order", "---"),
    ("tokens/s (ideal)", "--:"),
    ("relay CPU ms per 1k tokens (by process)", "---"),
    ("cores used, tokens/s per core", "---"),
    ("client CPU ms per 1k tokens, % of a core", "---"),
    ("threads at peak", "--:"),
    ("PG conns at peak", "--:"),
    ("DB writes per reply", "--:"),
    ("frames per reply", "--:"),
    ("Redis cmds (publish) per reply", "---"),
    ("load", "--:"),
]


def name(r: dict) -> str:
    text = NAMES[(r["mode"], r["kind"])]
    return text if r.get("limits") is None else f"{text}, limits {r['limits']}"


def _n(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value >= 1000 or isinstance(value, int):
        return f"{value:,.0f}"
    return f"{value}"


def _cells(r: dict) -> list[str]:
    lat, ttft, acc = r["latency_ms"], r["added_ttft_ms"], r["accepted_ms"]
    by_process = r.get("cpu_ms_per_1000_tokens_by_process") or {}
    parts = ", ".join(f"{k} {_n(v)}" for k, v in by_process.items()) if len(by_process) > 1 else ""
    cpu = (
        "-"
        if r.get("cpu_ms_per_1000_tokens") is None
        else _n(r["cpu_ms_per_1000_tokens"]) + (f" ({parts})" if parts else "")
    )
    cores = "-" if r.get("cores_used") is None else f"{r['cores_used']}, {_n(r['tokens_per_cpu_s'])}"
    redis = (
        "-"
        if r.get("redis_commands_per_reply") is None
        else f"{r['redis_commands_per_reply']} ({r['redis_publish_per_reply']})"
    )
    timed_out = f" ({r['timed_out']} timed out)" if r.get("timed_out") else ""
    return [
        name(r),
        str(r["concurrency"]),
        f"{r['streams_complete']}/{r['concurrency']}{timed_out}",
        " / ".join(_n(lat[p]) for p in ("p50", "p95", "p99", "max")),
        f"{_n(ttft['p50'])} / {_n(ttft['p99'])}",
        f"{_n(acc['p50'])} / {_n(acc['p99'])}",
        f"{r['lost']} / {r['duplicated']} / {r['out_of_order']}",
        f"{_n(r['tokens_per_s'])} ({_n(r.get('ideal_tokens_per_s'))})",
        cpu,
        cores,
        f"{_n(r['client_cpu_ms_per_1000_tokens'])}, {r['client_cpu_pct_of_core']}%",
        _n(r.get("server_threads_peak")),
        _n(r.get("pg_connections_peak")),
        _n(r.get("db_writes_per_reply")),
        _n(r.get("frames_per_reply")),
        redis,
        str(r["load"]),
    ]


def table(report: dict) -> str:
    head = "| " + " | ".join(c for c, _ in COLUMNS) + " |\n|" + "|".join(a for _, a in COLUMNS) + "|\n"
    rows = ["| " + " | ".join(_cells(r)) + " |" for r in report["runs"]]
    idle = "\n".join(
        f"- {m['mode']}, limits {m['limits']}: {m['idle']['kb_per_socket']} KB of Daphne RSS per idle WebSocket "
        f"({m['idle']['sockets']} sockets, RSS before {m['idle']['rss_before_mb']} MB)"
        for m in report["modes"]
        if m["idle"]
    )
    return head + "\n".join(rows) + "\n" + (f"\nMemory per open idle WebSocket:\n{idle}\n" if idle else "")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat_ax, cpu_ax) = plt.subplots(1, 2, figsize=(13, 5))
    series: dict[str, list[dict]] = {}
    for r in report["runs"]:
        series.setdefault(name(r), []).append(r)
    for label, runs in series.items():
        runs = sorted(runs, key=lambda r: r["concurrency"])
        cs = [r["concurrency"] for r in runs]
        if len(cs) < 2:
            continue
        p99 = [r["latency_ms"]["p99"] for r in runs]
        line = lat_ax.plot(cs, p99, marker="o", label=f"{label} p99")[0]
        lat_ax.plot(cs, [r["latency_ms"]["p50"] for r in runs], marker=".", ls="--", color=line.get_color())
        floor = runs[0]["mode"] == "none"
        cpu = [r["client_cpu_ms_per_1000_tokens"] if floor else r.get("cpu_ms_per_1000_tokens") for r in runs]
        cpu_ax.plot(cs, cpu, marker="o", color=line.get_color(), label=label + (" (client)" if floor else ""))
    lat_ax.set(
        xscale="log", yscale="log", xlabel="concurrent streams C", ylabel="token latency ms (p99 solid, p50 dashed)"
    )
    cpu_ax.set(xscale="log", xlabel="concurrent streams C", ylabel="relay CPU ms per 1,000 tokens")
    lat_ax.legend(fontsize=6)
    cpu_ax.legend(fontsize=6)
    lat_ax.grid(True, which="both", alpha=0.3)
    cpu_ax.grid(True, alpha=0.3)
    fig.suptitle("Relays side by side: 200 tokens per stream at 50 tokens/s; floors with no relay", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
