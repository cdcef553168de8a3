#!/usr/bin/env bash
# Builds the libFuzzer targets (clang 14 with AddressSanitizer and
# UndefinedBehaviorSanitizer, in build/fuzz) and runs them, one after another.
# usage: scripts/fuzz.sh [--seconds N] [TARGET...]
#   TARGET      request_reader static_target item_json client_response websocket (default: all)
#   --seconds N how long each target runs (default 60)
# A target starts from its seeds (tests/fuzz/corpus/TARGET) and from what earlier runs
# found interesting (build/fuzz/corpus/TARGET, where this run adds its own). An input
# that breaks an invariant is written to build/fuzz/crashes/ and the script exits 1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

seconds=60
targets=()
all=(request_reader static_target item_json client_response websocket)
while (($#)); do
  case "$1" in
    --seconds) seconds=$2; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *)
      if [[ " ${all[*]} " != *" $1 "* ]]; then
        echo "fuzz.sh: no target $1 (targets: ${all[*]})" >&2
        exit 2
      fi
      targets+=("$1") ;;
  esac
  shift
done
((${#targets[@]})) || targets=("${all[@]}")

dir=$("$root/scripts/build.sh" --fuzz)
mkdir -p "$dir/crashes"
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$dir/corpus/$t"
  log=$dir/fuzz-$t.log
  echo "fuzz.sh: $t for ${seconds} s (log: ${log#"$root"/})"
  if "$dir/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$dir/crashes/$t-" "$dir/corpus/$t" "$root/tests/fuzz/corpus/$t" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
    echo "fuzz.sh:   $t: ${runs:-?} inputs, ${cov:-cov: ?} edges, corpus $(ls "$dir/corpus/$t" | wc -l) files"
  else
    echo "fuzz.sh:   $t FAILED; its last lines:" >&2
    tail -n 40 "$log" >&2
    failed+=("$t")
  fi
done
if ((${#failed[@]})); then
  echo "fuzz.sh: failed: ${failed[*]} (inputs in ${dir#"$root"/}/crashes/)" >&2
  exit 1
fi
