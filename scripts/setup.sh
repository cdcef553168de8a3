#!/usr/bin/env bash
# Installs what building, running and testing coroute needs: Debian 12's packages, and
# the one npm package of the browser tests.
# Does nothing when everything is there; safe to run again.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libssl-dev openssl catch2
  clang-14 libclang-rt-14-dev   # scripts/fuzz.sh: libFuzzer with ASan and UBSan
  curl python3 python3-websockets   # python3-websockets: the WebSocket tests (/usr/bin/python3)
  postgresql libpq-dev   # the PostgreSQL backend; its tests start a server of their own (no system service)
  nginx-light   # scripts/cluster.sh's balancer (run with a configuration of its own), and the benchmark's reference
  chromium nodejs   # the browser tests: Debian's Chromium, driven from Node
)
# NodeSource's nodejs brings npm with it; Debian's nodejs needs the npm package.
command -v npm >/dev/null 2>&1 || packages+=(npm)
if [[ " $* " == *" --bench "* ]]; then
  packages+=(wrk gnuplot-nox iproute2)   # iproute2: ss, to count upstream connections
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The browser tests' one npm package, playwright-core, at the version package-lock.json
# pins. It downloads no browser: the tests drive Debian's /usr/bin/chromium.
browser_tests=$root/tests/browser
playwright_ready() {
  local want have
  want=$(node -p "require('$browser_tests/package.json').dependencies['playwright-core']")
  have=$(node -p "require('$browser_tests/node_modules/playwright-core/package.json').version" 2>/dev/null) || return 1
  [[ $want == "$have" ]]
}
if ! playwright_ready; then
  # One install at a time: build.sh, run.sh and test.sh may all be calling us.
  (
    flock 9
    if ! playwright_ready; then
      echo "setup: installing playwright-core for tests/browser"
      cd "$browser_tests" && npm ci --no-audit --no-fund --loglevel=error >/dev/null
    fi
  ) 9>"${TMPDIR:-/tmp}/coroute-setup-npm.lock"
fi
