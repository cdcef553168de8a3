#!/usr/bin/env bash
# A soak: the server under a mixed load (health, static files, database, item writes,
# the external call, event streams, WebSockets, and clients that cut requests, leave
# while they wait, stop reading or trickle their header) with checks that memory and
# descriptors stay flat and /healthz stays fast (scripts/load/soak.py says which).
# usage: scripts/soak.sh [--minutes M] [--connections N] [--sanitize|--tsan] [--threads N] [--db URL] [-- SERVER ARGS]
#   --minutes M      how long the load runs (default 10; 0.5 is half a minute)
#   --connections N  clients at once (default 2000)
#   --sanitize       the AddressSanitizer + UndefinedBehaviorSanitizer build; any report fails
#   --tsan           the ThreadSanitizer build (TSAN_OPTIONS from scripts/tsan-env.sh), with the
#                    load's threaded kinds too (offload, jobs, WebSocket feeds); any report fails
#   --threads N      server threads (default 2)
#   --db URL         the server's --db (default: the simulated database)
#   -- ARGS          more options for the server, e.g. -- --cancel-on-disconnect on
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

minutes=10
connections=2000
build=(--release)
sanitized=()
threads=2
db=()
server_args=()
while (($#)); do
  case "$1" in
    --minutes) minutes=$2; shift ;;
    --connections) connections=$2; shift ;;
    --sanitize) build=(--sanitize); sanitized=(--sanitized) ;;
    --tsan) build=(--tsan); sanitized=(--sanitized --threaded); source "$root/scripts/tsan-env.sh" ;;
    --threads) threads=$2; shift ;;
    --db) db=(--db "$2"); shift ;;
    --) shift; server_args=("$@"); break ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

dir=$("$root/scripts/build.sh" "${build[@]}" --target coroute-server)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec python3 "$root/scripts/load/soak.py" --server "$dir/src/coroute-server" --www "$root/www" \
  --minutes "$minutes" --connections "$connections" --threads "$threads" "${db[@]}" "${sanitized[@]}" -- "${server_args[@]}"
