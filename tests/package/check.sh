#!/usr/bin/env bash
# Installs coroute from BUILD_DIR into a temporary prefix, builds the programs of SRC_DIR
# (default: tests/package) against it with find_package(coroute), and runs them (run.py).
# usage: check.sh BUILD_DIR [SANITIZE] [SRC_DIR]
set -euo pipefail
build_dir=$1
sanitize=${2:-OFF}
here=$(cd "$(dirname "$0")" && pwd)
src=${3:-$here}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Paths under the temporary directory are hashed relative to it, so ccache hits across
# runs, and the README's copy of these programs hits the tree's.
export CCACHE_BASEDIR=$work
cp -r "$src" "$work/src"
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
flags=()
# A sanitized library needs a sanitized program around it.
[[ $sanitize == ON ]] && flags=(-DCMAKE_CXX_FLAGS="-fsanitize=address,undefined" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined")
cmake -S "$work/src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${flags[@]}" \
  -DCMAKE_PREFIX_PATH="$work/prefix" ${CMAKE_CXX_COMPILER_LAUNCHER:+-DCMAKE_CXX_COMPILER_LAUNCHER=$CMAKE_CXX_COMPILER_LAUNCHER} >/dev/null
cmake --build "$work/build" >/dev/null
# The project runs its Python tests with Debian's interpreter.
python=/usr/bin/python3
[[ -x $python ]] || python=python3
"$python" "$here/run.py" "$work/build" "$work/prefix/bin/coroute-server"
