#!/usr/bin/env bash
# bench-shaped.sh — one file from one owner host to N receiver hosts over shaped links: the
# ringswarm ring, its joined form and `peer get` against nginx fan-out and three BitTorrent
# clients, alternating, in one run; each one's median time and its ratio to the fluid bound.
#
# Usage: scripts/bench-shaped.sh [OPTIONS]        (as root)
#
# Builds N+1 hosts — the owner and N receivers — each a network namespace with one veth link
# to a bridge in a namespace of its own (owner 10.77.0.10, receivers 10.77.0.11…), as
# scripts/netns-ring.sh does. Each host's uplink (its veth's egress) is shaped with tbf (htb
# where tbf is missing) at --rate, or at the rate --slow gives that receiver; downlinks are not
# shaped. A random file of --size bytes is made in the work folder. Each round runs every
# contender once, in an order that rotates from round to round:
#
#   ring        file-owner --peers N on the owner host; `peer OWNER MYPORT NEXT` on each
#               receiver, receiver i downloading from receiver i+1 and the last from the first
#   join        the same ring assembled by the directory: `peer join TICKET` on each receiver
#   get         file-owner; `peer get TICKET` on every receiver at once (multi-source,
#               rarest first; each serves the others until stopped)
#   nginx       nginx (sendfile) on the owner host; every receiver curls the file at once
#   rqbit       rqbit 9 (`rqbit download`), the seeder on the owner host
#   libtorrent  libtorrent-rasterbar's Python bindings (scripts/bench-shaped/lt_client.py)
#   aria2       aria2c, the seeder on the owner host
#
# The BitTorrent clients share a private torrent of 256 KiB pieces whose only tracker is
# scripts/bench-shaped/bt.py on the owner host; DHT, LSD, PEX, UPnP/NAT-PMP and uTP are off
# where the client has them, and every client binds its host's address. The seeder is up and
# announced, the owner listening (file hashed) or nginx listening, before the clock starts.
# The clock runs from launching the receivers until the last receiver holds the whole file,
# verified by its own check (`complete:` line, BitTorrent's finished event, curl's exit); then
# every process of the run is stopped and every receiver's copy is compared with the source
# (cmp). A run whose copy differs, or that fails or times out, is reported and not counted.
# Ringswarm peers run with --no-sync (as curl and the BitTorrent clients, they leave write-back
# to the kernel) unless --durable. Before every run: `sync`, then a wait until the machine is
# quiet (under QUIET_PCT % busy for 1 s, at most QUIET_MAX s).
#
# The fluid bound: one source of upload rate u_s and N receivers of upload rates u_i cannot
# deliver a file of F bytes to all of them faster than
#     T* = max(F / u_s, N·F / (u_s + Σ u_i))
# (every byte leaves the source at least once; N·F bytes must be uploaded in all). Downlinks
# are not shaped here, so nothing else binds. TCP over 1500-byte Ethernet frames carries at
# most 1448 payload bytes per 1514 bytes tbf counts, so even a perfect transfer takes 1.046×.
#
# Options:
#   --rate RATE        every host's uplink, in tc units: 100mbit, 1gbit, 10mbps (default 100mbit)
#   --hosts N          receivers (default 5; 1 to 99)
#   --size SIZE        file size: 20MiB, 256MiB, 1GiB, 3000000 (default 20MiB)
#   --rounds N         rounds (default 3)
#   --only LIST        contenders, comma-separated (default ring,join,get,nginx,rqbit,libtorrent,aria2)
#   --slow K:RATE      receiver K's uplink at RATE instead of --rate (repeatable), e.g. 3:25mbit
#   --out DIR          where results.csv, receivers.csv, table.txt and chart.svg go
#                      (default ./bench-shaped-results)
#   --timeout SECS     limit for one run (default 300)
#   --durable          ringswarm peers sync as by default (no --no-sync)
#   --peer-opts "OPTS" extra options for every ringswarm peer and getter, e.g. "--in-flight 2"
#   --owner-opts "OPTS"  extra options for file-owner, e.g. "--chunk-size 256KiB"
#   --ns-prefix NAME   prefix of the namespaces made here (default rsb<PID>)
#   --keep             keep the work folder: each run's logs and event files (runs/C-rR/);
#                      scripts/bench-shaped/timeline.py runs/ring-r1 shows where a ringswarm
#                      run's time went (start-up, the owner's extra copies, the tail)
#   -h, --help         show this help
#
# Output: a table of each contender's median, min and max time, its runs and the median's
# ratio to the bound; in --out: results.csv (contender,round,seconds,ratio: one row per run,
# seconds "failed" for a failed run), receivers.csv (contender,round,receiver,seconds: when
# each receiver finished), table.txt (the table) and chart.svg (medians as bars, single runs
# as dots, the bound as a line; drawn by scripts/bench-shaped/chart.py).
#
# Environment:
#   RINGSWARM_BIN_DIR  folder holding `file-owner` and `peer`; otherwise the release binaries
#                      of target/release/ (or $CARGO_TARGET_DIR/release/), built with
#                      `cargo build --release --bins` when missing
#   RQBIT              the rqbit binary (default: `rqbit` on PATH, ~/.cargo/bin/rqbit,
#                      /tmp/swarmbench/tools/bin/rqbit)
#   LT_PYTHON          a python3 that can `import libtorrent` (default: python3, /usr/bin/python3)
#   QUIET_PCT, QUIET_MAX   quiet threshold in % busy (default 10) and longest wait (default 60 s)
#
# Needs root, iproute2 (`ip`, `tc`), python3, cmp; per contender: curl and nginx (nginx),
# rqbit, libtorrent's Python bindings, aria2c. A contender whose tool is missing is skipped
# with a one-line note. To install them (Debian):
#   apt-get install nginx-light curl aria2 python3-libtorrent   (or: pip install libtorrent)
#   cargo install rqbit --version 9.1.0 --locked                (builds ~15 min on 2 cores)
#
# Exit status: 0 every run verified; 1 a run failed, or the hosts could not be built; 2 bad
# usage; 130 interrupted (Ctrl+C). Every process and namespace made here is stopped and
# deleted on exit, on failure, on Ctrl+C and on SIGTERM.

