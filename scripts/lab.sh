#!/usr/bin/env bash
# The lab on a fresh Debian 12 machine, as root: install what it needs, then build the
# docker-compose.yml topology in network namespaces (`podbgp lab up`; extra arguments go to it).
# `podbgp lab status` shows it again; `podbgp lab down` removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-test-host.sh >/dev/null
exec python3 -m podbgp lab up "$@"
