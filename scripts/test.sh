#!/usr/bin/env bash
# Run django-atw's checks and test suite on a fresh machine with only Python 3.11+.
#
#   bash scripts/test.sh            # lint, types, migrations check, the suite on SQLite
#                                   # (and on PostgreSQL too when ATW_TEST_POSTGRES is set)
# Environment:
#   PYTHON              interpreter for the virtualenv (default: python3)
#   ATW_VENV            virtualenv folder (default: .venv)
#   ATW_INSTALL=wheel   build the wheel and test the installed package instead of the source tree
#   ATW_DJANGO          a pip requirement to pin Django, e.g. "django>=6.1,<6.2"
#   ATW_TEST_POSTGRES   postgresql://user@host:port/db for the PostgreSQL run
#   ATW_SKIP_LINT=1     skip ruff and mypy (they run once per CI, not per interpreter)
#   ATW_TEST_WORKERS    pytest-xdist processes (default: the CPU count, at most 4; 0 runs serially)
# The browser tests (tests/live_browser) need Debian's Chromium at /usr/bin/chromium; without it
# they are skipped with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${ATW_VENV:-.venv}

"$PYTHON" - <<'PY' || { echo "django-atw needs Python 3.11 or newer (PYTHON=$PYTHON)." >&2; exit 1; }
import sys
sys.exit(sys.version_info < (3, 11))
PY

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --quiet --disable-pip-version-check)
"${PIP[@]}" install --upgrade pip

if [ "${ATW_INSTALL:-editable}" = "wheel" ]; then
  rm -rf dist build
  "${PIP[@]}" install build
  "$VENV/bin/python" -m build --wheel --outdir dist . >/dev/null
  wheel=$(ls dist/django_atw-*.whl)
  "${PIP[@]}" uninstall --yes django-atw >/dev/null 2>&1 || true
  "${PIP[@]}" install --force-reinstall "${wheel}[test,dev,server,browser]"
else
  "${PIP[@]}" install -e ".[test,dev,server,browser]"
fi
if [ -n "${ATW_DJANGO:-}" ]; then
  "${PIP[@]}" install "$ATW_DJANGO"
fi

# The suite must test what is installed, never a stray copy of the source tree.
"$VENV/bin/python" -c "import django, django_atw; print('django', django.get_version(), '| django_atw from', django_atw.__file__)"

if [ -z "${ATW_SKIP_LINT:-}" ]; then
  "$VENV/bin/ruff" check .
  "$VENV/bin/ruff" format --check .
  "$VENV/bin/mypy"
fi
DJANGO_SETTINGS_MODULE=tests.settings "$VENV/bin/python" -m django makemigrations django_atw --check --dry-run

# Each xdist worker has its own test database and Redis database (tests/conftest.py), so the
# workers never see each other's rows or flushes.
WORKERS=${ATW_TEST_WORKERS:-$("$VENV/bin/python" -c "import os; print(min(4, os.cpu_count() or 1))")}

echo "== test suite on SQLite"
ATW_TEST_DATABASE=sqlite "$VENV/bin/pytest" -q -n "$WORKERS" "$@"
if [ -n "${ATW_TEST_POSTGRES:-}" ]; then
  echo "== test suite on PostgreSQL"
  ATW_TEST_DATABASE=postgres "$VENV/bin/pytest" -q -n "$WORKERS" "$@"
else
  echo "== PostgreSQL run skipped: set ATW_TEST_POSTGRES=postgresql://user@host:port/db to run it"
fi
