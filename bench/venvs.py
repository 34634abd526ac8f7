"""Virtualenvs of the benchmark's own tools and peers, made from PyPI the first time they are needed.

Each lives under bench/ (git-ignored) so nothing of it reaches the app's environment: LiteLLM proxy in
bench/.litellm-venv, the tutorial's FastAPI relay in bench/.peers-venv, py-spy in bench/.tools-venv.
"""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def ensure_venv(venv: Path, packages: list[str], command: str) -> Path:
    """`venv/bin/<command>`, after `python -m venv` and `pip install <packages>` if the venv lacks them.

    The requirements are written beside the venv's packages, so a changed pin installs again."""
    wanted = "\n".join(packages) + "\n"
    marker = venv / "bench-requirements.txt"
    path = venv / "bin" / command
    if path.exists() and marker.exists() and marker.read_text() == wanted:
        return path
    print(f"installing {' '.join(packages)} into {venv}", file=sys.stderr)
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *packages], check=True)
    marker.write_text(wanted)
    return path
