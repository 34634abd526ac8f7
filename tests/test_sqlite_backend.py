"""config/sqlite/base.py: the process's write transactions on one SQLite file take a fair lock, handed
over in the order asked; one that waited past the busy timeout goes on to SQLite's own wait."""

import threading

import pytest
from django.db import connection, transaction

from config.sqlite.base import FairLock, write_lock_for


def waiter(lock: FairLock, order: list[str], name: str) -> threading.Thread:
    def run() -> None:
        assert lock.acquire(timeout=30)
        order.append(name)
        lock.release()

    return threading.Thread(target=run)


def queued(lock: FairLock, count: int) -> None:
    """Waits until `count` tickets were handed out (the holder's included)."""
    while lock._next_ticket < count:
        threading.Event().wait(0.001)


def test_threads_waiting_for_the_write_lock_get_it_in_the_order_they_asked():
    lock, order = FairLock(), []
    assert lock.acquire(timeout=1)
    threads = []
    for index, name in enumerate(["sends", "worker", "leases"]):
        thread = waiter(lock, order, name)
        thread.start()
        queued(lock, index + 2)
        threads.append(thread)

    lock.release()
    for thread in threads:
        thread.join(timeout=30)

    assert order == ["sends", "worker", "leases"]


def test_a_waiter_that_gave_up_is_passed_over_when_its_turn_comes():
    lock = FairLock()
    assert lock.acquire(timeout=1)

    assert lock.acquire(timeout=0) is False
    lock.release()

    assert lock.acquire(timeout=0) is True


@pytest.mark.django_db(transaction=True)
def test_a_transaction_holds_its_files_write_lock_from_begin_to_commit():
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite backend")
    lock = write_lock_for(connection.settings_dict["NAME"])

    with transaction.atomic():
        assert lock.acquire(timeout=0) is False  # held by this transaction

    assert lock.acquire(timeout=0) is True
    lock.release()
