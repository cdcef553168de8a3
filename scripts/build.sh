#!/usr/bin/env bash
# Configures and builds coroute with Ninja and ccache.
# usage: scripts/build.sh [--release|--debug] [--sanitize] [--build-dir DIR] [--target T]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

type=Release
sanitize=OFF
dir=""
targets=()
while (($#)); do
  case "$1" in
    --release) type=Release ;;
    --debug) type=Debug ;;
    --sanitize) sanitize=ON; type=Debug ;;
    --build-dir) dir=$2; shift ;;
    --target) targets+=(--target "$2"); shift ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z $dir ]]; then
  dir=$root/build/$(echo "$type" | tr '[:upper:]' '[:lower:]')
  [[ $sanitize == ON ]] && dir=$root/build/sanitize
fi

"$root/scripts/setup.sh"

# ccache and precompiled headers agree only with these sloppiness settings.
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}

if [[ ! -f $dir/build.ninja ]]; then
  cmake -S "$root" -B "$dir" -G Ninja \
    -DCMAKE_BUILD_TYPE="$type" \
    -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
    -DCOROUTE_SANITIZE="$sanitize" >/dev/null
fi
# Two cores: Beast translation units take ~1 GiB each, two at a time is fine here.
cmake --build "$dir" "${targets[@]}"
echo "$dir"
