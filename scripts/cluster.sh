#!/usr/bin/env bash
# The cluster on one machine, in one command: PostgreSQL and Redis (started if down), the database
# created and migrated, two Daphne processes on two ports and two generation workers.
# Ctrl+C stops every process this script started. See docs/deployment.md.
#
#   PORT_A=8001 PORT_B=8002 WORKERS=2 DB_NAME=streamchat scripts/cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${SKIP_BOOTSTRAP:-}" = 1 ] || bash scripts/bootstrap.sh
bash scripts/services.sh
. .venv/bin/activate

db_name="${DB_NAME:-streamchat}"
port_a="${PORT_A:-8001}"
port_b="${PORT_B:-8002}"
workers="${WORKERS:-2}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/${db_name}}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export CHAT_REDIS_PREFIX="${CHAT_REDIS_PREFIX:-chat}"
export PYTHONUNBUFFERED=1

if ! psql "${DATABASE_URL%/*}/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = '${db_name}'" | grep -q 1; then
  echo "cluster: creating database ${db_name}"
  createdb -h 127.0.0.1 -U postgres "${db_name}"
fi
python manage.py migrate --noinput
python manage.py demo_account

logs="${LOG_DIR:-$(mktemp -d /tmp/streamchat-cluster.XXXXXX)}"
pids=()
stop_all() {
  trap - INT TERM EXIT
  echo
  echo "cluster: stopping ${pids[*]:-nothing} (workers get their grace period)"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  exit 0
}
trap stop_all INT TERM EXIT

for i in $(seq 1 "$workers"); do
  python manage.py runworker --layer jobs "${CHAT_WORKER_CHANNEL:-chat-generate}" >"${logs}/worker-${i}.log" 2>&1 &
  pids+=($!)
done
for port in "$port_a" "$port_b"; do
  daphne -b "${BIND:-127.0.0.1}" -p "$port" config.asgi:application >"${logs}/daphne-${port}.log" 2>&1 &
  pids+=($!)
done

for port in "$port_a" "$port_b"; do
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:${port}/readyz" >/dev/null 2>&1 && break
    sleep 0.3
  done
done
echo "cluster: PostgreSQL ${DATABASE_URL}, Redis ${REDIS_URL} (prefix ${CHAT_REDIS_PREFIX})"
echo "cluster: Daphne A http://127.0.0.1:${port_a}/   Daphne B http://127.0.0.1:${port_b}/"
echo "cluster: readiness http://127.0.0.1:${port_a}/readyz   ${workers} workers; logs in ${logs}"
echo "cluster: Ctrl+C stops everything"
wait -n "${pids[@]}" || true
echo "cluster: a process exited; see ${logs}"