set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"
# shellcheck source=scripts/netns-lib.sh
source "$here/netns-lib.sh"
me=bench-shaped.sh
helpers=$here/bench-shaped

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"
}

die_usage() {
    echo "$me: $*" >&2
    echo "Try 'scripts/bench-shaped.sh --help'." >&2
    exit 2
}

die() {
    echo "$me: error: $*" >&2
    exit 1
}

log() {
    printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

# --- options ----------------------------------------------------------------------------------

ALL=ring,join,get,nginx,rqbit,libtorrent,aria2
SUBNET=10.77.0
TRACKER_PORT=6969
PIECE_KIB=256

rate=100mbit
hosts=5
size_arg=20MiB
rounds=3
only=$ALL
slow_args=()
out=bench-shaped-results
timeout=300
durable=0
peer_opts=()
owner_opts=()
prefix="rsb$$"
keep=0

while [[ $# -gt 0 ]]; do
    case $1 in
    -h | --help)
        usage
        exit 0
        ;;
    --rate | --hosts | --size | --rounds | --only | --slow | --out | --timeout | --ns-prefix | --peer-opts | --owner-opts)
        need_value "$@"
        case $1 in
        --rate) rate=$2 ;;
        --hosts) hosts=$2 ;;
        --size) size_arg=$2 ;;
        --rounds) rounds=$2 ;;
        --only) only=$2 ;;
        --slow) slow_args+=("$2") ;;
        --out) out=$2 ;;
        --timeout) timeout=$2 ;;
        --ns-prefix) prefix=$2 ;;
        --peer-opts) read -r -a peer_opts <<<"$2" ;;
        --owner-opts) read -r -a owner_opts <<<"$2" ;;
        esac
        shift 2
        ;;
    --rate=* | --hosts=* | --size=* | --rounds=* | --only=* | --slow=* | --out=* | --timeout=* | --ns-prefix=* | --peer-opts=* | --owner-opts=*)
        set -- "${1%%=*}" "${1#*=}" "${@:2}"
        ;;
    --durable) durable=1 && shift ;;
    --keep) keep=1 && shift ;;
    *) die_usage "unknown option $1" ;;
    esac
done

