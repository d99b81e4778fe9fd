#!/usr/bin/env bash
# netns-ring.sh — a five-peer ring on five real hosts: Linux network namespaces, veth, tc.
#
# Usage: scripts/netns-ring.sh [OPTIONS] [FILE]        (as root)
#
# Builds six hosts — the file owner and five peers — each a network namespace of its own with
# one veth link to a Linux bridge in a seventh namespace, on 10.77.0.0/24 (owner 10.77.0.10,
# peers 10.77.0.11–15). Everything lives in namespaces created here: the root namespace's
# interfaces and routes are never touched. Each host's uplink (the egress of its veth) is
# shaped with tc: tbf (htb where tbf is missing) at --rate, and netem --delay/--loss when asked
# for and the kernel has netem (probed; without it the run goes on with the rate alone and says
# so). `file-owner` runs in its host on port 5000 and `peer` in each peer host on port 5001
# (`peer 10.77.0.10:5000 5001 NEXT:5001 --bind HOST`); the peer on host i downloads from host
# i+1 and the last from the first. With --kill-restart (the default) peer 3 is killed with
# SIGKILL once its summary file lists a quarter of the chunks, then started again on the same
# folder. The script waits for every peer to exit, compares each reassembled file with FILE
# (cmp), and prints the shaping, each peer's time, the wall time and a one-line summary.
# With no FILE, a random file of --size bytes is generated in the work folder.
#
# Options:
#   --size SIZE        size of the generated file: 20MiB, 512KiB, 1GiB, 3000000 (default 20MiB)
#   --rate RATE        rate of every host's uplink in tc units: 100mbit, 1gbit, 500kbit,
#                      10mbps (bytes) (default 100mbit)
#   --delay TIME       netem delay on every uplink, e.g. 5ms (default none)
#   --loss PERCENT     netem loss on every uplink, e.g. 0.1% (default none)
#   --kill-restart     SIGKILL peer 3 mid-transfer and start it again on its folder (default)
#   --no-kill-restart  leave every peer running
#   --timeout SECS     overall limit for starting the hosts and finishing the ring (default 180)
#   --ns-prefix NAME   prefix of the namespaces made here: NAME-br, NAME-owner, NAME-p1…p5
#                      (default rsw<PID>, unique among running scripts)
#   --keep             keep the work folder (logs, events, peer folders) after exit
#   -h, --help         show this help
#
# Environment:
#   RINGSWARM_BIN_DIR  folder holding `file-owner` and `peer`. Otherwise the release binaries
#                      in target/release/ (or $CARGO_TARGET_DIR/release/) are used, built with
#                      `cargo build --release --bins` when missing (rebuild them yourself after
#                      changing the code).
#   RUST_LOG           log filter for the owner and peers (default info); logs go to the
#                      work folder.
#
# Needs: root (namespaces and tc), iproute2 (`ip`, `tc`), cmp.
# Work folder (mktemp -d, removed at exit unless --keep): owner.{out,err}, peer-N.{out,err},
# peer-N/ (each peer's --dir), events-N.jsonl, and peer-3.restart.{out,err} after the restart.
#
# Exit status: 0 all five copies match FILE; 1 a peer failed, a copy differs, the hosts could
# not be built, or the timeout expired; 2 bad usage; 130 interrupted (Ctrl+C). Every process
# and namespace made here is stopped and deleted on exit, on failure, on Ctrl+C and on SIGTERM.

set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/netns-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/netns-lib.sh"
me=netns-ring.sh

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"
}

die_usage() {
    echo "netns-ring.sh: $*" >&2
    echo "Try 'scripts/netns-ring.sh --help'." >&2
    exit 2
}

die() {
    echo "netns-ring.sh: error: $*" >&2
    exit 1
}

# --- options ----------------------------------------------------------------------------------

PEERS=5           # the ring is five hosts, as the SPEC's launch script
VICTIM=3          # the peer killed and restarted
OWNER_PORT=5000
PEER_PORT=5001
SUBNET=10.77.0    # /24, inside the namespaces made here only

size_arg=""
rate=100mbit
delay=""
loss=""
kill_restart=1
timeout=180
prefix="rsw$$"
keep=0
file=""

