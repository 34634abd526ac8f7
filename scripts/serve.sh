#!/usr/bin/env bash
# Serve the app on the embedded default: SQLite, in-memory channel layer, the local model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
. .venv/bin/activate
python manage.py migrate --noinput
python manage.py demo_account
port="${PORT:-8000}"
echo "Serving on http://127.0.0.1:${port}/ (Ctrl+C stops)"
exec daphne -b "${BIND:-127.0.0.1}" -p "$port" config.asgi:application
