#!/usr/bin/env bash
# Runs the Helm chart tests: a virtualenv under target/ with the pinned
# requirements, then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=target/charts-venv
export PYTHONDONTWRITEBYTECODE=1
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || { echo "tests/charts: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
fi
stamp="$venv/.requirements"
if ! cmp -s tests/charts/requirements.txt "$stamp"; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/charts/requirements.txt
  cp tests/charts/requirements.txt "$stamp"
fi
exec "$venv/bin/python" -m pytest tests/charts -q -ra -p no:cacheprovider "$@"