while [[ $# -gt 0 ]]; do
    case $1 in
    -h | --help)
        usage
        exit 0
        ;;
    --size | --rate | --delay | --loss | --timeout | --ns-prefix)
        need_value "$@"
        case $1 in
        --size) size_arg=$2 ;;
        --rate) rate=$2 ;;
        --delay) delay=$2 ;;
        --loss) loss=$2 ;;
        --timeout) timeout=$2 ;;
        --ns-prefix) prefix=$2 ;;
        esac
        shift 2
        ;;
    --size=*) size_arg=${1#*=} && shift ;;
    --rate=*) rate=${1#*=} && shift ;;
    --delay=*) delay=${1#*=} && shift ;;
    --loss=*) loss=${1#*=} && shift ;;
    --timeout=*) timeout=${1#*=} && shift ;;
    --ns-prefix=*) prefix=${1#*=} && shift ;;
    --kill-restart) kill_restart=1 && shift ;;
    --no-kill-restart) kill_restart=0 && shift ;;
    --keep) keep=1 && shift ;;
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

[[ -z $file || -z $size_arg ]] || die_usage "give --size or FILE, not both"
if ! [[ $timeout =~ ^[0-9]{1,6}$ ]] || ((10#$timeout < 1)); then
    die_usage "--timeout must be a whole number of seconds ≥ 1, not '$timeout'"
fi
timeout=$((10#$timeout))
[[ $prefix =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$ ]] ||
    die_usage "--ns-prefix: letters, digits, '_', '.', '-' (at most 40), not '$prefix'"

size=$(size_bytes "${size_arg:-20MiB}") ||
    die_usage "--size: expected a size such as 20MiB (1 byte to 1 TiB), not '$size_arg'"
rate_bits=$(rate_bits "$rate") ||
    die_usage "--rate: expected a tc rate from 8kbit to 4tbit such as 100mbit, 1gbit or 10mbps, not '$rate'"

[[ -z $delay || $delay =~ ^[0-9]+(\.[0-9]+)?(us|ms|s)$ ]] ||
    die_usage "--delay: expected a time such as 5ms, 200us or 0.1s, not '$delay'"
if [[ -n $loss ]] && ! { [[ $loss =~ ^[0-9]+(\.[0-9]+)?%$ ]] && awk -v l="${loss%\%}" 'BEGIN { exit !(l <= 100) }'; }; then
    die_usage "--loss: expected a percentage from 0% to 100% such as 0.1%, not '$loss'"
fi

if [[ -n $file ]]; then
    [[ -e $file ]] || die "$file does not exist"
    [[ -f $file ]] || die "$file is not a regular file"
    [[ -r $file ]] || die "$file is not readable"
    file=$(cd "$(dirname "$file")" && pwd)/$(basename "$file")
fi

# --- helpers ----------------------------------------------------------------------------------

# The number of chunk ids a summary file lists (its "chunks" are [first,last] ranges).
summary_count() {
    [[ -f $1 ]] || {
        echo 0
        return
    }
    grep -o '\[[0-9]\+,[0-9]\+\]' "$1" 2>/dev/null | awk -F'[][,]' '{ n += $3 - $2 + 1 } END { print n + 0 }'
}

# --- cleanup ----------------------------------------------------------------------------------

pids=()       # every live process started here (reaped ones are dropped: PIDs get reused)
namespaces=() # every namespace made here, recorded before it is made
work=""
interrupted=0
cleaning=0

forget_pid() {
    local p keep_pids=()
    for p in "${pids[@]}"; do
        [[ $p == "$1" ]] || keep_pids+=("$p")
    done
    pids=("${keep_pids[@]}")
}

# shellcheck disable=SC2317 # called by the EXIT trap
# Stops every process started here, kills anything still inside our namespaces, deletes the
# namespaces (their veths and the bridge go with them), removes the work folder unless --keep.
cleanup() {
    local status=$?
    if ((cleaning)); then return; fi
    cleaning=1
    trap '' INT TERM
    stop_pids "${pids[@]}"
    netns_delete_all "$prefix"
    finish_cleanup "$status"
}

# shellcheck disable=SC2317 # called by the INT and TERM traps
on_signal() {
    interrupted=1
    echo >&2
    echo "netns-ring.sh: interrupted; stopping the owner and peers, deleting the namespaces" >&2
    exit 130
}

trap cleanup EXIT
trap on_signal INT TERM

# --- what this needs --------------------------------------------------------------------------

netns_check "$prefix" "$PEERS"
command -v cmp >/dev/null || die "needs 'cmp' (apt-get install diffutils)"

root=$(cd "$(dirname "$0")/.." && pwd)
if [[ -n ${RINGSWARM_BIN_DIR:-} ]]; then
    bin_dir=$RINGSWARM_BIN_DIR
else
    bin_dir=$(target_bin_dir "$root" release)
    if [[ ! -x $bin_dir/file-owner || ! -x $bin_dir/peer ]]; then
        echo "building (release)…"
        (cd "$root" && cargo build --release --bins --quiet) || die "cargo build failed"
    fi
fi
owner_bin=$bin_dir/file-owner
peer_bin=$bin_dir/peer
for b in "$owner_bin" "$peer_bin"; do
    [[ -x $b ]] || die "no executable $b (set RINGSWARM_BIN_DIR to the folder holding file-owner and peer)"
done

# --- work folder and file ---------------------------------------------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/ringswarm-netns.XXXXXX")
# The owner keeps its node key in the work folder, not in the user's config folder.
export XDG_CONFIG_HOME=$work/config
echo "work folder: $work$( ((keep)) || echo ' (removed at exit; --keep keeps it)')"
if [[ -z $file ]]; then
    file=$work/data.bin
    head -c "$size" /dev/urandom >"$file"
    echo "generated $file ($(human_size "$size") of random bytes)"
fi
size=$(wc -c <"$file" | tr -d ' ')
name=$(basename "$file")

now_ms
deadline=$((NOW_MS + timeout * 1000))

# --- hosts ------------------------------------------------------------------------------------

netns_make_hosts "$prefix" "$SUBNET" "$PEERS"

# --- shaping ----------------------------------------------------------------------------------

pick_rate_qdisc "$rate_bits"

netem_args=()
[[ -z $delay ]] || netem_args+=(delay "$delay")
[[ -z $loss ]] || netem_args+=(loss "$loss")
netem_note=""
if ((${#netem_args[@]} > 0)); then
    if ! qdisc_works netem "${netem_args[@]}"; then
        netem_note="netem not available in this kernel ($(tr '\n' ' ' <"$work/tc-probe.err" | sed 's/ *$//')): --delay/--loss skipped, rate only"
        echo "netns-ring.sh: $netem_note" >&2
        netem_args=()
    fi
fi

for ((i = 0; i <= PEERS; i++)); do
    if ((${#netem_args[@]} > 0)); then
        # netem delays (or drops), then hands packets to its child, which sets the pace.
        ipx netns exec "${host_ns[i]}" tc qdisc add dev eth0 root handle 1: netem "${netem_args[@]}"
        add_rate_qdisc "${host_ns[i]}" "$rate_bits" parent 1:1
    else
        add_rate_qdisc "${host_ns[i]}" "$rate_bits" root
    fi
done

rate_text=$(rate_text "$rate_bits")
shaping="$rate_qdisc $rate_text on each host's uplink"
if ((${#netem_args[@]} > 0)); then
    shaping+=", netem ${netem_args[*]}"
elif [[ -n $netem_note ]]; then
    shaping+=", no netem in this kernel: ${delay:+delay $delay }${loss:+loss $loss }skipped"
else
    shaping+=", no delay, no loss"
fi
echo "hosts: owner ${host_ip[0]} in ${host_ns[0]}; peers ${host_ip[1]}–${host_ip[PEERS]} in ${host_ns[1]}…${host_ns[PEERS]}; bridge br0 in $br_ns"
echo "shaping: $shaping"

# --- owner ------------------------------------------------------------------------------------

ip netns exec "${host_ns[0]}" "$owner_bin" "$OWNER_PORT" "$file" --bind "${host_ip[0]}" --peers "$PEERS" \
    >"$work/owner.out" 2>"$work/owner.err" </dev/null &
owner_pid=$!
pids+=("$owner_pid")

# Waits until process $2 (named $1) printed "listening on" to $3; dies if it exits first.
wait_listening() {
    local who=$1 pid=$2 out=$3 err=$4 rc
    while ! grep -q '^listening on ' "$out" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rc=0
            wait "$pid" || rc=$?
            forget_pid "$pid"
            echo "netns-ring.sh: error: $who exited with code $rc before listening" >&2
            show_tail "$err" >&2
            exit 1
        fi
        now_ms
        if ((NOW_MS >= deadline)); then
            echo "netns-ring.sh: error: timed out after ${timeout}s waiting for $who to listen" >&2
            show_tail "$err" >&2
            exit 1
        fi
        sleep 0.05
    done
}
wait_listening "the file owner" "$owner_pid" "$work/owner.out" "$work/owner.err"
echo "owner: $(grep -m1 '^listening on ' "$work/owner.out")"

# --- peers ------------------------------------------------------------------------------------

declare -A peer_pid peer_rc peer_end peer_start
# Starts peer $1 on its host; its output goes to $work/peer-$1$2.{out,err}.
start_peer() {
    local i=$1 tag=${2:-} next=$(($1 % PEERS + 1))
    now_ms
    peer_start[$i]=$NOW_MS
    ip netns exec "${host_ns[i]}" "$peer_bin" "${host_ip[0]}:$OWNER_PORT" "$PEER_PORT" \
        "${host_ip[next]}:$PEER_PORT" --bind "${host_ip[i]}" --dir "$work/peer-$i" \
        --events "$work/events-$i.jsonl" \
        >"$work/peer-$i$tag.out" 2>"$work/peer-$i$tag.err" </dev/null &
    peer_pid[$i]=$!
    pids+=($!)
}

now_ms
ring_start=$NOW_MS
for ((i = 1; i <= PEERS; i++)); do
    start_peer "$i"
done
ring_text=""
for ((i = 1; i <= PEERS; i++)); do ring_text+="${host_ip[i]}:$PEER_PORT → "; done
echo "started $PEERS peers, each downloading from the next: $ring_text${host_ip[1]}"
for ((i = 1; i <= PEERS; i++)); do
    wait_listening "peer $i (${host_ip[i]})" "${peer_pid[$i]}" "$work/peer-$i.out" "$work/peer-$i.err"
done

# --- wait, with one kill and restart ----------------------------------------------------------

victim_summary=$work/peer-$VICTIM/$name.summary
victim_manifest=$work/peer-$VICTIM/$name.manifest.json
total_chunks=""
killed=0
restart_text=""
kill_held=0
running=$PEERS
timed_out=0
while ((running > 0)); do
    if ((kill_restart && !killed)) && [[ -z ${peer_rc[$VICTIM]:-} ]]; then
        if [[ -z $total_chunks && -f $victim_manifest ]]; then
            total_chunks=$(awk '{
                s = 0; c = 0
                if (match($0, /"size":[0-9]+/)) s = substr($0, RSTART + 7, RLENGTH - 7) + 0
                if (match($0, /"chunk_size":[0-9]+/)) c = substr($0, RSTART + 13, RLENGTH - 13) + 0
                printf "%d", (c > 0 ? int((s + c - 1) / c) : 0)
            }' "$victim_manifest")
        fi
        if [[ -n $total_chunks ]]; then
            held=$(summary_count "$victim_summary")
            if ((held > 0 && held * 4 >= total_chunks)); then
                pid=${peer_pid[$VICTIM]}
                now_ms
                kill_at=$((NOW_MS - ring_start))
                kill -KILL "$pid" 2>/dev/null || true
                wait "$pid" 2>/dev/null || true
                forget_pid "$pid"
                kill_held=$(summary_count "$victim_summary") # as the SIGKILL left it
                killed=1
                state="mid-transfer"
                ((kill_held < total_chunks)) || state="already complete: too fast to catch mid-transfer"
                echo "kill: peer $VICTIM (${host_ip[VICTIM]}) SIGKILLed at $(secs "$kill_at") holding $kill_held/$total_chunks chunks ($state)"
                start_peer "$VICTIM" .restart
                restart_text="peer $VICTIM killed (SIGKILL) at $(secs "$kill_at") holding $kill_held/$total_chunks chunks ($state), restarted on the same folder"
            fi
        fi
    fi
    for ((i = 1; i <= PEERS; i++)); do
        [[ -z ${peer_rc[$i]:-} ]] || continue
        pid=${peer_pid[$i]}
        if ! kill -0 "$pid" 2>/dev/null; then
            now_ms
            rc=0
            wait "$pid" || rc=$?
            forget_pid "$pid"
            peer_rc[$i]=$rc
            peer_end[$i]=$NOW_MS
            running=$((running - 1))
            if ((rc == 0)); then
                echo "peer $i finished"
            else
                echo "peer $i exited with code $rc"
            fi
        fi
    done
    ((running > 0)) || break
    now_ms
    if ((NOW_MS >= deadline)); then
        echo "netns-ring.sh: timed out after ${timeout}s with $running of $PEERS peers still running" >&2
        timed_out=1
        break
    fi
    sleep 0.02
done
ring_end=$ring_start
for ((i = 1; i <= PEERS; i++)); do
    end=${peer_end[$i]:-$NOW_MS}
    ((end <= ring_end)) || ring_end=$end
done

# --- verify and report ------------------------------------------------------------------------

echo
printf '%-5s %-11s %-5s %-9s %-7s %s\n' PEER ADDRESS EXIT DONE-AT CHUNKS RESULT
ok=0
failed=()
last_done=0
for ((i = 1; i <= PEERS; i++)); do
    rc=${peer_rc[$i]:-}
    tag=""
    if ((killed && i == VICTIM)); then tag=.restart; fi
    line=$(grep -m1 '^complete: ' "$work/peer-$i$tag.out" 2>/dev/null || true)
    done_at=-
    chunks=-
    if [[ $line =~ verified\ in\ ([0-9]+)\.([0-9]{3})s ]]; then
        # When the file was verified, counted from the start of the ring.
        d=$((peer_start[$i] + 10#${BASH_REMATCH[1]} * 1000 + 10#${BASH_REMATCH[2]} - ring_start))
        ((d <= last_done)) || last_done=$d
        done_at=$(secs "$d")
    fi
    if [[ $line =~ ([0-9]+)\ chunks\ fetched ]]; then chunks=${BASH_REMATCH[1]}; fi
    out=$work/peer-$i/$name
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
    note=""
    if [[ -n $tag ]]; then
        resumed=$(grep -o 'resuming: [0-9]*/[0-9]* verified chunks' "$work/peer-$i$tag.err" 2>/dev/null | head -n1 || true)
        note="  (restarted; ${resumed:-resumed with no verified chunks}; chunks fetched after the restart)"
    fi
    printf '%-5s %-11s %-5s %-9s %-7s %s%s\n' "$i" "${host_ip[i]}" "$rc" "$done_at" "$chunks" "$result" "$note"
    if [[ $result == OK ]]; then
        ok=$((ok + 1))
    else
        failed+=("$i:$result")
    fi
done

wall_ms=$((ring_end - ring_start))
fluid=$(awk -v s="$size" -v b="$rate_bits" 'BEGIN { printf "%.2fs", s * 8 / b }')
echo
echo "shaping: $shaping"
[[ -z $netem_note ]] || echo "note: $netem_note"
echo "wall time: $(secs "$wall_ms") (peers started → last peer exited); last file verified at $(secs "$last_done"); lower bound $fluid (every byte leaves the owner's $rate_text uplink once)"
if ((kill_restart)); then
    if ((killed)); then
        echo "restart: $restart_text"
    else
        echo "restart: did not happen (peer $VICTIM never listed a quarter of the chunks before it exited or the timeout)"
    fi
fi
if ((ok == PEERS)); then
    echo "verified: all five files match the original (cmp)"
fi
summary="summary: $ok/$PEERS files verified; $(human_size "$size") over $((PEERS + 1)) hosts; wall $(secs "$wall_ms"); $shaping"
if ((kill_restart)); then
    if ((killed)); then summary+="; peer $VICTIM killed at $kill_held/$total_chunks chunks and restarted"; else summary+="; no restart"; fi
fi
echo "$summary"

if ((ok == PEERS && (killed || !kill_restart))); then
    exit 0
fi

echo
if ((kill_restart && !killed)); then
    echo "the kill and restart did not happen, so the run does not count"
fi
for entry in "${failed[@]}"; do
    i=${entry%%:*}
    result=${entry#*:}
    tag=""
    if ((killed && i == VICTIM)); then tag=.restart; fi
    case $result in
    MISMATCH)
        echo "peer $i: $work/peer-$i/$name differs from $file:"
        cmp "$file" "$work/peer-$i/$name" 2>&1 | sed 's/^/  /' || true
        ;;
    TIMEOUT)
        echo "peer $i: still running after ${timeout}s"
        show_tail "$work/peer-$i$tag.err" 10
        ;;
    *)
        echo "peer $i: failed (exit code ${peer_rc[$i]:-?})"
        show_tail "$work/peer-$i$tag.err"
        ;;
    esac
done
((timed_out == 0)) || echo "(timed out after ${timeout}s)"
if ! ((keep)); then
    echo "(run again with --keep to inspect the logs and folders)"
fi
exit 1
