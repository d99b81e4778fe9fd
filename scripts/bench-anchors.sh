#!/usr/bin/env bash
# bench-anchors.sh — ringswarm beside the reference swarms of ../shared/bench-anchors, in one
# run: each round runs the anchors' scenarios once (nginx fan-out, rqbit, libtorrent, aria2 by
# default) and then the five-peer ring once (scripts/bench.sh --rounds 1 --only ring), all on
# the same file size, so slow and fast periods of this shared machine hit them alike.
#
# Usage: scripts/bench-anchors.sh [--rounds N] [--size MIB] [--scenarios "LIST"]
#
#   --rounds N         rounds (default 3)
#   --size MIB         file size in MiB (default 256)
#   --scenarios LIST   anchor scenarios, space-separated (default "http-nginx rqbit libtorrent aria2";
#                      see ../shared/bench-anchors/run-all.sh)
#   -h, --help         show this help
#
# Needs the anchors' tools: ../shared/bench-anchors/00-install.sh apt rqbit (rqbit builds for
# about 15 minutes). The anchors append to $BENCH_DIR/results.csv (default
# /tmp/swarmbench/results-ringswarm-anchors.csv here) and are summarized by their
# summarize.py; the ring's runs are printed by bench.sh and collected at the end.
# Exit status: 0 done; 1 a run failed; 2 bad usage or missing tools.

set -euo pipefail

rounds=3
size=256
scenarios="http-nginx rqbit libtorrent aria2"

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; }
die_usage() {
    echo "bench-anchors.sh: $*" >&2
    echo "Try 'scripts/bench-anchors.sh --help'." >&2
    exit 2
}

while [[ $# -gt 0 ]]; do
    case $1 in
    -h | --help)
        usage
        exit 0
        ;;
    --rounds | --size | --scenarios)
        [[ $# -ge 2 && -n $2 ]] || die_usage "$1 needs a value"
        case $1 in
        --rounds) rounds=$2 ;;
        --size) size=$2 ;;
        --scenarios) scenarios=$2 ;;
        esac
        shift 2
        ;;
    *) die_usage "unknown argument $1" ;;
    esac
done
[[ $rounds =~ ^[1-9][0-9]?$ ]] || die_usage "--rounds must be a number from 1 to 99, not '$rounds'"
[[ $size =~ ^[1-9][0-9]{0,5}$ ]] || die_usage "--size must be a number of MiB, not '$size'"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
anchors=$(cd "$root/../shared/bench-anchors" 2>/dev/null && pwd) ||
    die_usage "no ../shared/bench-anchors beside the project"
export BENCH_DIR=${BENCH_DIR:-/tmp/swarmbench}
export RESULTS=${RESULTS:-$BENCH_DIR/results-ringswarm-anchors.csv}
export SIZES_MIB=$size RUNS=1
mkdir -p "$BENCH_DIR"
if [[ " $scenarios " == *" rqbit "* && ! -x $BENCH_DIR/tools/bin/rqbit ]]; then
    echo "bench-anchors.sh: rqbit missing: run $anchors/00-install.sh rqbit first (about 15 min)" >&2
    exit 2
fi

(cd "$root" && cargo build --release --bins --quiet)
export RINGSWARM_BIN_DIR=${CARGO_TARGET_DIR:-$root/target}/release

ring_log=$BENCH_DIR/ringswarm-ring.log
: >"$ring_log"
for ((r = 1; r <= rounds; r++)); do
    echo "=== round $r/$rounds" >&2
    for s in $scenarios; do
        bash "$anchors/run-all.sh" "$s" >/dev/null
    done
    "$root/scripts/bench.sh" --rounds 1 --only ring "${size}MiB" 2>&1 | tee -a "$ring_log" >&2
done

echo
echo "== anchors ($RESULTS)"
python3 "$anchors/summarize.py" --compact "$RESULTS" || python3 "$anchors/summarize.py" "$RESULTS"
echo
echo "== ringswarm five-peer ring (scripts/bench.sh, one run per round)"
grep -E '^\[.*\] ring +round' "$ring_log" | awk '{print "  " $0}'
grep -E '^\[.*\] ring +round' "$ring_log" | awk '{print $5}' | tr -d 's' | sort -g |
    awk '{v[NR] = $1} END {if (NR) printf "  median %.3f s over %d runs\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), NR}'
