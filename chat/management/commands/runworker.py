"""`manage.py runworker --layer jobs chat-generate`: Channels' runworker with the chat worker's extras
(slot-bounded job intake, lease renewal, reaping of replies whose worker died, graceful SIGTERM)."""

from channels.management.commands.runworker import Command as ChannelsRunworker

from chat.engine.worker import ChatWorker


class Command(ChannelsRunworker):
    def handle(self, *args: object, **options: object) -> None:
        channels = options["channels"]
        layer = options.get("layer") or "jobs"
        if layer != "jobs":
            # Jobs and stop signals travel on the "jobs" layer; another layer would never see them.
            self.stderr.write(f"runworker: the chat worker listens on the 'jobs' layer, not {layer!r}")
        try:
            import uvloop  # a faster event loop where available (it is pinned in requirements.txt)

            uvloop.install()
        except ImportError:
            pass
        ChatWorker(channels=list(channels)).run()
