"""Child processes the tests start: stopped politely, then firmly."""

import subprocess


def stop_process(popen: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL."""
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(grace)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(10)
