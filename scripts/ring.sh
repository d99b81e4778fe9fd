#!/usr/bin/env bash
# ring.sh — run a file owner and a ring of peers on this machine, check every peer's file.
#
# Usage: scripts/ring.sh [OPTIONS] [FILE]
#
# Starts `file-owner` on OWNER_PORT sharing FILE, then N peers on ports BASE..BASE+N-1 where
# the peer on port P downloads from port P+1 and the last from the first
# (5001→5002→5003→5004→5005→5001 by default). Waits for every peer to exit, compares each
# reassembled file byte for byte with FILE (cmp), prints a table (port, exit code, time,
# chunks fetched, result) and a summary (size, wall time, aggregate throughput).
# With no FILE, a random 3 MiB file is generated in the work folder.
#
# Options:
#   --peers N          number of peers in the ring (default 5)
#   --owner-port P     the file owner's port (default 5000)
#   --base-port P      first peer port; peers use P..P+N-1 (default 5001)
#   --chunk-files      store each chunk as its own file (passed to every peer)
#   --join             peers join the ring through the directory (`peer join OWNER FILE`)
#                      instead of naming their neighbours: the owner places each and
#                      re-stitches the ring when one dies
#   --rate RATE        cap every node's upload (owner and peers), e.g. 10MiB/s, and compare
#                      the run with the fluid lower bound for that cap (see README)
#   --timeout SECS     overall wait for the owner to start and the ring to finish (default 120)
#   --keep             keep the work folder (logs, events, peer folders) after exit
#   --release          use the release build (default)
#   --debug            use the debug build
#   -h, --help         show this help
#
# Environment:
#   RINGSWARM_BIN_DIR  folder holding `file-owner` and `peer`; when set, nothing is built.
#                      Otherwise `cargo build --bins` runs in the repository root and the
#                      binaries come from target/<profile>/ (or $CARGO_TARGET_DIR/<profile>/).
#   RUST_LOG           log filter for the owner and peers (default info); logs go to
#                      WORK/owner.err and WORK/peer-PORT.err.
#
# Work folder (mktemp -d, removed at exit unless --keep): owner.{out,err},
# peer-PORT.{out,err}, peer-PORT/ (each peer's --dir), events-PORT.jsonl (each peer's events).
#
# Exit status: 0 every file is byte-identical to FILE; 1 a peer failed, a file differs, a
# process could not start, or the timeout expired; 2 bad usage; 130 interrupted (Ctrl+C).
# Every process started here is stopped on exit, on Ctrl+C and on SIGTERM.

set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"
}

die_usage() {
    echo "ring.sh: $*" >&2
    echo "Try 'scripts/ring.sh --help'." >&2
    exit 2
}

die() {
    echo "ring.sh: error: $*" >&2
    exit 1
}

# --- options ----------------------------------------------------------------------------------

peers=5
owner_port=5000
base_port=5001
chunk_files=0
join=0
rate=""
timeout=120
keep=0
profile=release
file=""

