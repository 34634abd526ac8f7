#!/usr/bin/env bash
# Install everything and run the whole suite: ruff, then pytest twice — embedded (SQLite, in-memory
# layer, in-process worker) and cluster (PostgreSQL, Redis, `runworker` processes started by tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
if [ ! -x /usr/bin/chromium ]; then
  echo "test: installing Debian's chromium for the browser tests"
  apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
fi
bash scripts/services.sh
. .venv/bin/activate

ruff format --check .
ruff check .

echo "== dependency audit: pip-audit over requirements.txt (scripts/audit.sh)"
audit=0
bash scripts/audit.sh || audit=$?
if [ "$audit" -eq 3 ]; then
  echo "!! the dependency audit could not run here (no vulnerability service reachable): NOT a pass" >&2
elif [ "$audit" -ne 0 ]; then
  exit "$audit"  # a known vulnerability: upgrade the pin, or see scripts/audit-ignore.txt
fi

echo "== embedded mode: SQLite, in-memory channel layer, in-process worker"
env -u DATABASE_URL -u REDIS_URL python -m pytest -m "not cluster_only" "$@"

echo "== cluster mode: PostgreSQL, Redis, runworker processes"
DATABASE_URL="postgres://postgres@127.0.0.1:5432/streamchat" \
REDIS_URL="redis://127.0.0.1:6379/0" \
CHAT_REDIS_PREFIX="test-$$" \
  python -m pytest -m "cluster or cluster_only" "$@"
