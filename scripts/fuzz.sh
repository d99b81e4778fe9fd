#!/usr/bin/env bash
# fuzz.sh — run each cargo-fuzz target for a bounded time; report executions and crashes.
#
# Usage: scripts/fuzz.sh [OPTIONS] [SECONDS]
#
# Builds the targets in fuzz/ once, then runs each for SECONDS (default 60; libFuzzer's
# -max_total_time), one after the other: frame_decoder (arbitrary bytes into MessageCodec)
# and manifest_parser (arbitrary bytes into Manifest::from_json). Each starts from the
# committed seeds in fuzz/seeds/TARGET/ (read only) plus what earlier runs kept in
# fuzz/corpus/TARGET/, where libFuzzer writes the new inputs it finds (not committed).
# Prints one line per target: executions, corpus size, and whether it found a crash.
#
# Options:
#   --target NAME   run only this target (may be repeated)
#   -h, --help      show this help
#
# Needs the nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz
# (`cargo install cargo-fuzz --locked`).
#
# A crash (panic, sanitizer report, timeout, out of memory) is saved by libFuzzer as
# fuzz/artifacts/TARGET/crash-… (or timeout-…, oom-…); replay it with
# `cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-…`. The libFuzzer output of the
# last run of each target is kept in fuzz/logs/TARGET.log.
#
# Exit status: 0 no target crashed; 1 a target crashed or the build failed; 2 bad usage, or
# nightly or cargo-fuzz missing.

set -euo pipefail

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"
}

die_usage() {
    echo "fuzz.sh: $*" >&2
    echo "Try 'scripts/fuzz.sh --help'." >&2
    exit 2
}

# --- options ----------------------------------------------------------------------------------

secs=60
targets=()
while (($# > 0)); do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --target)
            (($# >= 2)) || die_usage "--target needs a name"
            targets+=("$2")
            shift 2
            ;;
        -*) die_usage "unknown option $1" ;;
        *)
            [[ "$1" =~ ^[1-9][0-9]*$ ]] || die_usage "SECONDS must be a positive whole number, not '$1'"
            secs="$1"
            shift
            ;;
    esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: the nightly toolchain is missing (cargo fuzz needs it): rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

all=$(cargo +nightly fuzz list)
if ((${#targets[@]} == 0)); then
    mapfile -t targets <<<"$all"
fi
for t in "${targets[@]}"; do
    grep -qx -- "$t" <<<"$all" || die_usage "no fuzz target '$t'; there are: ${all//$'\n'/ }"
done

# --- build once, then run each target ---------------------------------------------------------

echo "building fuzz targets (release, address sanitizer)…" >&2
if ! build_log=$(cargo +nightly fuzz build 2>&1); then
    tail -n 40 <<<"$build_log" >&2
    echo "fuzz.sh: error: building the fuzz targets failed" >&2
    exit 1
fi

crashed=0
printf '%-18s %8s %14s %8s  %s\n' target seconds executions corpus result
for t in "${targets[@]}"; do
    # Not in fuzz/artifacts/: cargo fuzz reports every file there as a crash input.
    mkdir -p "fuzz/corpus/$t" fuzz/logs
    log="fuzz/logs/$t.log"
    status=0
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    if ((status == 0)); then
        result="no crash"
    elif [[ -n "$artifact" ]]; then
        result="CRASH: $artifact"
        crashed=1
    else
        result="FAILED (exit $status, see $log)"
        crashed=1
    fi
    printf '%-18s %8s %14s %8s  %s\n' "$t" "$secs" "${execs:-?}" "$corpus" "$result"
    if ((status != 0)); then
        echo "--- last lines of $log:" >&2
        tail -n 30 "$log" >&2
    fi
done
exit "$crashed"