[[ $hosts =~ ^[1-9][0-9]?$ ]] || die_usage "--hosts must be a number from 1 to 99, not '$hosts'"
[[ $rounds =~ ^[1-9][0-9]{0,2}$ ]] || die_usage "--rounds must be a number from 1 to 999, not '$rounds'"
[[ $timeout =~ ^[1-9][0-9]{0,5}$ ]] || die_usage "--timeout must be a whole number of seconds, not '$timeout'"
[[ $prefix =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$ ]] ||
    die_usage "--ns-prefix: letters, digits, '_', '.', '-' (at most 40), not '$prefix'"
size=$(size_bytes "$size_arg") || die_usage "--size: expected a size such as 20MiB (1 byte to 1 TiB), not '$size_arg'"
((size >= 5)) || die_usage "--size must be at least 5 bytes"
rate_bits=$(rate_bits "$rate") ||
    die_usage "--rate: expected a tc rate from 8kbit to 4tbit such as 100mbit, 1gbit or 10mbps, not '$rate'"
# up[i]: uplink of host i in bits/s (0 the owner).
up=()
for ((i = 0; i <= hosts; i++)); do up+=("$rate_bits"); done
for s in "${slow_args[@]}"; do
    [[ $s =~ ^([0-9]+):(.+)$ ]] || die_usage "--slow: expected K:RATE such as 3:25mbit, not '$s'"
    k=$((10#${BASH_REMATCH[1]}))
    ((k >= 1 && k <= hosts)) || die_usage "--slow: receiver $k does not exist (1 to $hosts)"
    up[k]=$(rate_bits "${BASH_REMATCH[2]}") || die_usage "--slow: '${BASH_REMATCH[2]}' is not a tc rate such as 25mbit"
done
contenders=()
IFS=, read -r -a wanted <<<"$only"
for c in "${wanted[@]}"; do
    [[ ,$ALL, == *,$c,* ]] || die_usage "unknown contender '$c' ($ALL)"
    [[ " ${contenders[*]} " == *" $c "* ]] || contenders+=("$c")
done
((${#contenders[@]} > 0)) || die_usage "--only names no contender"
[[ $out == /* ]] || out=$PWD/$out

# --- cleanup ----------------------------------------------------------------------------------

run_pids=()   # the processes of the current run
namespaces=() # every namespace made here, recorded before it is made
work=""
interrupted=0
cleaning=0

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local status=$?
    if ((cleaning)); then return; fi
    cleaning=1
    trap '' INT TERM
    stop_pids "${run_pids[@]}"
    netns_delete_all "$prefix"
    finish_cleanup "$status" stderr
}

# shellcheck disable=SC2317 # called by the INT and TERM traps
on_signal() {
    interrupted=1
    echo >&2
    log "interrupted; stopping every process and deleting the namespaces"
    exit 130
}

trap cleanup EXIT
trap on_signal INT TERM

# --- what this needs --------------------------------------------------------------------------

netns_check "$prefix" "$hosts"
for tool in python3 cmp; do
    command -v "$tool" >/dev/null || die "needs '$tool'"
done

root=$(cd "$here/.." && pwd)
if [[ -n ${RINGSWARM_BIN_DIR:-} ]]; then
    bin_dir=$RINGSWARM_BIN_DIR
else
    bin_dir=$(target_bin_dir "$root" release)
    if [[ ! -x $bin_dir/file-owner || ! -x $bin_dir/peer ]]; then
        log "building (release)"
        (cd "$root" && cargo build --release --bins --quiet) || die "cargo build failed"
    fi
fi
owner_bin=$bin_dir/file-owner
peer_bin=$bin_dir/peer

# Which contenders can run here; the others are skipped with a note.
rqbit_bin=${RQBIT:-$(command -v rqbit || true)}
for c in ~/.cargo/bin/rqbit /tmp/swarmbench/tools/bin/rqbit; do
    if [[ -z $rqbit_bin && -x $c ]]; then rqbit_bin=$c; fi
done
lt_python=${LT_PYTHON:-}
if [[ -z $lt_python ]]; then
    for py in python3 /usr/bin/python3; do
        if "$py" -c 'import libtorrent' 2>/dev/null; then
            lt_python=$(command -v "$py")
            break
        fi
    done
fi
nginx_bin=$(command -v nginx || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true)
# Why contender $1 cannot run here (empty when it can).
missing() {
    case $1 in
    ring | join | get)
        [[ -x $owner_bin && -x $peer_bin ]] ||
            echo "no file-owner and peer in $bin_dir (cargo build --release --bins, or set RINGSWARM_BIN_DIR)"
        ;;
    nginx)
        [[ -n $nginx_bin ]] || echo "nginx missing (apt-get install nginx-light)"
        command -v curl >/dev/null || echo "curl missing (apt-get install curl)"
        ;;
    rqbit) [[ -n $rqbit_bin && -x $rqbit_bin ]] || echo "rqbit missing (cargo install rqbit --version 9.1.0 --locked, or set RQBIT)" ;;
    libtorrent)
        [[ -n $lt_python ]] && "$lt_python" -c 'import libtorrent' 2>/dev/null ||
            echo "no python3 with libtorrent (apt-get install python3-libtorrent, or pip install libtorrent; or set LT_PYTHON)"
        ;;
    aria2) command -v aria2c >/dev/null || echo "aria2c missing (apt-get install aria2)" ;;
    esac
}
running=()
for c in "${contenders[@]}"; do
    why=$(missing "$c")
    if [[ -n $why ]]; then
        log "skipping $c: $(head -n1 <<<"$why")"
    else
        running+=("$c")
    fi
done
((${#running[@]} > 0)) || die "no contender can run here"
mkdir -p "$out" || die "cannot make --out $out"

# --- work folder, file, hosts -----------------------------------------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/ringswarm-shaped.XXXXXX")
# The owner keeps its node key in the work folder, not in the user's config folder.
export XDG_CONFIG_HOME=$work/config
chmod 755 "$work" # nginx's workers run as nobody
log "work folder: $work$( ((keep)) || echo ' (removed at exit; --keep keeps it)')"
file=$work/data.bin
head -c "$size" /dev/urandom >"$file"
chmod 644 "$file"
name=$(basename "$file")

netns_make_hosts "$prefix" "$SUBNET" "$hosts"
owner_ns=${host_ns[0]}
owner_ip=${host_ip[0]}
pick_rate_qdisc "$rate_bits"
for ((i = 0; i <= hosts; i++)); do
    add_rate_qdisc "${host_ns[i]}" "${up[i]}" root
done
shaping="$rate_qdisc $(rate_text "$rate_bits") on every uplink"
for ((i = 1; i <= hosts; i++)); do
    ((up[i] == rate_bits)) || shaping+=", receiver $i at $(rate_text "${up[i]}")"
done

# The fluid bound, seconds: max(F/u_s, N·F/(u_s + Σ u_i)).
sum_up=0
for ((i = 1; i <= hosts; i++)); do sum_up=$((sum_up + up[i])); done
bound=$(awk -v f="$size" -v n="$hosts" -v us="$rate_bits" -v su="$sum_up" 'BEGIN {
    a = f * 8 / us; b = n * f * 8 / (us + su); printf "%.4f", (a > b ? a : b)
}')
log "$hosts receivers + owner; $shaping; $(human_size "$size"); fluid bound ${bound}s"

if [[ " ${running[*]} " =~ " "(rqbit|libtorrent|aria2)" " ]]; then
    torrent=$work/data.torrent
    python3 "$helpers/bt.py" torrent "$file" "$torrent" --piece-kib "$PIECE_KIB" \
        --announce "http://$owner_ip:$TRACKER_PORT/announce" || die "could not make the torrent"
fi
cat "$file" >/dev/null # every run starts with the source in the page cache

# --- helpers for one run ----------------------------------------------------------------------

ncpu=$(nproc)
clk_tck=$(getconf CLK_TCK)

# Starts `ip netns exec NS CMD…` in the background with stdout to OUT and stderr to OUT.err;
# sets STARTED to its PID (ip execs the command, so it is the command's PID).
start_in() {
    local ns=$1 outf=$2
    shift 2
    ip netns exec "$ns" "$@" >"$outf" 2>"$outf.err" </dev/null &
    STARTED=$!
    run_pids+=("$STARTED")
}

# Waits until FILE has a line starting with TEXT while PID lives, at most 60 s.
wait_line() {
    local f=$1 text=$2 pid=$3 i
    for ((i = 0; i < 3000; i++)); do
        grep -q "^$text" "$f" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.02
    done
    return 1
}

# Whether FILE has a line starting with `complete: ` (bash builtins only: polled in the window).
has_complete() {
    local line
    [[ -e $1 ]] || return 1
    while IFS= read -r line; do
        [[ $line == "complete: "* ]] && return 0
    done <"$1"
    return 1
}

# Stops the run's processes and anything else left in the hosts' namespaces.
stop_run() {
    local ns p
    stop_pids "${run_pids[@]}"
    run_pids=()
    for ns in "${host_ns[@]}"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    done
}

# --- contenders: servers ----------------------------------------------------------------------
# start_C starts the owner side of contender C and returns once it serves; launch_C I starts
# receiver I (its copy goes to $rd/rI/$name); done_C I succeeds once receiver I holds the
# verified file, setting DONE_AT when the receiver said when (epoch seconds).

start_owner() {
    local extra=("$@")
    start_in "$owner_ns" "$rd/owner.out" "$owner_bin" "$port_owner" "$file" --bind "$owner_ip" \
        --events "$rd/owner-events.jsonl" "${extra[@]}" "${owner_opts[@]}"
    wait_line "$rd/owner.out" "ticket: " "$STARTED" || {
        RUN_WHY="the file owner did not start: $(tail -n 3 "$rd/owner.out.err" | tr '\n' ' ')"
        return 1
    }
    ticket=$(grep -m1 -o 'ringswarm://[^ ]*' "$rd/owner.out")
}

peer_common() {
    PEER_ARGS=(--bind "${host_ip[$1]}" --dir "$rd/r$1" --events "$rd/r$1-events.jsonl")
    ((durable)) || PEER_ARGS+=(--no-sync)
    PEER_ARGS+=("${peer_opts[@]}")
}

start_ring() { start_owner --peers "$hosts"; }
launch_ring() {
    local i=$1 next=$(($1 % hosts + 1))
    peer_common "$i"
    start_in "${host_ns[i]}" "$rd/r$i.out" "$peer_bin" "$owner_ip:$port_owner" "$port_peer" \
        "${host_ip[next]}:$port_peer" "${PEER_ARGS[@]}"
}
done_ring() { has_complete "$rd/r$1.out"; }

start_join() { start_owner --peers "$hosts"; }
launch_join() {
    peer_common "$1"
    start_in "${host_ns[$1]}" "$rd/r$1.out" "$peer_bin" join "$ticket" --port "$port_peer" "${PEER_ARGS[@]}"
}
done_join() { has_complete "$rd/r$1.out"; }

start_get() { start_owner; }
launch_get() {
    peer_common "$1"
    start_in "${host_ns[$1]}" "$rd/r$1.out" "$peer_bin" get "$ticket" --port "$port_peer" "${PEER_ARGS[@]}"
}
done_get() { has_complete "$rd/r$1.out"; }

start_nginx() {
    mkdir -p "$rd/www" "$rd/nginx/tmp"
    ln -f "$file" "$rd/www/$name" 2>/dev/null || ln -s "$file" "$rd/www/$name"
    write_nginx_conf "$rd/nginx" "$owner_ip:$port_owner" "$rd/www"
    start_in "$owner_ns" "$rd/nginx.out" "$nginx_bin" -p "$rd/nginx" -c "$rd/nginx/nginx.conf"
    local i
    for ((i = 0; i < 500; i++)); do
        [[ -n $(ip netns exec "$owner_ns" ss -Hltn "sport = :$port_owner" 2>/dev/null) ]] && return 0
        sleep 0.02
    done
    RUN_WHY="nginx did not start: $(cat "$rd/nginx.out.err" "$rd/nginx/error.log" 2>/dev/null | tail -n 3 | tr '\n' ' ')"
    return 1
}
declare -A curl_pid
launch_nginx() {
    mkdir -p "$rd/r$1"
    start_in "${host_ns[$1]}" "$rd/r$1.out" curl -sS --fail --max-time "$timeout" \
        -o "$rd/r$1/$name" "http://$owner_ip:$port_owner/$name"
    curl_pid[$1]=$STARTED
}
done_nginx() {
    local pid=${curl_pid[$1]} rc=0
    kill -0 "$pid" 2>/dev/null && return 1
    wait "$pid" || rc=$?
    ((rc == 0)) || RECV_FAILED="curl exited with code $rc: $(head -c 200 "$rd/r$1.out.err")"
    return 0
}

# BitTorrent: the tracker on the owner host, then the seeder (`FUNC 0 ARGS…`), which must
# have announced itself before this returns.
start_tracker_and() {
    start_in "$owner_ns" "$rd/tracker.out" python3 "$helpers/bt.py" tracker --bind "$owner_ip" \
        --port "$TRACKER_PORT" --torrent "$torrent"
    wait_line "$rd/tracker.out" "listening on " "$STARTED" || {
        RUN_WHY="the tracker did not start: $(tail -n 3 "$rd/tracker.out.err" | tr '\n' ' ')"
        return 1
    }
    local tracker=$STARTED i
    mkdir -p "$rd/r0" "$rd/done"
    ln -f "$file" "$rd/r0/$name" 2>/dev/null || cp "$file" "$rd/r0/$name"
    "$1" 0 "${@:2}" # the seeder: host 0
    for ((i = 0; i < 3000; i++)); do
        grep -q "^announce $owner_ip:" "$rd/tracker.out" 2>/dev/null && return 0
        if ! kill -0 "$STARTED" 2>/dev/null || ! kill -0 "$tracker" 2>/dev/null; then break; fi
        sleep 0.02
    done
    RUN_WHY="the seeder did not announce itself: $(tail -n 3 "$rd/r0.out.err" "$rd/r0.out" 2>/dev/null | tr '\n' ' ')"
    return 1
}
# Receiver I's completion time, written by its client (hook, alert or watcher) into done/rI.
done_bt() {
    [[ -s $rd/done/r$1 ]] || return 1
    read -r DONE_AT <"$rd/done/r$1" || DONE_AT=""
    return 0
}

aria2_args() { # I
    ARIA=(--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false
        --disable-ipv6=true --interface="${host_ip[$1]}" --bt-external-ip="${host_ip[$1]}"
        --seed-ratio=0.0 --file-allocation=falloc --summary-interval=0 --console-log-level=notice
        --auto-save-interval=0 --max-overall-upload-limit=0 --max-overall-download-limit=0
        --listen-port="$port_peer" -d "$rd/r$1")
}
seed_aria2() {
    aria2_args 0
    start_in "$owner_ns" "$rd/r0.out" aria2c "${ARIA[@]}" --bt-seed-unverified=true "$torrent"
}
start_aria2() { start_tracker_and seed_aria2; }
launch_aria2() {
    # aria2 runs this hook when every piece is downloaded and checked.
    # shellcheck disable=SC2016 # $EPOCHREALTIME is the hook's
    printf '#!/bin/bash\necho "${EPOCHREALTIME/,/.}" >%q\n' "$rd/done/r$1" >"$rd/r$1.hook"
    chmod +x "$rd/r$1.hook"
    aria2_args "$1"
    start_in "${host_ns[$1]}" "$rd/r$1.out" aria2c "${ARIA[@]}" --on-bt-download-complete="$rd/r$1.hook" "$torrent"
}
done_aria2() { done_bt "$1"; }

lt_client() { # I [--seed | --done FILE]
    local i=$1
    shift
    start_in "${host_ns[i]}" "$rd/r$i.out" "$lt_python" "$helpers/lt_client.py" --torrent "$torrent" \
        --dir "$rd/r$i" --bind "${host_ip[i]}" --port "$port_peer" "$@"
}
start_libtorrent() { start_tracker_and lt_client --seed; }
launch_libtorrent() {
    mkdir -p "$rd/r$1"
    lt_client "$1" --done "$rd/done/r$1"
}
done_libtorrent() { done_bt "$1"; }

rqbit_client() { # I: `rqbit download` (stateless; seeds on after finishing)
    local i=$1
    mkdir -p "$rd/r$i" "$rd/home-$i"
    # rqbit 9.1.0 announces port 4240 unless --announce-port is given (the anchors found this).
    start_in "${host_ns[i]}" "$rd/r$i.out" env HOME="$rd/home-$i" NO_COLOR=1 "$rqbit_bin" -v info \
        --disable-dht --disable-dht-persistence --disable-upnp-port-forward --disable-lsd --ipv4-only \
        --listen-ip "${host_ip[i]}" --bind-device eth0 --listen-port "$port_peer" \
        --announce-port "$port_peer" --http-api-listen-addr "${host_ip[i]}:$port_api" \
        download -o "$rd/r$i" --overwrite "$torrent"
}
start_rqbit() { start_tracker_and rqbit_client; }
launch_rqbit() {
    local i=$1 client
    rqbit_client "$i"
    client=$STARTED
    # A watcher writes the time of rqbit's "torrent finished downloading" line (inotify: tail -F).
    (
        line=$(timeout "$timeout" tail --pid="$client" -n +1 -F "$rd/r$i.out.err" "$rd/r$i.out" 2>/dev/null |
            grep -m1 --line-buffered 'torrent finished downloading') || true
        [[ -n $line ]] || exit 0
        # shellcheck disable=SC2001 # an escape sequence, not a plain substitution
        ts=$(sed 's/\x1b\[[0-9;]*m//g' <<<"$line" | awk '{print $1}')
        date -d "$ts" +%s.%N >"$rd/done/r$i.tmp" 2>/dev/null || echo "${EPOCHREALTIME/,/.}" >"$rd/done/r$i.tmp"
        mv "$rd/done/r$i.tmp" "$rd/done/r$i"
    ) &
    run_pids+=("$!")
}
done_rqbit() { done_bt "$1"; }

# --- one run ----------------------------------------------------------------------------------

results=$work/results.csv     # contender,round,seconds,ratio
per_recv=$work/receivers.csv  # contender,round,receiver,seconds
echo "contender,round,seconds,ratio" >"$results"
echo "contender,round,receiver,seconds" >"$per_recv"
failures=0
run_no=0

# Runs contender C in round R and records it.
run_one() {
    local c=$1 r=$2 i t0 t1 pending alive status="" RECV_FAILED
    rd=$work/runs/$c-r$r
    rm -rf "$rd"
    mkdir -p "$rd"
    run_no=$((run_no + 1))
    # Fresh ports each run: nothing waits on a socket the previous run left in TIME_WAIT.
    local base=$((20000 + (run_no % 200) * 10))
    port_owner=$base port_peer=$((base + 1)) port_api=$((base + 2))
    RUN_WHY=""
    declare -A done_at=()
    sync
    sleep 1
    quiet_gate 60
    if ! "start_$c"; then
        status="failed: ${RUN_WHY:-its server did not start}"
    else
        t0=${EPOCHREALTIME/,/.}
        printf 't0=%s\nowner_rate_bits=%s\nowner_ip=%s\n' "$t0" "$rate_bits" "$owner_ip" >"$rd/clock.txt"
        declare -A pid_of=()
        for ((i = 1; i <= hosts; i++)); do
            "launch_$c" "$i"
            pid_of[$i]=$STARTED
        done
        pending=$hosts
        local deadline=$((SECONDS + timeout))
        while ((pending > 0)); do
            for ((i = 1; i <= hosts; i++)); do
                [[ -z ${done_at[$i]:-} ]] || continue
                DONE_AT="" RECV_FAILED=""
                alive=1
                kill -0 "${pid_of[$i]}" 2>/dev/null || alive=0
                if "done_$c" "$i"; then
                    [[ -z $RECV_FAILED ]] || {
                        status="failed: receiver $i: $RECV_FAILED"
                        break 2
                    }
                    done_at[$i]=${DONE_AT:-${EPOCHREALTIME/,/.}}
                    pending=$((pending - 1))
                elif ((!alive)); then
                    status="failed: receiver $i exited before completing: $(tail -n 2 "$rd/r$i.out.err" 2>/dev/null | tr '\n' ' ')"
                    break 2
                fi
            done
            ((pending > 0)) || break
            if ((SECONDS >= deadline)); then
                status="failed: timed out after ${timeout}s with $pending receivers unfinished"
                break
            fi
            sleep 0.01
        done
    fi
    stop_run
    t1=0
    if [[ -z $status ]]; then
        for ((i = 1; i <= hosts; i++)); do
            if ! cmp -s "$file" "$rd/r$i/$name"; then
                status="failed: receiver $i's copy differs from the source"
                break
            fi
            local s
            s=$(awk -v a="$t0" -v b="${done_at[$i]}" 'BEGIN {printf "%.3f", b - a}')
            echo "$c,$r,$i,$s" >>"$per_recv"
            echo "done_r$i=${done_at[$i]}" >>"$rd/clock.txt"
            t1=$(awk -v a="$t1" -v b="$s" 'BEGIN {print (b > a ? b : a)}')
        done
    fi
    if [[ -n $status ]]; then
        failures=$((failures + 1))
        echo "$c,$r,failed," >>"$results"
        log "$(printf '%-10s round %d: %s' "$c" "$r" "$status")"
        ((keep)) || log "  (run again with --keep to inspect its logs)"
    else
        local ratio
        ratio=$(awk -v s="$t1" -v b="$bound" 'BEGIN {printf "%.3f", s / b}')
        echo "$c,$r,$t1,$ratio" >>"$results"
        log "$(printf '%-10s round %d: %7.3fs  %5.2f× the bound' "$c" "$r" "$t1" "$ratio")"
    fi
    # The copies go at once (big); with --keep the logs and event files stay.
    for ((i = 0; i <= hosts; i++)); do rm -f "$rd/r$i/$name"; done
    ((keep)) || rm -rf "$rd"
}

# --- rounds -----------------------------------------------------------------------------------

load_before=$(cut -d' ' -f1 /proc/loadavg)
log "$rounds rounds of: ${running[*]}"
for ((r = 1; r <= rounds; r++)); do
    n=${#running[@]}
    for ((k = 0; k < n; k++)); do
        run_one "${running[(k + r - 1) % n]}" "$r"
    done
done

# --- report -----------------------------------------------------------------------------------

median() {
    sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

subtitle="$(human_size "$size"), $hosts receivers, $shaping; fluid bound $(printf '%.2f' "$bound") s"
{
    echo "file: $(human_size "$size") ($size bytes); $hosts receivers; $shaping; $rounds rounds"
    echo "fluid bound T* = max(F/u_s, N·F/(u_s + Σu_i)) = $(printf '%.3f' "$bound") s" \
        "(u_s = $(rate_text "$rate_bits"), Σu_i = $(rate_text "$sum_up"))"
    printf '%-11s %9s %9s %9s %5s %8s\n' CONTENDER MEDIAN MIN MAX RUNS RATIO
    for c in "${running[@]}"; do
        times=$(awk -F, -v c="$c" '$1 == c && $3 != "failed" {print $3}' "$results")
        failed=$(awk -F, -v c="$c" '$1 == c && $3 == "failed"' "$results" | wc -l)
        runs=$(grep -c . <<<"$times" || true)
        ((failed == 0)) || runs+="+${failed}f"
        if [[ -z $times ]]; then
            printf '%-11s %9s %9s %9s %5s %8s\n' "$c" - - - "$runs" -
            continue
        fi
        med=$(median <<<"$times")
        printf '%-11s %8.2fs %8.2fs %8.2fs %5s %7.2f×\n' "$c" "$med" "$(sort -g <<<"$times" | head -1)" \
            "$(sort -g <<<"$times" | tail -1)" "$runs" "$(awk -v m="$med" -v b="$bound" 'BEGIN {print m / b}')"
    done
    echo "machine: $ncpu cores; load average $load_before before the rounds, $(cut -d' ' -f1 /proc/loadavg) after"
    echo "(RATIO: the median over the fluid bound; +Nf: N failed runs, left out. TCP/IP headers alone"
    echo " make a perfect transfer 1.046× the bound: 1448 payload bytes per 1514-byte frame.)"
} | tee "$work/table.txt"
cp "$results" "$per_recv" "$work/table.txt" "$out/"
if python3 "$helpers/chart.py" "$out/results.csv" "$out/chart.svg" --bound "$bound" --subtitle "$subtitle"; then
    echo "wrote $out/results.csv, receivers.csv, table.txt and chart.svg"
else
    echo "wrote $out/results.csv, receivers.csv and table.txt (chart.py failed)"
fi
((failures == 0)) || exit 1
