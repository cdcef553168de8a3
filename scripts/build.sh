#!/usr/bin/env bash
# Configures and builds coroute with Ninja and ccache.
# usage: scripts/build.sh [--release|--debug] [--sanitize] [--build-dir DIR] [--target T]
#
# The build's progress and its errors go to stderr; stdout gets one line, the build
# directory, so scripts can take it with $(scripts/build.sh ...).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

type=Release
sanitize=OFF
dir=""
targets=()
names=()
while (($#)); do
  case "$1" in
    --release) type=Release ;;
    --debug) type=Debug ;;
    --sanitize) sanitize=ON; type=Debug ;;
    --build-dir) dir=$2; shift ;;
    --target) targets+=(--target "$2"); names+=("$2"); shift ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z $dir ]]; then
  dir=$root/build/$(echo "$type" | tr '[:upper:]' '[:lower:]')
  [[ $sanitize == ON ]] && dir=$root/build/sanitize
fi

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
if [[ ! -f $dir/build.ninja ]]; then
  echo "build.sh: configuring ${dir#"$root"/} ($type, sanitize $sanitize)" >&2
  cmake -S "$root" -B "$dir" -G Ninja \
    -DCMAKE_BUILD_TYPE="$type" \
    -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
    -DCOROUTE_SANITIZE="$sanitize" >&2
  echo "build.sh: building $what in ${dir#"$root"/} (the first build takes a few minutes)…" >&2
else
  echo "build.sh: building $what in ${dir#"$root"/}…" >&2
fi
# Two cores: Beast translation units take ~1 GiB each, two at a time is fine here.
cmake --build "$dir" "${targets[@]}" >&2
echo "$dir"
