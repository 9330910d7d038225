#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine, as root: install what the tests need
# (BIRD 2, GoBGP, etcd, iproute2, ... and the project), lint, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-test-host.sh
python3 -m ruff check .
python3 -m ruff format --check .
python3 -m mypy  # --strict on every package (files in pyproject.toml)
# Everything is installed now: a skipped test means a broken set-up (see tests/conftest.py).
PODBGP_NO_SKIP=1 python3 -m pytest -q -p no:cacheprovider -rs "$@"