while [[ $# -gt 0 ]]; do
    case $1 in
    -h | --help)
        usage
        exit 0
        ;;
    --peers | --owner-port | --base-port | --timeout | --rate)
        need_value "$@"
        case $1 in
        --rate) rate=$2 ;;
        --peers) peers=$2 ;;
        --owner-port) owner_port=$2 ;;
        --base-port) base_port=$2 ;;
        --timeout) timeout=$2 ;;
        esac
        shift 2
        ;;
    --peers=*) peers=${1#*=} && shift ;;
    --owner-port=*) owner_port=${1#*=} && shift ;;
    --base-port=*) base_port=${1#*=} && shift ;;
    --timeout=*) timeout=${1#*=} && shift ;;
    --rate=*) rate=${1#*=} && shift ;;
    --chunk-files) chunk_files=1 && shift ;;
    --join) join=1 && shift ;;
    --keep) keep=1 && shift ;;
    --release) profile=release && shift ;;
    --debug) profile=debug && shift ;;
    --)
        shift
        [[ $# -le 1 ]] || die_usage "at most one FILE"
        [[ $# -eq 0 ]] || file=$1
        break
        ;;
    -*) die_usage "unknown option $1" ;;
    *)
        [[ -z $file ]] || die_usage "at most one FILE (got '$file' and '$1')"
        file=$1
        shift
        ;;
    esac
done

# Sets variable $1 to the decimal number $2 (at most 9 digits, so nothing overflows and a
# leading zero does not mean octal); fails if $2 is not one.
set_uint() {
    [[ $2 =~ ^[0-9]{1,9}$ ]] || return 1
    printf -v "$1" '%d' "$((10#$2))"
}
if ! set_uint peers "$peers" || ((peers < 1 || peers > 1000)); then
    die_usage "--peers must be a number from 1 to 1000, not '$peers'"
fi
if ! set_uint timeout "$timeout" || ((timeout < 1)); then
    die_usage "--timeout must be a whole number of seconds ≥ 1, not '$timeout'"
fi
if ! set_uint owner_port "$owner_port" || ((owner_port < 1 || owner_port > 65535)); then
    die_usage "--owner-port must be a port from 1 to 65535, not '$owner_port'"
fi
if ! set_uint base_port "$base_port" || ((base_port < 1 || base_port + peers - 1 > 65535)); then
    die_usage "--base-port must leave room for $peers ports below 65536, not '$base_port'"
fi
if ((owner_port >= base_port && owner_port < base_port + peers)); then
    die_usage "--owner-port $owner_port falls inside the peer ports $base_port..$((base_port + peers - 1))"
fi

if [[ -n $file ]]; then
    [[ -e $file ]] || die "$file does not exist"
    [[ -f $file ]] || die "$file is not a regular file"
    [[ -r $file ]] || die "$file is not readable"
    file=$(cd "$(dirname "$file")" && pwd)/$(basename "$file")
fi

# --- helpers ----------------------------------------------------------------------------------

# Milliseconds since the epoch, into NOW_MS (no subshell with bash ≥ 5).
now_ms() {
    if [[ -n ${EPOCHREALTIME:-} ]]; then
        local t=${EPOCHREALTIME/,/.}
        NOW_MS=$((10#${t/./} / 1000))
    else
        NOW_MS=$(date +%s%3N)
    fi
}

# 3145728 → "3.0 MiB"
file_size() {
    wc -c <"$1" | tr -d ' '
}

# Explains a startup failure found in a log: port in use, or the last error line.
explain_failure() {
    local who=$1 log=$2
    if grep -q 'already in use' "$log" 2>/dev/null; then
        echo "ring.sh: error: $who could not start: $(grep -m1 'already in use' "$log" | sed 's/^error: //')" >&2
        echo "ring.sh: choose other ports with --owner-port / --base-port, or stop the process using it" >&2
    else
        echo "ring.sh: error: $who failed" >&2
    fi
    show_tail "$log" >&2
}

# --- cleanup ----------------------------------------------------------------------------------

pids=()     # every process started here
work=""
interrupted=0
cleaning=0

# shellcheck disable=SC2317 # called by the EXIT trap
# Stops every process started here (SIGTERM, then SIGKILL after a grace period), waits for
# them, and removes the work folder unless --keep.
cleanup() {
    local status=$?
    if ((cleaning)); then return; fi
    cleaning=1
    trap '' INT TERM
    stop_pids "${pids[@]}"
    finish_cleanup "$status"
}

# shellcheck disable=SC2317 # called by the INT and TERM traps
on_signal() {
    interrupted=1
    echo >&2
    echo "ring.sh: interrupted; stopping the owner and peers" >&2
    exit 130
}

trap cleanup EXIT
trap on_signal INT TERM

# --- binaries ---------------------------------------------------------------------------------

root=$(cd "$(dirname "$0")/.." && pwd)
if [[ -n ${RINGSWARM_BIN_DIR:-} ]]; then
    bin_dir=$RINGSWARM_BIN_DIR
else
    cd "$root"
    build_flag=()
    if [[ $profile == release ]]; then build_flag=(--release); fi
    echo "building ($profile)…"
    cargo build "${build_flag[@]}" --bins --quiet || die "cargo build failed"
    bin_dir=$(target_bin_dir "$root" "$profile")
fi
owner_bin=$bin_dir/file-owner
peer_bin=$bin_dir/peer
for b in "$owner_bin" "$peer_bin"; do
    [[ -x $b ]] || die "no executable $b (set RINGSWARM_BIN_DIR to the folder holding file-owner and peer, or unset it to build)"
done

# --- work folder and file ---------------------------------------------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/ringswarm.XXXXXX")
# The owner keeps its node key in the work folder, not in the user's config folder.
export XDG_CONFIG_HOME=$work/config
echo "work folder: $work$( ((keep)) || echo ' (removed at exit; --keep keeps it)')"
if [[ -z $file ]]; then
    file=$work/data.bin
    head -c $((3 * 1024 * 1024)) /dev/urandom >"$file"
    echo "generated $file (3.0 MiB of random bytes)"
fi
size=$(file_size "$file")
name=$(basename "$file")

now_ms
deadline=$((NOW_MS + timeout * 1000))

# --- owner ------------------------------------------------------------------------------------

# Bytes per second of --rate (10MiB/s, 500k, 1048576), or empty.
rate_bps=""
if [[ -n $rate ]]; then
    rate_bps=$(awk -v r="$rate" 'BEGIN {
        sub(/\/s$/, "", r)
        if (!match(r, /^[0-9]+(\.[0-9]+)?/)) exit 1
        n = substr(r, 1, RLENGTH); u = tolower(substr(r, RLENGTH + 1))
        m["" ] = 1; m["b"] = 1
        m["k"] = 1024; m["kb"] = 1024; m["kib"] = 1024
        m["m"] = 1048576; m["mb"] = 1048576; m["mib"] = 1048576
        m["g"] = 1073741824; m["gb"] = 1073741824; m["gib"] = 1073741824
        if (!(u in m) || n * m[u] < 1) exit 1
        printf "%d", n * m[u]
    }') || die_usage "--rate: expected a rate such as 10MiB/s, not '$rate'"
fi
owner_extra=()
if [[ -n $rate_bps ]]; then owner_extra+=(--upload-limit "$rate_bps"); fi

"$owner_bin" "$owner_port" "$file" --bind 127.0.0.1 --peers "$peers" "${owner_extra[@]}" \
    >"$work/owner.out" 2>"$work/owner.err" </dev/null &
owner_pid=$!
pids+=("$owner_pid")

while ! grep -q '^listening on ' "$work/owner.out" 2>/dev/null; do
    if ! kill -0 "$owner_pid" 2>/dev/null; then
        rc=0
        wait "$owner_pid" || rc=$?
        explain_failure "the file owner (port $owner_port, exit code $rc)" "$work/owner.err"
        exit 1
    fi
    now_ms
    if ((NOW_MS >= deadline)); then
        echo "ring.sh: error: timed out after ${timeout}s waiting for the file owner to listen" >&2
        show_tail "$work/owner.err" >&2
        exit 1
    fi
    sleep 0.05
done
echo "owner: $(grep -m1 '^listening on ' "$work/owner.out")"

# --- peers ------------------------------------------------------------------------------------

ports=()
for ((i = 0; i < peers; i++)); do
    ports+=($((base_port + i)))
done

extra=()
if ((chunk_files)); then extra+=(--chunk-files); fi
if [[ -n $rate_bps ]]; then extra+=(--upload-limit "$rate_bps"); fi

declare -A peer_pid peer_rc peer_end
now_ms
ring_start=$NOW_MS
for ((i = 0; i < peers; i++)); do
    port=${ports[i]}
    next=${ports[(i + 1) % peers]}
    if ((join)); then
        where=(join "$owner_port" "$(basename "$file")" --port "$port")
    else
        where=("$owner_port" "$port" "$next")
    fi
    "$peer_bin" "${where[@]}" --bind 127.0.0.1 \
        --dir "$work/peer-$port" --events "$work/events-$port.jsonl" "${extra[@]}" \
        >"$work/peer-$port.out" 2>"$work/peer-$port.err" </dev/null &
    peer_pid[$port]=$!
    pids+=($!)
done
echo "started $peers peers: $(
    for p in "${ports[@]}"; do printf '%s→' "$p"; done
    printf '%s' "${ports[0]}"
)"

# A peer that cannot listen breaks the ring: stop at once and say why.
for port in "${ports[@]}"; do
    while ! grep -q '^listening on ' "$work/peer-$port.out" 2>/dev/null; do
        pid=${peer_pid[$port]}
        if ! kill -0 "$pid" 2>/dev/null; then
            rc=0
            wait "$pid" || rc=$?
            explain_failure "peer $port (exit code $rc)" "$work/peer-$port.err"
            exit 1
        fi
        now_ms
        if ((NOW_MS >= deadline)); then
            echo "ring.sh: error: timed out after ${timeout}s waiting for peer $port to listen" >&2
            show_tail "$work/peer-$port.err" >&2
            exit 1
        fi
        sleep 0.05
    done
done

# Wait for every peer to exit, or the deadline.
running=$peers
while ((running > 0)); do
    for port in "${ports[@]}"; do
        if [[ -n ${peer_rc[$port]:-} ]]; then continue; fi
        pid=${peer_pid[$port]}
        if ! kill -0 "$pid" 2>/dev/null; then
            now_ms
            rc=0
            wait "$pid" || rc=$?
            peer_rc[$port]=$rc
            peer_end[$port]=$NOW_MS
            running=$((running - 1))
            if ((rc == 0)); then
                echo "peer $port finished"
            else
                echo "peer $port exited with code $rc"
            fi
        fi
    done
    ((running > 0)) || break
    now_ms
    if ((NOW_MS >= deadline)); then
        echo "ring.sh: timed out after ${timeout}s with $running of $peers peers still running" >&2
        break
    fi
    sleep 0.05
done
ring_end=$ring_start
for port in "${ports[@]}"; do
    end=${peer_end[$port]:-$NOW_MS}
    if ((end > ring_end)); then ring_end=$end; fi
done

# --- verify and report ------------------------------------------------------------------------

echo
printf '%-7s %-5s %-10s %-7s %s\n' PEER EXIT TIME CHUNKS RESULT
ok=0
failed=()
for port in "${ports[@]}"; do
    rc=${peer_rc[$port]:-}
    out=$work/peer-$port/$name
    line=$(grep -m1 '^complete: ' "$work/peer-$port.out" 2>/dev/null || true)
    time=-
    chunks=-
    if [[ $line =~ verified\ in\ ([0-9.]+)s ]]; then time=${BASH_REMATCH[1]}s; fi
    if [[ $line =~ ([0-9]+)\ chunks\ fetched ]]; then chunks=${BASH_REMATCH[1]}; fi
    if [[ -z $rc ]]; then
        result=TIMEOUT
        rc=-
    elif ((rc != 0)) || [[ ! -f $out ]]; then
        result=FAILED
    elif cmp -s "$file" "$out"; then
        result=OK
    else
        result=MISMATCH
    fi
    printf '%-7s %-5s %-10s %-7s %s\n' "$port" "$rc" "$time" "$chunks" "$result"
    if [[ $result == OK ]]; then
        ok=$((ok + 1))
    else
        failed+=("$port:$result")
    fi
done

wall_ms=$((ring_end - ring_start))
echo
# Aggregate throughput counts the verified copies only: ok × size / wall.
awk -v ok="$ok" -v n="$peers" -v size="$size" -v human="$(human_size "$size")" -v ms="$wall_ms" 'BEGIN {
    s = ms / 1000
    if (s <= 0) s = 0.001
    printf "summary: %d/%d peers OK; file %s (%d bytes); ring wall time %.2fs; ", ok, n, human, size, s
    if (ok == 0) { print "aggregate -"; exit }
    rate = ok * size / s
    split("B KiB MiB GiB TiB", u, " "); i = 1
    while (rate >= 1024 && i < 5) { rate /= 1024; i++ }
    printf "aggregate %.1f %s/s (%d × %s / %.2fs)\n", rate, u[i], ok, human, s
}'

# The optimality meter (README): the last peer's time against the fluid lower bound
# max(S/U_owner, N·S/(U_owner+ΣU)) and the chunked ring S/U + (N−1)·c/U, every node at --rate.
if [[ -n $rate_bps ]] && ((ok == peers)); then
    last_port=""
    last_time=0
    for port in "${ports[@]}"; do
        line=$(grep -m1 '^complete: ' "$work/peer-$port.out" 2>/dev/null || true)
        if [[ $line =~ verified\ in\ ([0-9.]+)s ]] &&
            awk -v a="${BASH_REMATCH[1]}" -v b="$last_time" 'BEGIN { exit !(a > b) }'; then
            last_time=${BASH_REMATCH[1]}
            last_port=$port
        fi
    done
    chunk=$(grep -o '"chunk_size":[0-9]*' "$work/peer-$last_port/$name.manifest.json" | cut -d: -f2)
    awk -v s="$size" -v n="$peers" -v u="$rate_bps" -v c="${chunk:-102400}" -v t="$last_time" 'BEGIN {
        fluid = s / u; agg = n * s / ((n + 1) * u); if (agg > fluid) fluid = agg
        ring = (s + (n - 1) * c) / u
        printf "meter: last peer %.3fs; fluid lower bound %.3fs (measured/bound %.3f); chunked ring %.3fs (measured/ring %.3f)\n", t, fluid, t / fluid, ring, t / ring
    }'
    # Critical path: the slowest link into the last peer, from its event log.
    awk -v me="$last_port" '/"event":"chunk_received"/ {
        match($0, /"ts":[0-9.]+/); ts = substr($0, RSTART + 5, RLENGTH - 5) + 0
        match($0, /"neighbour":"[^"]*"/); from = substr($0, RSTART + 13, RLENGTH - 14)
        match($0, /"bytes":[0-9]+/); b = substr($0, RSTART + 8, RLENGTH - 8) + 0
        bytes[from] += b; if (!(from in first)) first[from] = ts; last[from] = ts
    } END {
        slow = ""
        for (f in bytes) {
            d = last[f] - first[f]; if (d < 0.001) d = 0.001
            r = bytes[f] / d
            if (slow == "" || r < best) { slow = f; best = r }
        }
        if (slow != "") printf "critical path: peer %s finished last; its slowest feed was %s at %.1f MiB/s\n", me, slow, best / 1048576
    }' "$work/events-$last_port.jsonl"
fi

if ((ok == peers)); then
    exit 0
fi

echo
for entry in "${failed[@]}"; do
    port=${entry%%:*}
    result=${entry#*:}
    case $result in
    MISMATCH)
        echo "peer $port: $work/peer-$port/$name differs from $file:"
        cmp "$file" "$work/peer-$port/$name" 2>&1 | sed 's/^/  /' || true
        ;;
    TIMEOUT)
        echo "peer $port: still running after ${timeout}s"
        show_tail "$work/peer-$port.err" 10
        ;;
    *)
        if grep -q 'already in use' "$work/peer-$port.err" 2>/dev/null; then
            echo "peer $port: $(grep -m1 'already in use' "$work/peer-$port.err")"
        else
            echo "peer $port: failed (exit code ${peer_rc[$port]:-?})"
        fi
        show_tail "$work/peer-$port.err"
        ;;
    esac
done
if ! ((keep)); then
    echo "(run again with --keep to inspect the logs and folders)"
fi
exit 1
