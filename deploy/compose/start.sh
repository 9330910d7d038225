#!/bin/sh
# Entry point of the compose nodes and reflectors: route the other subnet through the router
# container (Docker's own gateway does not forward between networks), then run podbgp, as the
# unprivileged user RUN_AS_UID when set (the reflectors; port 179 is opened to it by the
# net.ipv4.ip_unprivileged_port_start sysctl of its container).
set -eu
if [ -n "${OTHER_SUBNET:-}" ]; then
  ip route replace "$OTHER_SUBNET" via "$ROUTER"
fi
if [ -n "${RUN_AS_UID:-}" ]; then
  exec setpriv --reuid="$RUN_AS_UID" --regid="$RUN_AS_UID" --clear-groups \
    --inh-caps=-all --bounding-set=-all --no-new-privs podbgp "$@"
fi
exec podbgp "$@"
