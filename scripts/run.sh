#!/usr/bin/env bash
# Builds a Release coroute-server and runs it; arguments go to the server (try --help).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$("$root/scripts/build.sh" --release --target coroute-server)
exec "$dir/src/coroute-server" --www "$root/www" "$@"
