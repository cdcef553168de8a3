#!/usr/bin/env bash
# ThreadSanitizer: builds build/tsan (scripts/build.sh --tsan) and runs, with the
# TSAN_OPTIONS of scripts/tsan-env.sh (suppressions in tests/tsan.supp):
#   1. the unit tests (ctest -R unit);
#   2. the server with --threads 4 under the mixed load with its threaded kinds
#      (scripts/soak.sh --tsan: offload pool, jobs, WebSocket feeds), on the
#      simulated database with the default options;
#   3. the same on a throw-away PostgreSQL (tests/integration/pgserver.py), with
#      --cancel-on-disconnect on: item writes reach the event streams and WebSocket
#      feeds through LISTEN/NOTIFY, and clients that leave cancel their queries (the
#      pool's recovery of a cancelled pipeline). Without it the load's leavers queue
#      200 ms queries faster than the pool of 16 serves them.
# Any report, any unexpected answer, or a failed soak check fails it.
# usage: scripts/tsan.sh [--minutes M] [--connections N] [--no-pg]
#   --minutes M      each load phase (default 1)
#   --connections N  clients of each load phase (default 100; more and the TSan
#                    server's accept loop falls behind the load's reconnecting clients)
#   --no-pg          skip phase 3
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

minutes=1
connections=100
pg=1
while (($#)); do
  case "$1" in
    --minutes) minutes=$2; shift ;;
    --connections) connections=$2; shift ;;
    --no-pg) pg=0 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "tsan.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

"$root/scripts/setup.sh"
dir=$("$root/scripts/build.sh" --tsan)
source "$root/scripts/tsan-env.sh"
echo "tsan.sh: TSAN_OPTIONS=$TSAN_OPTIONS" >&2
start=$SECONDS

echo "tsan.sh: the unit tests…" >&2
(cd "$dir" && ctest --output-on-failure --timeout 300 -j2 -R '^unit:')

echo "tsan.sh: the server, 4 threads, $connections clients for $minutes min, simulated database…" >&2
"$root/scripts/soak.sh" --tsan --threads 4 --minutes "$minutes" --connections "$connections"

if ((pg)); then
  echo "tsan.sh: the same on PostgreSQL…" >&2
  python3 "$root/tests/integration/pgserver.py" run -- bash -c \
    '"$1" --tsan --threads 4 --minutes "$2" --connections "$3" --db "$COROUTE_TEST_PG" -- --cancel-on-disconnect on' \
    _ "$root/scripts/soak.sh" "$minutes" "$connections"
fi
echo "tsan.sh: passed in $((SECONDS - start)) s, build excluded" >&2
