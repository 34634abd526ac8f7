"""Ports on 127.0.0.1: a free one, and waiting until a process answers on one."""

import socket
import urllib.parse
import urllib.request

from tests.harness.processes import Process


def free_port() -> int:
    """A port nothing listens on now (another process may still take it before ours binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_answering(url: str, process: Process, timeout: float = 60) -> None:
    """Wait until `url` answers: an http:// URL with a success status, a tcp://host:port by accepting a
    connection. Fails at once if `process`, the one that should answer, exits first."""
    process.wait_until(lambda: _answers(url), f"answer from {url}", timeout)


def _answers(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    try:
        if parts.scheme == "tcp":
            with socket.create_connection((parts.hostname, parts.port), timeout=2):
                return True
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:  # refused, reset, timed out, or an error status (urllib's HTTPError is an OSError)
        return False
