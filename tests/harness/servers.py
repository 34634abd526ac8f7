"""The project's own processes, started for real: Daphne servers and `runworker` workers (alone or as a
cluster sharing one environment), and a throwaway redis-server a test may kill and start again."""

import contextlib
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from django.conf import settings

from tests.harness.ports import free_port, wait_until_answering
from tests.harness.processes import Process


class Server:
    """A Daphne process serving the app on 127.0.0.1:`port`."""

    def __init__(self, port: int, process: Process) -> None:
        self.port = port
        self.process = process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        """GET a JSON endpoint: (status, body), for error statuses too."""
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


def start_daphne(env: dict[str, str], log_dir: Path, name: str = "daphne") -> Server:
    """Daphne on a free port, once it answers /healthz; its log is `<name>-<port>.log` in `log_dir`."""
    for _ in range(3):  # a free port may be taken by someone else before Daphne binds it
        port = free_port()
        args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
        process = Process(args, log_dir / f"{name}-{port}.log", env=env)
        try:
            wait_until_answering(f"http://127.0.0.1:{port}/healthz", process)
        except (RuntimeError, TimeoutError):
            process.kill()
            if "Address already in use" in process.output():
                continue
            raise
        return Server(port, process)
    raise RuntimeError("no free port for Daphne")


def start_worker(env: dict[str, str], log_path: Path) -> Process:
    """A `manage.py runworker` generation worker, once it says it is ready."""
    args = [sys.executable, "manage.py", "runworker", "--layer", "jobs", settings.CHAT_WORKER_CHANNEL]
    worker = Process(args, log_path, env=env)
    try:
        worker.wait_for_output("worker ready")
    except (RuntimeError, TimeoutError):
        worker.kill()
        raise
    return worker


class Cluster:
    """Daphne servers and workers started with one environment (database, Redis, prefix, bounds)."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.processes: list[Process] = []

    def _name(self, kind: str) -> str:
        """Numbered in start order, so the logs list in the order things happened."""
        return f"{len(self.processes) + 1:02d}-{kind}"

    def worker(self) -> Process:
        process = start_worker(self.env, self.log_dir / f"{self._name('worker')}.log")
        self.processes.append(process)
        return process

    def server(self) -> Server:
        server = start_daphne(self.env, self.log_dir, self._name("daphne"))
        self.processes.append(server.process)
        return server

    def stop_all(self) -> None:
        """Kill every process started (a test's faults leave nothing worth a graceful stop)."""
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):  # one stuck process must not spare the others
                process.kill()


class RedisServer:
    """A throwaway redis-server of the test's own on a fixed port, which the test may kill and start again."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log_dir = log_dir
        self.process: Process | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.starts += 1
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = Process(args, self.log_dir / f"redis-{self.port}-{self.starts}.log")
        # With nothing to load from disk, redis-server serves as soon as it accepts connections.
        wait_until_answering(f"tcp://127.0.0.1:{self.port}", self.process, timeout=10)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()


class ThreadedServer:
    """The ASGI application served over loopback by uvicorn on a thread of the test process: it shares
    the test's settings, channel layer and test database, so a real HTTP client (the openai SDK) can
    call it while the test reads what it saved. Embedded mode runs the worker on the server's loop."""

    def __init__(self, application: Any) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(
            application,
            host="127.0.0.1",
            port=self.port,
            lifespan="off",
            log_level="warning",
            http="h11",
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> "ThreadedServer":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
