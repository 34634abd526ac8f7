#!/usr/bin/env bash
# Audit the pinned runtime requirements for known vulnerabilities (pip-audit, PyPI's advisory data).
#
# --strict: a dependency that cannot be audited (not found, service unreachable) fails the run, so
# "No known vulnerabilities found" can never mean "nothing was checked".
# A finding is handled by upgrading the pin in requirements.txt, or, when no fixed release exists or
# the vulnerable code is not reachable from this app, by a line in scripts/audit-ignore.txt:
#   <VULN-ID>  <YYYY-MM-DD, review by>  <who>: <why it does not apply>
# Expired entries (review date passed) fail the run, so an ignore is always re-decided.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate

ignores=()
today=$(date -u +%F)
if [ -f scripts/audit-ignore.txt ]; then
  while read -r id review rest; do
    case "$id" in ''|'#'*) continue ;; esac
    if [[ "$review" < "$today" ]]; then
      echo "audit: the ignore of $id was due for review on $review: decide again ($rest)" >&2
      exit 1
    fi
    ignores+=(--ignore-vuln "$id")
  done < scripts/audit-ignore.txt
fi

status=0
output=$(pip-audit --requirement requirements.txt --no-deps --disable-pip --strict --progress-spinner off \
  ${ignores[@]+"${ignores[@]}"} "$@" 2>&1) || status=$?
echo "$output"
if [ "$status" -ne 0 ] && ! grep -qiE "found [0-9]+ known vulnerabilit" <<<"$output" \
    && grep -qiE "could not be audited|Failed to resolve|NameResolutionError|ConnectionError" <<<"$output"; then
  # Nothing was checked: say so, distinctly from a finding (exit 3, which scripts/test.sh reports).
  echo "audit: NOT PERFORMED — no vulnerability service is reachable from this machine" >&2
  exit 3
fi
exit "$status"
