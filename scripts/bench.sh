#!/usr/bin/env bash
# Benchmarks coroute (issue 6): builds Release, installs wrk, nginx and gnuplot when
# missing, runs every scenario with wrk on loopback, one at a time and bounded in time,
# with nginx as the reference in the same run. Prints the Markdown table and writes
# bench/results/<stamp>.{json,md,png} (and bench/latest.* after a full run).
#
# usage: scripts/bench.sh [--quick] [--duration S] [--warmup S] [--threads N]
#                         [--rounds N] [--only a,b,...] [--no-build] [--no-pin]
#   --quick      smoke run: 2 s per scenario, 1 s warm-up, one reference round
#   --only       healthz,static,static-8m,db-c100,db-c1000,db-c10000,parallel,external,ws-echo,
#                idle-10k,ws-idle-10k,reference,
#                pg-db-c1000,pg-items,cluster-items (PostgreSQL: one process, then nginx + 2 replicas)
#
# A benchmark needs the machine to itself: where others build and test on it, run it
# under their lock, e.g. `flock /tmp/coroute-build.lock scripts/bench.sh`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

build=1
args=()
for a in "$@"; do
  case "$a" in
    --no-build) build=0 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$a") ;;
  esac
done

"$root/scripts/setup.sh" --bench
if ((build)); then
  "$root/scripts/build.sh" --release --target coroute-server --target coroute-ws-load >/dev/null
fi

# 10,000 connections need as many descriptors, in wrk and in the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < 10100)); then
  echo "bench: the open-file limit is $(ulimit -n); db-c10000 and idle-10k need about 10,100" >&2
fi

exec python3 "$root/scripts/bench/bench.py" \
  --server "$root/build/release/src/coroute-server" "${args[@]}"
