"""The provider engine: generation jobs in, streamed and saved replies out.

jobs.py        the web side's only door: submit, request a stop, the in-process worker
worker.py      the worker process: job intake bounded by slots, leases, reaper, graceful SIGTERM
generation.py  one reply: the resolved provider's deltas -> frames -> checkpoints -> final save
frames.py      the coalescer that batches deltas into frames, and the append-then-publish choice
heartbeat.py   the worker heartbeat behind /readyz
resilience.py  backoff, best-effort live operations, database calls that must land (the worker's db thread)
"""
