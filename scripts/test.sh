#!/bin/bash
# The test command: installs what the tests need (system packages, the peers, the venv) and runs
# the whole suite. Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
.venv/bin/ruff check berth tests bench
exec .venv/bin/python -m pytest "${@:-tests}"
