#!/usr/bin/env bash
# Runs on this machine what a scaled-out deployment looks like: a throw-away PostgreSQL
# (its data and socket under build/cluster/), N coroute-server replicas on free
# loopback ports sharing it, and Debian's nginx in front of them.
#
# usage: scripts/cluster.sh [--replicas N] [--port P] [--db postgresql|sim] [--dir D] [-- SERVER ARGS...]
#   --replicas N   how many replicas (2)
#   --port P       the balancer's port (8080; 0 takes a free one)
#   --db sim       each replica its own simulated database instead (nothing is shared)
#   --dir D        where the configuration, logs and database go (build/cluster/; removed at the end,
#                  unless --keep)
#   -- ARGS        passed to every replica (e.g. -- --threads 1 --db-latency-ms 10)
# scripts/cluster.py --help lists the rest (--server BIN skips the build).
#
# It prints `cluster listening on http://127.0.0.1:P` once the balancer and every
# replica answer, then each replica's pid, URL and log. Ctrl-C or SIGTERM stops it all:
# nginx and the replicas gracefully, then PostgreSQL, then removes build/cluster/.
#
# nginx (build/cluster/nginx.conf; the README's "Running on more than one core or
# machine" explains each choice):
#   * keep-alive connections to the replicas, closed by nginx after 2 s idle, which is
#     less than the replicas' --drain-delay-ms (3000): when a replica stops accepting,
#     nginx holds no idle connection to it that a request could be sent on;
#   * proxy_next_upstream error timeout non_idempotent: a failed connection is retried on
#     another replica, POST included. A replica answers every request it has read, even
#     at SIGTERM, so the retried request had not run. It could run twice only if a
#     replica died while processing it (a crash, kill -9, past --shutdown-timeout-ms);
#   * passive health only (max_fails=1 fail_timeout=2s): open-source nginx has no active
#     health checks, so it never reads /readyz. A replica's /readyz is for balancers
#     that do (HAProxy, Kubernetes, nginx Plus) and for scripts/smoke.sh; the drain's
#     delay still matters here, for the keep-alive connections above;
#   * /api/events unbuffered with a long read timeout; /ws with the Upgrade handshake.
#
# Rolling restart, by hand: SIGTERM one replica's pid (the lines above print them).
# It drains (3 s, still answering) and exits; the cluster starts it again on the same
# port and prints `replica K: started again, pid …`. Then do the next one. Under
# load no request fails. `kill -HUP <cluster pid>` does the same for every replica in
# turn and prints `rolling restart done`. A replica that exits by itself is started
# again too (more and more slowly if it keeps failing at once).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

server=()
for a in "$@"; do
  [[ $a == -- ]] && break
  [[ $a == --server || $a == --server=* || $a == -h || $a == --help ]] && server=(none)
done
if ((${#server[@]} == 0)); then
  dir=$("$root/scripts/build.sh" --release --target coroute-server)
  server=(--server "$dir/src/coroute-server")
else
  server=()
fi
exec python3 "$root/scripts/cluster.py" "${server[@]}" "$@"
