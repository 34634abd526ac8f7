"""Flame graphs of the app's processes during one point of the benchmark (bench/run.py --profile).

py-spy (a sampling profiler from PyPI, in bench/.tools-venv) attaches to a running process by its pid,
which needs ptrace: we run as root. It samples 100 times a second without pausing the process
(`--nonblocking`: cheaper, at the cost of a rare torn stack) from the moment the clients start until the
run's last stream ends, and writes an SVG flame graph when it is interrupted. It samples only the thread
holding the GIL (`--gil`): the graph is where the process spends CPU in Python, and a thread waiting (on
epoll, on PostgreSQL's answer in psycopg) is not counted as work.
"""

import signal
import subprocess
from pathlib import Path

from venvs import BENCH, ensure_venv

TOOLS_VENV = BENCH / ".tools-venv"
PY_SPY = "py-spy==0.4.3"


def py_spy() -> Path:
    return ensure_venv(TOOLS_VENV, [PY_SPY], "py-spy")


def check(pid: int) -> None:
    """Fail early, with py-spy's own words, when it cannot read the process (no ptrace, no Python)."""
    subprocess.run([str(py_spy()), "dump", "--pid", str(pid)], check=True, capture_output=True, timeout=30)


class Recording:
    """py-spy recording one process into an SVG until `stop`."""

    def __init__(self, pid: int, path: Path, log: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self._log = path, log.open("wb")
        args = [str(py_spy()), "record", "--pid", str(pid), "--rate", "100", "--nonblocking", "--gil"]
        args += ["--format", "flamegraph", "--output", str(path)]
        self.popen = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)

    def stop(self) -> Path:
        self.popen.send_signal(signal.SIGINT)  # py-spy writes the flame graph on ^C
        self.popen.wait(60)
        self._log.close()
        return self.path
