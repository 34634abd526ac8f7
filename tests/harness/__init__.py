"""What the tests use to start, reach, wait for and cut real processes, and to control time:

- ports.py: `free_port`, and `wait_until_answering`, the one wait for a process to answer on a port
- processes.py: `Process`, a child process with its log file, waited for by what it prints
- servers.py: Daphne (`start_daphne`, `Server`), `start_worker`, a `Cluster` of both, a throwaway `RedisServer`,
  `ThreadedServer` (the app under uvicorn on a thread of the test process)
- proxy.py: `TcpProxy`, a loopback proxy that can cut every connection going through it
- follower.py: `Follower`, a WebSocket client that follows a conversation by the documented client rules
- waiting.py: `wait_for`, which polls an async condition
- clock.py: `ManualClock`, a clock that moves only when the test says so
"""
