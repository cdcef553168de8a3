#!/usr/bin/env bash
# Configures and builds coroute with Ninja and ccache.
# usage: scripts/build.sh [--release|--debug] [--sanitize|--tsan|--fuzz] [--build-dir DIR] [--target T]
#   --tsan   ThreadSanitizer, Debug at -O1 (build/tsan); run it with TSAN_OPTIONS from
#            scripts/tsan-env.sh
#   --fuzz   the libFuzzer targets of tests/fuzz with clang 14, ASan and UBSan (build/fuzz)
#
# The build's progress and its errors go to stderr; stdout gets one line, the build
# directory, so scripts can take it with $(scripts/build.sh ...).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

type=Release
sanitize=OFF
fuzz=OFF
tsan=OFF
dir=""
targets=()
names=()
while (($#)); do
  case "$1" in
    --release) type=Release ;;
    --debug) type=Debug ;;
    --sanitize) sanitize=ON; type=Debug ;;
    --tsan) tsan=ON; type=Debug ;;
    --fuzz) fuzz=ON; type=RelWithDebInfo ;;
    --build-dir) dir=$2; shift ;;
    --target) targets+=(--target "$2"); names+=("$2"); shift ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z $dir ]]; then
  dir=$root/build/$(echo "$type" | tr '[:upper:]' '[:lower:]')
  [[ $sanitize == ON ]] && dir=$root/build/sanitize
  [[ $tsan == ON ]] && dir=$root/build/tsan
  [[ $fuzz == ON ]] && dir=$root/build/fuzz
fi
extra=()
[[ $fuzz == ON ]] && extra=(-DCMAKE_CXX_COMPILER=clang++-14 -DCOROUTE_FUZZ=ON -DCOROUTE_BUILD_TESTS=OFF)

"$root/scripts/setup.sh" >&2

# ccache and precompiled headers agree only with these sloppiness settings.
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
# Clones share the cache: paths under the clone are hashed relative to the build
# directory, and the working directory is left out of the hash (it only names the
# directory in debug information, which then may be another clone's).
export CCACHE_BASEDIR=$root
export CCACHE_NOHASHDIR=true

what=${names[*]:-coroute and its tests}
[[ $fuzz == ON ]] && what=${names[*]:-the fuzz targets}
if [[ ! -f $dir/build.ninja ]]; then
  echo "build.sh: configuring ${dir#"$root"/} ($type, sanitize $sanitize, tsan $tsan, fuzz $fuzz)" >&2
  cmake -S "$root" -B "$dir" -G Ninja \
    -DCMAKE_BUILD_TYPE="$type" \
    -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
    -DCOROUTE_SANITIZE="$sanitize" -DCOROUTE_TSAN="$tsan" "${extra[@]}" >&2
  echo "build.sh: building $what in ${dir#"$root"/} (the first build takes a few minutes)…" >&2
else
  echo "build.sh: building $what in ${dir#"$root"/}…" >&2
fi
# Two cores: Beast translation units take ~1 GiB each, two at a time is fine here.
cmake --build "$dir" "${targets[@]}" >&2
echo "$dir"
