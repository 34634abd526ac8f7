"""Cluster mode: a real `manage.py runworker` process on PostgreSQL and Redis, started by the tests
(the process helpers themselves are in tests/harness/)."""

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from tests.harness.servers import Process, start_worker


def database_url_of_test_database() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


# The attachments folder every process of the test cluster shares (tests/attachment_fixtures.py uses it
# in cluster mode): a worker reads the files a send names from it, as on one machine in production.
CLUSTER_ATTACHMENTS_DIR = Path(tempfile.gettempdir()) / f"streamchat-test-attachments-{os.getpid()}"


def cluster_env(upstream_url: str, **overrides: str) -> dict[str, str]:
    """The environment of a server or worker process in the test cluster: same database, Redis and provider."""
    from tests.engine_fixtures import PLANTED_KEY, TEST_MODEL

    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url_of_test_database(),
        REDIS_URL=settings.REDIS_URL,
        OPENAI_API_KEY=PLANTED_KEY,
        OPENAI_BASE_URL=upstream_url,
        OPENAI_MODELS="gpt-test,gpt-other",
        CHAT_DEFAULT_MODEL=TEST_MODEL,
        CHAT_ATTACHMENTS_DIR=str(CLUSTER_ATTACHMENTS_DIR),
        CHAT_VISION_MODELS=TEST_MODEL,  # as the attachment tests' `vision` fixture sets it in the test process
        LOCAL_MODEL_ENABLED="false",
        CHAT_RETRY_BASE_DELAY="0.05",
        CHAT_TIMEOUT_FIRST_TOKEN="20",
        CHAT_TIMEOUT_IDLE="20",
        CHAT_TIMEOUT_TOTAL="60",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


@pytest.fixture(scope="session", autouse=True)
def _no_stray_sessions(request: pytest.FixtureRequest) -> Iterator[None]:
    """At the very end (before the test database is dropped), end the database sessions that killed
    processes left behind. Not earlier: it would also end this process's connections in other threads."""
    if not settings.REDIS_URL:
        yield
        return
    request.getfixturevalue("django_db_setup")  # so this teardown runs before the database's
    blocker = request.getfixturevalue("django_db_blocker")
    yield
    with blocker.unblock():
        drop_stray_sessions()


class SessionWorker:
    """The runworker process of the session's cluster-mode engine tests, started when a test needs it.

    Tests that start clusters of their own (tests/test_faults.py, each on its own Redis prefix) stop it
    first: its reaper shares their database, so it would take up their stale replies (hand a background
    reply to itself, on its own prefix, where their followers never see it).
    """

    def __init__(self, log_dir: Path, upstream_url: str) -> None:
        self.log_dir = log_dir
        self.upstream_url = upstream_url
        self.process: Process | None = None
        self.starts = 0

    def running(self) -> Process:
        if self.process is None or self.process.popen.poll() is not None:
            self.starts += 1
            log = self.log_dir / f"worker-{self.starts}.log"
            self.process = start_worker(cluster_env(self.upstream_url), log)
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


_session_worker: SessionWorker | None = None


def stop_session_worker() -> None:
    """Stop the session's worker, if one runs (the next test that needs it starts it again)."""
    if _session_worker is not None:
        _session_worker.stop()


@pytest.fixture(scope="session")
def session_worker(django_db_setup, fake_upstream, tmp_path_factory) -> Iterator[SessionWorker]:
    global _session_worker
    _session_worker = SessionWorker(tmp_path_factory.mktemp("cluster"), fake_upstream.base_url_openai)
    yield _session_worker
    _session_worker.stop()
    _session_worker = None


@pytest.fixture
def cluster_worker(session_worker: SessionWorker) -> Process:
    """The runworker process for cluster-mode engine tests (one for the session, started on demand)."""
    return session_worker.running()


def drop_stray_sessions() -> None:
    """End database sessions that exited processes left behind, so the test database can be dropped."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [connection.settings_dict["NAME"]],
        )
