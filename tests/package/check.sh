#!/usr/bin/env bash
# Installs coroute from BUILD_DIR into a temporary prefix, builds tests/package against
# it with find_package(coroute), and runs the result.
set -euo pipefail
build_dir=$1
sanitize=${2:-OFF}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Paths under the temporary directory are hashed relative to it, so ccache hits across runs.
export CCACHE_BASEDIR=$work
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
flags=()
# A sanitized library needs a sanitized program around it.
[[ $sanitize == ON ]] && flags=(-DCMAKE_CXX_FLAGS="-fsanitize=address,undefined" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined")
cmake -S "$here" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${flags[@]}" \
  -DCMAKE_PREFIX_PATH="$work/prefix" ${CMAKE_CXX_COMPILER_LAUNCHER:+-DCMAKE_CXX_COMPILER_LAUNCHER=$CMAKE_CXX_COMPILER_LAUNCHER} >/dev/null
cmake --build "$work/build" >/dev/null
"$work/build/embed"
