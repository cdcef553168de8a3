#!/usr/bin/env bash
# Checks a running coroute server (or the balancer before its replicas) from outside:
# scripts/smoke.sh URL [--ca FILE] [--timeout SECONDS] [--skip NAME,...]; see scripts/smoke.py.
set -euo pipefail
exec python3 "$(dirname "$0")/smoke.py" "$@"
