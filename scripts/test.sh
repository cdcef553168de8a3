#!/usr/bin/env bash
# Builds and runs every test through ctest; then, when no ctest arguments narrow it,
# a one-minute soak under a mixed load (scripts/soak.sh; with --sanitize, half a
# minute of it on the sanitized build) and, in the plain run, every fuzz target for a
# few seconds (scripts/fuzz.sh runs them longer).
# usage: scripts/test.sh [--sanitize|--tsan] [ctest arguments...]
#   --sanitize   build with AddressSanitizer + UndefinedBehaviorSanitizer and run the same tests
#   --tsan       scripts/tsan.sh instead: ThreadSanitizer on the unit tests and on the server
#                under load (about 3 minutes after its build; takes no ctest arguments)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

build_args=(--release)
ctest_args=()
fuzz=1
tsan=0
for a in "$@"; do
  case "$a" in
    --sanitize) build_args=(--sanitize); fuzz=0 ;;
    --tsan) tsan=1 ;;
    *) ctest_args+=("$a") ;;
  esac
done
if ((tsan)); then
  if ((${#ctest_args[@]})); then
    echo "test.sh: --tsan takes no ctest arguments (scripts/tsan.sh --help)" >&2
    exit 2
  fi
  exec "$root/scripts/tsan.sh"
fi

"$root/scripts/setup.sh"
dir=$("$root/scripts/build.sh" "${build_args[@]}")

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$dir"
echo "test.sh: running every test in ${dir#"$root"/} (ctest -j2, a few minutes)…" >&2
ctest --output-on-failure --timeout 300 -j2 "${ctest_args[@]}"
if ((${#ctest_args[@]} == 0)); then
  if ((fuzz)); then
    echo "test.sh: a one-minute soak, 1000 clients (scripts/soak.sh)…" >&2
    "$root/scripts/soak.sh" --minutes 1 --connections 1000
  else
    echo "test.sh: half a minute of load on the sanitized server, 300 clients (scripts/soak.sh)…" >&2
    "$root/scripts/soak.sh" --sanitize --minutes 0.5 --connections 300
  fi
fi
if ((fuzz)) && ((${#ctest_args[@]} == 0)); then
  echo "test.sh: every fuzz target for 5 s (scripts/fuzz.sh; the first build of build/fuzz takes a few minutes)…" >&2
  "$root/scripts/fuzz.sh" --seconds 5
fi
