"""The test clients' database switch: overlapping waits on several sockets leave cleanup on after."""

import asyncio

import channels.db

from tests.harness import communicators
from tests.harness.communicators import close_old_connections_outside_test_transactions as close_old_connections


async def wait_holding_the_switch(started: asyncio.Event, release: asyncio.Event) -> None:
    with communicators.connections_kept_open():
        started.set()
        await release.wait()


async def test_cleanup_is_off_while_any_wait_runs_and_on_once_the_last_one_ends():
    first_in, second_in, first_out, second_out = (asyncio.Event() for _ in range(4))
    first = asyncio.create_task(wait_holding_the_switch(first_in, first_out))
    second = asyncio.create_task(wait_holding_the_switch(second_in, second_out))
    await first_in.wait()
    await second_in.wait()

    first_out.set()  # the first wait ends while the second still runs: channels' own patch broke here
    await first
    assert channels.db.close_old_connections is not close_old_connections
    second_out.set()
    await second
    assert channels.db.close_old_connections is close_old_connections
    assert communicators.connections_are_closed_again()


async def test_a_wait_cancelled_midway_still_turns_cleanup_back_on():
    started, never = asyncio.Event(), asyncio.Event()
    waiting = asyncio.create_task(wait_holding_the_switch(started, never))
    await started.wait()
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert communicators.connections_are_closed_again()


def test_cleanup_leaves_a_test_transactions_connection_open(db):
    from django.db import connection

    connection.ensure_connection()
    assert connection.in_atomic_block  # the test's wrapping transaction
    close_old_connections()
    with connection.cursor() as cursor:  # "Cannot operate on a closed database" if it was closed under the test
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
