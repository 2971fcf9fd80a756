#!/usr/bin/env bash
# One-command demo of django-atw: set up the example project, then serve it with Daphne, the task
# worker running inside the server and progress reaching the browser over a WebSocket.
#
#   scripts/demo.sh                  # http://127.0.0.1:8000/, log in as demo / demo
#   PORT=8080 scripts/demo.sh        # another port
#   ATW_REDIS_URL=redis://127.0.0.1:6379/0 scripts/demo.sh   # events over Redis (channels_redis)
#
# Environment: PORT (default 8000), PYTHON (interpreter for the virtualenv, default python3),
# ATW_EXAMPLE_DB (SQLite file, default example_project/db.sqlite3),
# ATW_REDIS_URL (use the Redis channel layer, so workers in other processes reach the browsers),
# ATW_DEMO_SKIP_INSTALL=1 (do not run pip install).
# Ctrl-C stops the server; tasks still running get a grace period, then go back to pending.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PORT="${PORT:-8000}"
PYTHON="${PYTHON:-python3}"
VENV=".venv"
PY="$VENV/bin/python"

die() {
    echo "demo.sh: $*" >&2
    exit 1
}

check_python() {
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

if [[ ! -x "$PY" ]]; then
    command -v "$PYTHON" >/dev/null 2>&1 \
        || die "$PYTHON not found. Install Python 3.11 or newer, or set PYTHON=/path/to/python3.11."
    if ! check_python "$PYTHON"; then
        version="$("$PYTHON" -c 'import platform; print(platform.python_version())' 2>/dev/null || true)"
        die "$PYTHON is Python ${version:-of an unknown version}; django-atw needs 3.11 or newer." \
            "Set PYTHON=/path/to/python3.11 (or newer)."
    fi
    echo "Creating the virtualenv $VENV with $PYTHON..."
    "$PYTHON" -m venv "$VENV" \
        || die "could not create $VENV (on Debian or Ubuntu: apt install python3-venv)."
fi
check_python "$PY" \
    || die "$VENV uses Python older than 3.11. Remove $VENV and run this script again (PYTHON=python3.11 or newer)."

if [[ "${ATW_DEMO_SKIP_INSTALL:-}" != "1" ]]; then
    extras="server"
    [[ -n "${ATW_REDIS_URL:-}" ]] && extras="server,redis"
    echo "Installing django-atw with the extras $extras into $VENV..."
    "$PY" -m pip install --quiet --disable-pip-version-check -e ".[$extras]"
fi

export DJANGO_SETTINGS_MODULE=example_project.settings

"$PY" manage.py migrate --noinput
"$PY" manage.py shell --verbosity 0 --command "
from django.contrib.auth import get_user_model

User = get_user_model()
if not User.objects.filter(username='demo').exists():
    User.objects.create_superuser('demo', 'demo@example.com', 'demo')
    print('Created the superuser demo (password: demo).')
"

server_pid=""

cleanup() {
    local status=$?
    trap - EXIT TERM
    # A second Ctrl-C while the server stops gracefully makes it exit at once.
    trap '[[ -n "$server_pid" ]] && kill -INT "$server_pid" 2>/dev/null' INT
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        echo "Stopping the server: running tasks get a grace period, then go back to pending" \
            "(Ctrl-C again to stop at once)..."
        kill -TERM "$server_pid" 2>/dev/null || true
        while kill -0 "$server_pid" 2>/dev/null; do
            wait "$server_pid" 2>/dev/null || true
        done
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

layer="in memory (this process only)"
[[ -n "${ATW_REDIS_URL:-}" ]] && layer="Redis at $ATW_REDIS_URL"
echo
echo "  django-atw demo: http://127.0.0.1:${PORT}/"
echo "  Log in as demo, password demo. Admin: http://127.0.0.1:${PORT}/admin/"
echo "  The worker runs inside Daphne; channel layer: $layer."
echo "  Press Ctrl-C to stop."
echo

# Daphne gets a session of its own, so that Ctrl-C in the terminal does not signal it: cleanup
# sends it exactly one SIGTERM, which stops the worker inside gracefully. setsid(1) is not on
# macOS, hence Python's os.setsid(). The script waits on it in the background, so that a SIGTERM
# sent to the script (not only Ctrl-C) stops the server too.
"$PY" -c 'import os, sys; os.setsid(); os.execv(sys.argv[1], sys.argv[1:])' \
    "$VENV/bin/daphne" -b 127.0.0.1 -p "$PORT" example_project.asgi:application &
server_pid=$!
wait "$server_pid"
