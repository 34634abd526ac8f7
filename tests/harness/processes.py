"""Child processes the tests start: output to a log file, stopped politely, then firmly."""

import contextlib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Process:
    """A child process, run from the project root, whose output goes to a log file."""

    def __init__(self, args: list[str], log_path: Path, *, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
        """Poll `condition` until it holds; RuntimeError if the process exits first, TimeoutError if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if self.popen.poll() is not None:
                raise RuntimeError(f"exited with {self.popen.returncode}, no {what}:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"no {what} within {timeout}s:\n{self.output()[-3000:]}")

    def wait_for_output(self, text: str, timeout: float = 60) -> None:
        """Wait until the process has printed `text`."""
        self.wait_until(lambda: text in self.output(), f"{text!r} in the output", timeout)

    def stop(self, grace: float = 15) -> None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL."""
        if self.popen.poll() is None:
            self.popen.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        self.kill()

    def kill(self) -> None:
        """SIGKILL (if it still runs), reap it and close its log."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)
        self._log.close()
