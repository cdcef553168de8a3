#!/usr/bin/env bash
# Builds and runs every test through ctest.
# usage: scripts/test.sh [--sanitize] [ctest arguments...]
#   --sanitize   build with AddressSanitizer + UndefinedBehaviorSanitizer and run the same tests
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

build_args=(--release)
ctest_args=()
for a in "$@"; do
  case "$a" in
    --sanitize) build_args=(--sanitize) ;;
    *) ctest_args+=("$a") ;;
  esac
done

"$root/scripts/setup.sh"
dir=$("$root/scripts/build.sh" "${build_args[@]}")

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$dir"
echo "test.sh: running every test in ${dir#"$root"/} (ctest -j2, a few minutes)…" >&2
ctest --output-on-failure --timeout 300 -j2 "${ctest_args[@]}"
