"""The relays people use instead of ours, each started in a process (and a virtualenv) of its own.

- the tutorial's FastAPI relay, corrected (bench/peers/tutorial_relay.py, in bench/.peers-venv);
- LiteLLM proxy (`litellm --config`, one worker, no database, in bench/.litellm-venv).

Both are installed from PyPI on first use (bench/venvs.py) and point at the benchmark's fake upstream.
Used by bench/run.py (rows beside the app's) and bench/gateway.py (beside the app's /v1).
"""

import os
import re
from pathlib import Path

from venvs import BENCH, ensure_venv

from tests.harness.ports import wait_until_answering
from tests.harness.processes import Process

# The newest LiteLLM whose `proxy` extra resolves from PyPI alone (later ones pin litellm-proxy-extras
# builds that were not published there).
LITELLM_VERSION = "1.100.0"
LITELLM_MODEL = "openai:gpt-test"
LITELLM_KEY = "sk-litellm-bench"
LITELLM_VENV = BENCH / ".litellm-venv"
PEERS_VENV = BENCH / ".peers-venv"


def app_openai_pin() -> str:
    """The `openai` requirement the app pins, so the tutorial's relay uses the same SDK."""
    text = (BENCH.parent / "requirements.txt").read_text()
    return re.search(r"^openai==\S+", text, re.MULTILINE).group(0)


def tutorial_packages() -> list[str]:
    return ["fastapi==0.165.0", "uvicorn[standard]==0.55.0", app_openai_pin()]


def ensure_litellm(venv: Path = LITELLM_VENV) -> Path:
    """The `litellm` command of its own virtualenv."""
    return ensure_venv(venv, [f"litellm[proxy]=={LITELLM_VERSION}"], "litellm")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "OPENAI"))}
    env.update(PYTHONUNBUFFERED="1")
    return env


def start_litellm(command: Path, port: int, upstream_url: str, work: Path) -> Process:
    config = work / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {LITELLM_MODEL}\n"
        "    litellm_params:\n"
        "      model: openai/gpt-test\n"
        f"      api_base: {upstream_url}\n"
        "      api_key: sk-bench\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_KEY}\n"
    )
    env = _env() | {"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
    args = [str(command), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    process = Process(args, work / "litellm.log", env=env)
    wait_until_answering(f"http://127.0.0.1:{port}/health/liveliness", process, timeout=180)
    return process


def start_tutorial(port: int, upstream_url: str, work: Path) -> Process:
    python = ensure_venv(PEERS_VENV, tutorial_packages(), "python")
    args = [str(python), str(BENCH / "peers" / "tutorial_relay.py"), "--port", str(port), "--upstream", upstream_url]
    process = Process(args, work / "tutorial.log", env=_env())
    wait_until_answering(f"tcp://127.0.0.1:{port}", process, timeout=60)
    return process
