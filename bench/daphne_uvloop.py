"""Daphne on uvloop: `python bench/daphne_uvloop.py -b 127.0.0.1 -p 8000 config.asgi:application`.

Daphne creates its Twisted event loop with `asyncio.new_event_loop()` when `daphne.server` is first
imported, so the uvloop policy must be in place before that import: the `daphne` script cannot do it.
"""

import sys

import uvloop

uvloop.install()

from daphne.cli import CommandLineInterface  # noqa: E402 - after the loop policy, on purpose

if __name__ == "__main__":
    sys.exit(CommandLineInterface.entrypoint())
