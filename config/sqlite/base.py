"""Django's SQLite backend, with one fair in-process lock for write transactions.

SQLite takes one writer at a time. Embedded, two threads of the process write: asgiref's database
thread (the sends) and the in-process worker's (claims, checkpoint batches, final saves:
chat.engine.resilience). A transaction that finds the file locked waits in SQLite's busy handler,
which polls with sleeps of up to 100 ms: a thread that writes transaction after transaction keeps
the lock while the other sleeps, and nobody works meanwhile. Here a transaction (every `atomic`
block: BEGIN IMMEDIATE) first takes this lock, which hands over in the order asked, at once: the
threads' transactions alternate. Writes outside a transaction still wait in the busy handler.

It also asks for SQLite 3.35 or newer (Django itself takes 3.31): the worker's checkpoint batch is one
`UPDATE … FROM … RETURNING` (chat.services.generations). An older library fails at the first
connection with Django's "SQLite 3.35 or later is required", not mid-reply.
"""

import threading

from django.db.backends.sqlite3 import base, features


class FairLock:
    """A ticket lock: the threads that wait get it in the order they asked for it."""

    def __init__(self) -> None:
        self._turn = threading.Condition()
        self._next_ticket = 0
        self._serving = 0
        self._abandoned: set[int] = set()

    def acquire(self, timeout: float) -> bool:
        with self._turn:
            ticket = self._next_ticket
            self._next_ticket += 1
            if self._turn.wait_for(lambda: self._serving == ticket, timeout=timeout):
                return True
            self._abandoned.add(ticket)  # gave up: its turn passes at once when it comes
            return False

    def release(self) -> None:
        with self._turn:
            self._serving += 1
            while self._serving in self._abandoned:
                self._abandoned.discard(self._serving)
                self._serving += 1
            self._turn.notify_all()


_locks: dict[str, FairLock] = {}
_locks_lock = threading.Lock()


def write_lock_for(name: str) -> FairLock:
    """The process's one lock for a database file."""
    with _locks_lock:
        return _locks.setdefault(name, FairLock())


class DatabaseFeatures(features.DatabaseFeatures):
    minimum_database_version = (3, 35)  # UPDATE … FROM (3.33) and RETURNING (3.35)


class DatabaseWrapper(base.DatabaseWrapper):
    features_class = DatabaseFeatures
    _holds_write_lock = False

    def _start_transaction_under_autocommit(self) -> None:
        lock = write_lock_for(self.settings_dict["NAME"])
        # Past the busy timeout SQLite's own wait decides (and fails with "database is locked").
        self._holds_write_lock = lock.acquire(timeout=float(self.settings_dict["OPTIONS"].get("timeout", 5)))
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._release_write_lock()
            raise

    def _release_write_lock(self) -> None:
        if self._holds_write_lock:
            self._holds_write_lock = False
            write_lock_for(self.settings_dict["NAME"]).release()

    def _commit(self) -> None:
        try:
            super()._commit()
        finally:
            self._release_write_lock()

    def _rollback(self) -> None:
        try:
            super()._rollback()
        finally:
            self._release_write_lock()

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            self._release_write_lock()
