#!/usr/bin/env bash
# One-command demo of django-atw: set up the example project, then run a worker and the web server.
#
#   scripts/demo.sh                  # http://127.0.0.1:8000/, log in as demo / demo
#   PORT=8080 scripts/demo.sh        # another port
#
# Environment: PORT (default 8000), PYTHON (interpreter for the virtualenv, default python3),
# ATW_EXAMPLE_DB (SQLite file, default example_project/db.sqlite3),
# ATW_DEMO_SKIP_INSTALL=1 (do not run pip install).
# Ctrl-C stops the web server and the worker; tasks still running go back to pending in the database.
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
    echo "Installing django-atw with the server extra (channels, daphne) into $VENV..."
    "$PY" -m pip install --quiet --disable-pip-version-check -e ".[server]"
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

worker_pid=""
server_pid=""

stop_and_wait() {
    kill -TERM "$1" 2>/dev/null || true
    while kill -0 "$1" 2>/dev/null; do
        wait "$1" 2>/dev/null || true
    done
}

cleanup() {
    local status=$?
    trap - EXIT TERM
    # A second Ctrl-C while the worker stops gracefully makes it exit at once.
    trap '[[ -n "$worker_pid" ]] && kill -TERM "$worker_pid" 2>/dev/null' INT
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        stop_and_wait "$server_pid"
    fi
    if [[ -n "$worker_pid" ]] && kill -0 "$worker_pid" 2>/dev/null; then
        echo "Stopping the worker: running tasks get a grace period, then go back to pending" \
            "(Ctrl-C again to stop at once)..."
        stop_and_wait "$worker_pid"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The worker gets a session of its own, so that Ctrl-C in the terminal does not signal it: cleanup
# sends it exactly one SIGTERM, which atw_worker answers with a graceful stop (a second signal makes
# it exit at once). setsid(1) is not on macOS, hence Python's os.setsid().
"$PY" -c 'import os, sys; os.setsid(); os.execv(sys.executable, [sys.executable, *sys.argv[1:]])' \
    manage.py atw_worker --grace 5 &
worker_pid=$!
sleep 2
kill -0 "$worker_pid" 2>/dev/null || die "the worker (manage.py atw_worker) exited at start-up; see above."

echo
echo "  django-atw demo: http://127.0.0.1:${PORT}/"
echo "  Log in as demo, password demo. Admin: http://127.0.0.1:${PORT}/admin/"
echo "  Press Ctrl-C to stop."
echo

# Daphne runs in the background with the script waiting on it, so that a SIGTERM sent to the script
# (not only Ctrl-C) stops the server and the worker too.
"$VENV/bin/daphne" -b 127.0.0.1 -p "$PORT" example_project.asgi:application &
server_pid=$!
wait "$server_pid"
