#!/usr/bin/env bash
# bench.sh — one file, one source, five receivers on loopback: the ringswarm ring against
# naive fan-out (nginx + 5 curl) and one `cat` of the file, alternating, N rounds, medians.
#
# Usage: scripts/bench.sh [OPTIONS] [SIZE | FILE]
#
# SIZE (default 256MiB; e.g. 64MiB, 1GiB, 300M, 1048576) makes a file of random bytes in the
# work folder; FILE uses an existing file. Each round runs every contender once, in an order
# that rotates from round to round, so a slow period of this shared machine hits them alike:
#
#   ring         file-owner + 5 peer processes (default store: one part file per peer); the
#                clock runs from launching the peers (owner already listening, file hashed)
#                until the last peer exits, its file verified
#   chunk-files  the same with --chunk-files
#   durable      the ring with the peers' default durable store (no --no-sync): chunks and
#                summaries synced to disk before they are relied on; each peer's log says how
#                much of its sync time fell after its last chunk arrived (median reported)
#   disk         the disk alone writing and syncing the same bytes: as many `dd bs=1M
#                conv=fdatasync` copies of FILE as receivers, in parallel; the clock runs from
#                launching them until the last exits (its copy synced)
#   get          file-owner + GETTERS `peer get` processes (multi-source, rarest first); the
#                clock runs from launching them until the last has printed `complete:` (file
#                verified); then they are stopped (they would serve on until Ctrl+C)
#   nginx        nginx (sendfile on) serving FILE; 5 concurrent `curl -s -o` into 5 files;
#                the clock runs from launching the curls (nginx listening) until the last exits
#   cat          one `cat FILE > copy`: the floor for writing one copy
#
# First, untimed: the source is read into the page cache, and as many copies as a run makes
# are written and deleted (fresh VM memory made the first run up to 1.9× slower).
# Peers and getters run with --no-sync (but in `durable`): like curl and cat, they leave
# write-back to the kernel (by default a peer syncs chunks, summaries and the finished file
# before relying on them). `durable`, `ring` and `disk` in one run give durability's cost:
# the summary prints durable / max(ring, disk).
# Before every run: `sync` (write-back left by the previous run would otherwise slow the next
# by up to 70%), then wait until the machine is quiet (under QUIET_PCT % busy for 1 s, for at
# most QUIET_MAX s). The source file stays in the page cache. Every process runs under
# `/usr/bin/time -v`, which gives each one's peak RSS and CPU time. Every copy is compared with
# FILE (cmp) after the clock stops; a run whose copies differ fails the script.
#
# The runs happen in a private network namespace with only `lo` (unshare -n, as in
# ../shared/bench-anchors), so no other program's ports or traffic interfere and nothing can
# leave the machine. There, CPU used meanwhile by processes outside the namespace is counted
# ("foreign CPU"); a run with more than max(0.05 s, 2 % × (wall + 0.1 s) × cores) is marked
# noisy, left out of the medians and repeated (at most 3 attempts per contender and round).
#
# Options:
#   --rounds N         rounds (default 3)
#   --only LIST        contenders to run, comma-separated (default ring,chunk-files,nginx,cat)
#   --peers N          receivers: ring peers and curl downloads (default 5)
#   --getters N        downloaders of the get contender (default 4, as in issue 4)
#   --timeout SECS     limit for one run (default 600)
#   --csv FILE         also append one row per run to FILE
#   --no-netns         run in this network namespace on free 127.0.0.1 ports (no noise check)
#   --keep             keep the work folder (logs, /usr/bin/time reports)
#   -h, --help         show this help
#
# Environment:
#   RINGSWARM_BIN_DIR  folder holding `file-owner` and `peer`; when set, nothing is built.
#                      Otherwise `cargo build --release --bins` runs in the repository root.
#   TMPDIR             where the work folder goes (default /tmp): the file, copies, peer dirs
#   QUIET_PCT          quiet threshold, percent busy of the whole machine (default 10)
#   QUIET_MAX          longest wait for quiet, seconds (default 120; then it measures anyway)
#
# Needs: bash, /usr/bin/time (Debian `time`), curl, cmp, and nginx, which it installs with
# apt-get (nginx-light) when it is missing and it runs as root; `.ci/run` never runs this.
# Exit status: 0 every run verified; 1 a run failed or timed out; 2 bad usage; 130 interrupted.

set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"
}

die_usage() {
    echo "bench.sh: $*" >&2
    echo "Try 'scripts/bench.sh --help'." >&2
    exit 2
}

die() {
    echo "bench.sh: error: $*" >&2
    exit 1
}

log() {
    printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

# --- options ----------------------------------------------------------------------------------

rounds=3
only=ring,chunk-files,nginx,cat
peers=5
getters=4
timeout=600
csv=""
netns=1
keep=0
target=256MiB
original_args=("$@")

while [[ $# -gt 0 ]]; do
    case $1 in
    -h | --help)
        usage
        exit 0
        ;;
    --rounds | --only | --peers | --getters | --timeout | --csv)
        need_value "$@"
        case $1 in
        --rounds) rounds=$2 ;;
        --getters) getters=$2 ;;
        --only) only=$2 ;;
        --peers) peers=$2 ;;
        --timeout) timeout=$2 ;;
        --csv) csv=$2 ;;
        esac
        shift 2
        ;;
    --rounds=*) rounds=${1#*=} && shift ;;
    --only=*) only=${1#*=} && shift ;;
    --peers=*) peers=${1#*=} && shift ;;
    --getters=*) getters=${1#*=} && shift ;;
    --timeout=*) timeout=${1#*=} && shift ;;
    --csv=*) csv=${1#*=} && shift ;;
    --no-netns) netns=0 && shift ;;
    --keep) keep=1 && shift ;;
    -*) die_usage "unknown option $1" ;;
    *)
        [[ $target == 256MiB || $target == "$1" ]] || die_usage "at most one SIZE or FILE"
        target=$1
        shift
        ;;
    esac
done

[[ $rounds =~ ^[1-9][0-9]{0,2}$ ]] || die_usage "--rounds must be a number from 1 to 999, not '$rounds'"
[[ $peers =~ ^[1-9][0-9]?$ ]] || die_usage "--peers must be a number from 1 to 99, not '$peers'"
[[ $getters =~ ^[1-9][0-9]?$ ]] || die_usage "--getters must be a number from 1 to 99, not '$getters'"
[[ $timeout =~ ^[1-9][0-9]{0,5}$ ]] || die_usage "--timeout must be a whole number of seconds, not '$timeout'"
contenders=()
IFS=, read -r -a wanted <<<"$only"
for c in "${wanted[@]}"; do
    case $c in
    ring | chunk-files | durable | disk | get | nginx | cat) contenders+=("$c") ;;
    *) die_usage "unknown contender '$c' (ring, chunk-files, durable, disk, get, nginx, cat)" ;;
    esac
done
((${#contenders[@]} > 0)) || die_usage "--only names no contender"
if [[ -n $csv && $csv != /* ]]; then csv=$PWD/$csv; fi

# "256MiB" → 268435456; empty when $1 is not a size.
parse_size() {
    local s=${1,,}
    [[ $s =~ ^([0-9]+)(b|k|kb|kib|m|mb|mib|g|gb|gib)?$ ]] || return 0
    local n=${BASH_REMATCH[1]} u=${BASH_REMATCH[2]}
    case $u in
    "" | b) echo "$n" ;;
    k | kb | kib) echo $((n * 1024)) ;;
    m | mb | mib) echo $((n * 1024 * 1024)) ;;
    g | gb | gib) echo $((n * 1024 * 1024 * 1024)) ;;
    esac
}

file=""
gen_size=""
if [[ -f $target ]]; then
    [[ -r $target ]] || die "$target is not readable"
    file=$(cd "$(dirname "$target")" && pwd)/$(basename "$target")
else
    gen_size=$(parse_size "$target")
    [[ -n $gen_size ]] || die_usage "'$target' is neither a file nor a size like 256MiB"
    ((gen_size >= 5)) || die_usage "size must be at least 5 bytes"
fi

root=$(cd "$(dirname "$0")/.." && pwd)

# --- prerequisites (before entering the namespace: apt needs the network) ---------------------

if [[ ${BENCH_IN_NETNS:-0} != 1 ]]; then
    [[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (Debian package 'time')"
    command -v curl >/dev/null || die "curl is missing"
    command -v cmp >/dev/null || die "cmp is missing (Debian package 'diffutils')"
    if [[ " ${contenders[*]} " == *" nginx "* ]] && ! command -v nginx >/dev/null &&
        [[ ! -x /usr/sbin/nginx ]]; then
        ((EUID == 0)) || die "nginx is missing; install nginx-light (or run as root to let this script do it)"
        log "installing nginx-light with apt-get"
        timeout 600 apt-get update -qq >/dev/null ||
            die "apt-get update failed"
        # Debian's package would start a system nginx on port 80 where services may run: stop it.
        timeout 900 env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null ||
            die "apt-get install nginx-light failed"
        if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
            systemctl stop nginx || true
        fi
    fi
    if [[ -n ${RINGSWARM_BIN_DIR:-} ]]; then
        bin_dir=$RINGSWARM_BIN_DIR
    elif [[ " ${contenders[*]} " =~ " "(ring|chunk-files|durable|get)" " ]]; then
        log "building (release)"
        (cd "$root" && cargo build --release --bins --quiet) || die "cargo build failed"
        bin_dir=$(target_bin_dir "$root" release)
    else
        bin_dir=""
    fi
    export BENCH_BIN_DIR=$bin_dir
    # Re-run this script in a private network namespace that has only `lo`.
    if ((netns)); then
        if ((EUID == 0)) && command -v unshare >/dev/null && command -v ip >/dev/null &&
            unshare -n true 2>/dev/null; then
            exec unshare -n env BENCH_IN_NETNS=1 bash "$0" "${original_args[@]}"
        fi
        log "cannot create a network namespace (needs root, unshare and ip); using this one"
        netns=0
    fi
fi
bin_dir=${BENCH_BIN_DIR:-}
if [[ ${BENCH_IN_NETNS:-0} == 1 ]]; then
    ip link set lo up || die "cannot bring up lo in the private network namespace"
fi
owner_bin=$bin_dir/file-owner
peer_bin=$bin_dir/peer
if [[ " ${contenders[*]} " =~ " "(ring|chunk-files|durable|get)" " ]]; then
    for b in "$owner_bin" "$peer_bin"; do
        [[ -x $b ]] || die "no executable $b (set RINGSWARM_BIN_DIR, or unset it to build)"
    done
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
ncpu=$(nproc)
clk_tck=$(getconf CLK_TCK)

# --- cleanup ----------------------------------------------------------------------------------

pids=() # every process started here that may still run: wrappers and the programs they run
work=""
cleaning=0
interrupted=0

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local status=$?
    if ((cleaning)); then return; fi
    cleaning=1
    trap '' INT TERM
    stop_pids "${pids[@]}"
    finish_cleanup "$status" stderr
}

# shellcheck disable=SC2317 # called by the INT and TERM traps
on_signal() {
    interrupted=1
    echo >&2
    log "interrupted; stopping everything started here"
    exit 130
}


trap cleanup EXIT
trap on_signal INT TERM

# --- helpers ----------------------------------------------------------------------------------

# Seconds since the epoch with microseconds.
now() { echo "${EPOCHREALTIME/,/.}"; }

# Sets CHILD to the PID of the program a `/usr/bin/time` wrapper runs (its only child), or to
# the wrapper's own PID if it has none (yet). No subshell: it runs inside timed windows.
child_of() {
    local i c
    CHILD=$1
    for ((i = 0; i < 250; i++)); do
        c=""
        read -r c _ <"/proc/$1/task/$1/children" 2>/dev/null || true
        if [[ -n $c ]]; then
            CHILD=$c
            return
        fi
        kill -0 "$1" 2>/dev/null || return
        sleep 0.01
    done
}

# Starts `/usr/bin/time -v -o TIMEFILE CMD…` with stdout to OUT and stderr to ERR; sets
# STARTED_WRAPPER and (with `--child`) STARTED_PID, the program's own PID.
start_timed() {
    local want_child=0
    if [[ $1 == --child ]]; then
        want_child=1
        shift
    fi
    local tf=$1 out=$2 err=$3
    shift 3
    /usr/bin/time -v -o "$tf" "$@" >"$out" 2>"$err" </dev/null &
    STARTED_WRAPPER=$!
    pids+=("$STARTED_WRAPPER")
    STARTED_PID=$STARTED_WRAPPER
    if ((want_child)); then
        child_of "$STARTED_WRAPPER"
        STARTED_PID=$CHILD
        pids+=("$STARTED_PID")
    fi
}

# A field of a `/usr/bin/time -v` report: peak RSS in KiB, CPU seconds (user + system).
time_rss_kb() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1" 2>/dev/null || true; }
# add_cpu TIMEFILE adds its user and system CPU seconds to CPU_USER and CPU_SYS.
add_cpu() {
    local u s
    read -r u s < <(awk -F': ' '/User time/ {u = $2} /System time/ {s = $2} END {print u + 0, s + 0}' "$1" 2>/dev/null || echo "0 0")
    CPU_USER=$(awk -v a="$CPU_USER" -v b="$u" 'BEGIN {printf "%.2f", a + b}')
    CPU_SYS=$(awk -v a="$CPU_SYS" -v b="$s" 'BEGIN {printf "%.2f", a + b}')
}

# Sets RUN_CPU (user + system) and RUN_SYS from CPU_USER and CPU_SYS.
set_run_cpu() {
    RUN_CPU=$(awk -v a="$CPU_USER" -v b="$CPU_SYS" 'BEGIN {printf "%.2f", a + b}')
    RUN_SYS=$CPU_SYS
}

# Starts a watchdog that sends SIGTERM to the PIDs given after --timeout seconds.
watchdog() {
    (
        trap 'kill "$s" 2>/dev/null; exit 0' TERM
        sleep "$timeout" &
        s=$!
        wait "$s"
        echo "bench.sh: run timed out after ${timeout}s" >&2
        kill -TERM "$@" 2>/dev/null
    ) &
    WATCHDOG=$!
    pids+=("$WATCHDOG")
}

stop_watchdog() {
    kill -TERM "$WATCHDOG" 2>/dev/null || true
    wait "$WATCHDOG" 2>/dev/null || true
}

# Waits until LINE starts a line of FILE, while PID lives; fails after $timeout seconds.
wait_line() {
    local file=$1 line=$2 pid=$3 i
    for ((i = 0; i < timeout * 50; i++)); do
        if grep -q "^$line" "$file" 2>/dev/null; then return 0; fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.02
    done
    return 1
}

# Waits until something listens on 127.0.0.1:PORT (ss, so no probe connection is made).
wait_port() {
    local i
    for ((i = 0; i < 500; i++)); do
        if [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; then return 0; fi
        sleep 0.02
    done
    return 1
}

# A TCP port from $1 upwards that nothing listens on and that is not in $used.
used=" "
# Sets PORT to the first port from $1 on that no socket uses (TIME_WAIT included) and that
# this run has not taken yet. Not meant for $(...): the subshell would forget `used`.
free_port() {
    local p=$1
    while [[ -n $(ss -Htan "sport = :$p" 2>/dev/null) || $used == *" $p "* ]]; do
        p=$((p + 1))
    done
    used+="$p "
    PORT=$p
}

settle() {
    sync
    sleep 1
    quiet_gate 120
}

# CPU ticks used so far by user processes outside this network namespace, as "pid:start ticks"
# lines (kernel threads left out, so write-back of our own data does not count).
foreign_snapshot() {
    ((netns)) || return 0
    local p st rest f
    for p in /proc/[0-9]*; do
        # -ef compares the namespaces' inodes: no readlink process per PID.
        [[ -e $p/ns/net && ! $p/ns/net -ef /proc/self/ns/net ]] || continue
        st=""
        read -r st <"$p/stat" 2>/dev/null || continue
        rest=${st##*) }
        read -r -a f <<<"$rest"
        # f[1] ppid, f[6] flags (PF_KTHREAD 0x00200000), f[11] utime, f[12] stime, f[19] start
        ((f[1] == 2 || (f[6] & 0x00200000))) && continue
        echo "${p#/proc/}:${f[19]} $((f[11] + f[12]))"
    done
}

# CPU seconds used by foreign processes between two snapshots (files).
foreign_cpu() {
    ((netns)) || {
        echo "-"
        return
    }
    awk -v t="$clk_tck" 'NR == FNR {before[$1] = $2; next} {d += $2 - before[$1]} END {printf "%.2f", (d > 0 ? d : 0) / t}' "$1" "$2"
}

# 1 when a run of WALL seconds with FOREIGN CPU seconds beside it counts as noisy.
is_noisy() {
    [[ $2 == - ]] && {
        echo 0
        return
    }
    awk -v f="$2" -v s="$1" -v n="$ncpu" 'BEGIN {th = 0.02 * (s + 0.1) * n; if (th < 0.05) th = 0.05; print (f > th) ? 1 : 0}'
}

# Checks every copy against the source; prints "ok" or the names of the bad ones.
verify_copies() {
    local bad="" f
    for f in "$@"; do
        cmp -s "$file" "$f" || bad+=" ${f#"$work"/}"
    done
    if [[ -z $bad ]]; then echo ok; else echo "BAD:$bad"; fi
}

median() {
    sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

# --- work folder and file ---------------------------------------------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/ringswarm-bench.XXXXXX")
# The owner keeps its node key in the work folder, not in the user's config folder.
export XDG_CONFIG_HOME=$work/config
chmod 755 "$work" # nginx's workers run as nobody
if [[ -z $file ]]; then
    file=$work/src-$target.bin
    log "creating $file ($(human_size "$gen_size") of random bytes)"
    head -c "$gen_size" /dev/urandom >"$file"
fi
size=$(stat -c %s "$file")
name=$(basename "$file")
cat "$file" >/dev/null # every contender starts with the source in the page cache
# Warm-up, not timed: write as many copies as a run writes, and delete them. On this VM the
# first run that needs memory the guest has not touched since boot took up to 1.9× as long
# (twice the CPU time), whichever contender it was.
log "warm-up: writing and deleting $((peers + 1)) copies"
mkdir -p "$work/warm"
for ((i = 0; i <= peers; i++)); do cat "$file" >"$work/warm/$i"; done
rm -rf "$work/warm"

results=$work/results.txt # contender round attempt seconds noisy foreign_cpu cpu_s rss_list verify sys_s sync_tail_s
: >"$results"
if [[ -n $csv && ! -s $csv ]]; then
    echo "contender,size_bytes,round,attempt,seconds,noisy,foreign_cpu_s,cpu_s,sys_cpu_s,peak_rss_kib,verify" >"$csv"
fi

# Records one run: CONTENDER ROUND ATTEMPT SECONDS FOREIGN CPU RSS_LIST VERIFY SYS.
record() {
    local noisy
    noisy=$(is_noisy "$4" "$5")
    echo "$1 $2 $3 $4 $noisy $5 $6 $7 $8 $9 ${RUN_TAIL:--}" >>"$results"
    if [[ -n $csv ]]; then
        echo "$1,$size,$2,$3,$4,$noisy,$5,$6,$9,${7//,/ },$8" >>"$csv"
    fi
    LAST_NOISY=$noisy
    local mark=""
    if ((noisy)); then mark=" NOISY"; fi
    log "$(printf '%-11s round %d.%d: %7.3fs  cpu %5ss (sys %5ss)  foreign cpu %5ss%s  rss KiB %s  %s' \
        "$1" "$2" "$3" "$4" "$6" "$9" "$5" "$mark" "$7" "$8")"
}

# --- contenders -------------------------------------------------------------------------------

# Each sets RUN_SECS, RUN_CPU and RUN_SYS (CPU seconds of its processes: all, system), RUN_RSS (peak RSS, KiB, one
# per process, comma-separated; for the ring: owner first, then peers in port order) and
# RUN_VERIFY, and returns non-zero on a failure.

run_ring() {
    local layout=$1 dir=$work/run
    rm -rf "$dir"
    mkdir -p "$dir"
    local extra=(--no-sync)
    [[ $layout == chunk-files ]] && extra+=(--chunk-files)
    [[ $layout == durable ]] && extra=()
    used=" "
    local owner_port
    free_port 5000
    owner_port=$PORT
    local ports=() i
    for ((i = 0; i < peers; i++)); do
        free_port $((5001 + i))
        ports+=("$PORT")
    done

    start_timed --child "$dir/owner.time" "$dir/owner.out" "$dir/owner.err" \
        "$owner_bin" "$owner_port" "$file" --bind 127.0.0.1 --peers "$peers"
    local owner_wrapper=$STARTED_WRAPPER owner_pid=$STARTED_PID
    if ! wait_line "$dir/owner.out" "listening on " "$owner_pid"; then
        log "the file owner did not start:"
        tail -n 20 "$dir/owner.err" >&2
        return 1
    fi

    local wrappers=() t0 t1
    snap0=$(foreign_snapshot)
    t0=$(now)
    for ((i = 0; i < peers; i++)); do
        local port=${ports[i]} next=${ports[(i + 1) % peers]}
        start_timed "$dir/peer-$port.time" "$dir/peer-$port.out" "$dir/peer-$port.err" \
            "$peer_bin" "$owner_port" "$port" "$next" --bind 127.0.0.1 \
            --dir "$dir/peer-$port" "${extra[@]}"
        wrappers+=("$STARTED_WRAPPER")
    done
    # The peers' own PIDs, to stop them on a timeout or Ctrl+C (the wrappers would not).
    local peer_pids=()
    for w in "${wrappers[@]}"; do
        child_of "$w"
        peer_pids+=("$CHILD")
        pids+=("$CHILD")
    done
    watchdog "${peer_pids[@]}"
    local failed=0
    for w in "${wrappers[@]}"; do
        wait "$w" || failed=1
    done
    t1=$(now)
    foreign_after=$(foreign_snapshot)
    stop_watchdog
    stop_pids "$owner_pid"
    wait "$owner_wrapper" 2>/dev/null || true

    RUN_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
    RUN_FOREIGN=$(foreign_cpu <(echo "$snap0") <(echo "$foreign_after"))
    local rss tf
    CPU_USER=0 CPU_SYS=0
    add_cpu "$dir/owner.time"
    rss=$(time_rss_kb "$dir/owner.time")
    local outs=()
    for port in "${ports[@]}"; do
        tf=$dir/peer-$port.time
        add_cpu "$tf"
        rss+=",$(time_rss_kb "$tf")"
        outs+=("$dir/peer-$port/$name")
    done
    set_run_cpu
    RUN_RSS=$rss
    RUN_VERIFY=$(verify_copies "${outs[@]}")
    if [[ $layout == durable ]]; then
        # Each peer's "…s of it after the last chunk arrived": the largest of them.
        RUN_TAIL=$(cat "$dir"/peer-*.err 2>/dev/null |
            sed -n 's/.* \([0-9.]*\) s of it after the last chunk arrived.*/\1/p' |
            sort -g | tail -n 1)
    fi
    if ((failed)) || [[ $RUN_VERIFY != ok ]]; then
        log "ring ($layout) failed: $RUN_VERIFY"
        for port in "${ports[@]}"; do
            echo "--- peer $port: $(grep -m1 'Exit status' "$dir/peer-$port.time" || true)" >&2
            tail -n 5 "$dir/peer-$port.err" >&2 || true
        done
        return 1
    fi
    rm -rf "$dir"
}

# Sets DONE when every file named in "$@" has a line starting with `complete: ` (bash
# builtins only: this polls inside the timed window).
all_complete() {
    local f line
    DONE=1
    for f in "$@"; do
        local found=0
        if [[ -e $f ]]; then
            while IFS= read -r line; do
                if [[ $line == "complete: "* ]]; then
                    found=1
                    break
                fi
            done <"$f"
        fi
        if ((!found)); then
            DONE=0
            return
        fi
    done
}

run_get() {
    local dir=$work/run
    rm -rf "$dir"
    mkdir -p "$dir"
    used=" "
    free_port 5000
    local owner_port=$PORT
    start_timed --child "$dir/owner.time" "$dir/owner.out" "$dir/owner.err" \
        "$owner_bin" "$owner_port" "$file" --bind 127.0.0.1
    local owner_wrapper=$STARTED_WRAPPER owner_pid=$STARTED_PID
    if ! wait_line "$dir/owner.out" "listening on " "$owner_pid"; then
        log "the file owner did not start:"
        tail -n 20 "$dir/owner.err" >&2
        return 1
    fi
    local wrappers=() gpids=() outs=() i t0 t1
    snap0=$(foreign_snapshot)
    t0=$(now)
    for ((i = 1; i <= getters; i++)); do
        mkdir -p "$dir/get-$i"
        start_timed --child "$dir/get-$i.time" "$dir/get-$i.out" "$dir/get-$i.err" \
            "$peer_bin" get "$owner_port" "$name" --port 0 --bind 127.0.0.1 --no-sync --dir "$dir/get-$i"
        wrappers+=("$STARTED_WRAPPER")
        gpids+=("$STARTED_PID")
        outs+=("$dir/get-$i.out")
    done
    watchdog "${gpids[@]}"
    local failed=0 alive p
    while :; do
        all_complete "${outs[@]}"
        ((DONE)) && break
        alive=0
        for p in "${gpids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        if ((!alive)); then
            failed=1
            break
        fi
        sleep 0.01
    done
    t1=$(now)
    foreign_after=$(foreign_snapshot)
    stop_watchdog
    stop_pids "${gpids[@]}"
    for w in "${wrappers[@]}"; do wait "$w" 2>/dev/null || true; done
    stop_pids "$owner_pid"
    wait "$owner_wrapper" 2>/dev/null || true

    RUN_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
    RUN_FOREIGN=$(foreign_cpu <(echo "$snap0") <(echo "$foreign_after"))
    CPU_USER=0 CPU_SYS=0
    add_cpu "$dir/owner.time"
    local rss copies=()
    rss=$(time_rss_kb "$dir/owner.time")
    for ((i = 1; i <= getters; i++)); do
        add_cpu "$dir/get-$i.time"
        rss+=",$(time_rss_kb "$dir/get-$i.time")"
        copies+=("$dir/get-$i/$name")
    done
    set_run_cpu
    RUN_RSS=$rss
    RUN_VERIFY=$(verify_copies "${copies[@]}")
    if ((failed)) || [[ $RUN_VERIFY != ok ]]; then
        log "get failed: $RUN_VERIFY"
        for ((i = 1; i <= getters; i++)); do
            echo "--- getter $i:" >&2
            tail -n 5 "$dir/get-$i.err" >&2 || true
        done
        return 1
    fi
    rm -rf "$dir"
}

run_nginx() {
    local dir=$work/run
    rm -rf "$dir"
    mkdir -p "$dir/www" "$dir/nginx/tmp" "$dir/dl"
    ln -f "$file" "$dir/www/$name" 2>/dev/null || ln -s "$file" "$dir/www/$name"
    used=" "
    free_port 8080
    local port=$PORT
    write_nginx_conf "$dir/nginx" "127.0.0.1:$port" "$dir/www"
    start_timed --child "$dir/nginx.time" "$dir/nginx/stdout.log" "$dir/nginx/stderr.log" \
        "$nginx_bin" -p "$dir/nginx" -c "$dir/nginx/nginx.conf"
    local nginx_wrapper=$STARTED_WRAPPER nginx_pid=$STARTED_PID
    if ! wait_port "$port"; then
        log "nginx did not start:"
        cat "$dir/nginx/stderr.log" "$dir/nginx/error.log" >&2 2>/dev/null || true
        return 1
    fi
    local wrappers=() t0 t1 i
    snap0=$(foreign_snapshot)
    t0=$(now)
    for ((i = 1; i <= peers; i++)); do
        start_timed "$dir/curl-$i.time" /dev/null "$dir/curl-$i.err" \
            curl -sS --fail --max-time "$timeout" -o "$dir/dl/recv$i.bin" "http://127.0.0.1:$port/$name"
        wrappers+=("$STARTED_WRAPPER")
    done
    local failed=0 w
    for w in "${wrappers[@]}"; do
        wait "$w" || failed=1
    done
    t1=$(now)
    foreign_after=$(foreign_snapshot)
    # nginx's peak RSS: the master's and its workers' (VmHWM), read before it stops.
    local server_rss=0 p hwm
    CPU_USER=0 CPU_SYS=0
    for p in $nginx_pid $(cat "/proc/$nginx_pid/task/$nginx_pid/children" 2>/dev/null || true); do
        hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        server_rss=$((server_rss > hwm ? server_rss : hwm))
        read -r CPU_USER CPU_SYS < <(awk -v u="$CPU_USER" -v s="$CPU_SYS" -v t="$clk_tck" \
            '{printf "%.2f %.2f\n", u + $14 / t, s + $15 / t}' "/proc/$p/stat" 2>/dev/null ||
            echo "$CPU_USER $CPU_SYS")
    done
    stop_pids "$nginx_pid"
    wait "$nginx_wrapper" 2>/dev/null || true

    RUN_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
    RUN_FOREIGN=$(foreign_cpu <(echo "$snap0") <(echo "$foreign_after"))
    local rss=$server_rss outs=()
    for ((i = 1; i <= peers; i++)); do
        add_cpu "$dir/curl-$i.time"
        rss+=",$(time_rss_kb "$dir/curl-$i.time")"
        outs+=("$dir/dl/recv$i.bin")
    done
    set_run_cpu
    RUN_RSS=$rss
    RUN_VERIFY=$(verify_copies "${outs[@]}")
    if ((failed)) || [[ $RUN_VERIFY != ok ]]; then
        log "nginx fan-out failed: $RUN_VERIFY"
        cat "$dir"/curl-*.err >&2 || true
        return 1
    fi
    rm -rf "$dir"
}

run_cat() {
    local dir=$work/run t0 t1
    rm -rf "$dir"
    mkdir -p "$dir"
    snap0=$(foreign_snapshot)
    t0=$(now)
    /usr/bin/time -v -o "$dir/cat.time" cat "$file" >"$dir/copy"
    t1=$(now)
    foreign_after=$(foreign_snapshot)
    RUN_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
    RUN_FOREIGN=$(foreign_cpu <(echo "$snap0") <(echo "$foreign_after"))
    CPU_USER=0 CPU_SYS=0
    add_cpu "$dir/cat.time"
    set_run_cpu
    RUN_RSS=$(time_rss_kb "$dir/cat.time")
    RUN_VERIFY=$(verify_copies "$dir/copy")
    [[ $RUN_VERIFY == ok ]] || return 1
    rm -rf "$dir"
}

# As many writers as receivers, each copying FILE with `dd … conv=fdatasync` (the copy synced
# before dd exits), all at once: what the disk takes to write and sync the bytes a ring writes.
run_disk() {
    local dir=$work/run t0 t1 i wrappers=() outs=() failed=0 w
    rm -rf "$dir"
    mkdir -p "$dir"
    snap0=$(foreign_snapshot)
    t0=$(now)
    for ((i = 1; i <= peers; i++)); do
        start_timed "$dir/dd-$i.time" /dev/null "$dir/dd-$i.err" \
            dd if="$file" of="$dir/copy-$i" bs=1M conv=fdatasync status=none
        wrappers+=("$STARTED_WRAPPER")
        outs+=("$dir/copy-$i")
    done
    for w in "${wrappers[@]}"; do
        wait "$w" || failed=1
    done
    t1=$(now)
    foreign_after=$(foreign_snapshot)
    RUN_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
    RUN_FOREIGN=$(foreign_cpu <(echo "$snap0") <(echo "$foreign_after"))
    CPU_USER=0 CPU_SYS=0
    local rss=""
    for ((i = 1; i <= peers; i++)); do
        add_cpu "$dir/dd-$i.time"
        rss+="${rss:+,}$(time_rss_kb "$dir/dd-$i.time")"
    done
    set_run_cpu
    RUN_RSS=$rss
    RUN_VERIFY=$(verify_copies "${outs[@]}")
    if ((failed)) || [[ $RUN_VERIFY != ok ]]; then
        log "disk failed: $RUN_VERIFY"
        cat "$dir"/dd-*.err >&2 || true
        return 1
    fi
    rm -rf "$dir"
}

run_contender() {
    case $1 in
    ring) run_ring part-file ;;
    chunk-files) run_ring chunk-files ;;
    durable) run_ring durable ;;
    disk) run_disk ;;
    get) run_get ;;
    nginx) run_nginx ;;
    cat) run_cat ;;
    esac
}

# --- rounds -----------------------------------------------------------------------------------

log "file $file ($(human_size "$size")), $rounds rounds of: ${contenders[*]}; $peers receivers;" \
    "$( ((netns)) && echo 'private network namespace' || echo 'host network namespace')"
for ((r = 1; r <= rounds; r++)); do
    n=${#contenders[@]}
    for ((k = 0; k < n; k++)); do
        c=${contenders[(k + r - 1) % n]}
        for ((attempt = 1; attempt <= 3; attempt++)); do
            RUN_SECS="" RUN_FOREIGN="" RUN_CPU="" RUN_SYS="" RUN_RSS="" RUN_TAIL=""
            settle
            if ! run_contender "$c"; then
                record "$c" "$r" "$attempt" "${RUN_SECS:-0}" "${RUN_FOREIGN:--}" "${RUN_CPU:--}" "${RUN_RSS:--}" "FAILED" "${RUN_SYS:--}"
                die "$c failed in round $r (run with --keep to inspect $work)"
            fi
            record "$c" "$r" "$attempt" "$RUN_SECS" "$RUN_FOREIGN" "$RUN_CPU" "$RUN_RSS" "$RUN_VERIFY" "$RUN_SYS"
            ((LAST_NOISY)) || break
        done
    done
done

# --- report -----------------------------------------------------------------------------------

# Clean runs of a contender (all of them, if none was clean).
runs_of() {
    local clean
    clean=$(awk -v c="$1" '$1 == c && $5 == 0' "$results")
    if [[ -z $clean ]]; then awk -v c="$1" '$1 == c' "$results"; else echo "$clean"; fi
}

echo
echo "file: $(human_size "$size") ($size bytes), $peers receivers, $rounds rounds; medians of clean runs"
printf '%-12s %9s %9s %9s %7s %6s %6s %9s %s\n' CONTENDER MEDIAN MIN MAX RUNS CPU_S SYS_S CPU_S/GiB "PEAK RSS MiB (median per process over runs)"
declare -A med
for c in "${contenders[@]}"; do
    rows=$(runs_of "$c")
    med[$c]=$(awk '{print $4}' <<<"$rows" | median)
    mn=$(awk '{print $4}' <<<"$rows" | sort -g | head -1)
    mx=$(awk '{print $4}' <<<"$rows" | sort -g | tail -1)
    cnt=$(wc -l <<<"$rows")
    noisy=$(awk -v c="$c" '$1 == c && $5 == 1' "$results" | wc -l)
    cpu=$(awk '{print $7}' <<<"$rows" | median)
    sys=$(awk '{print $10}' <<<"$rows" | median)
    # CPU seconds per GiB that reached a receiver: the run's CPU over receivers × file size.
    case $c in
    get) receivers=$getters ;;
    cat) receivers=1 ;;
    *) receivers=$peers ;;
    esac
    per_gib=$(awk -v c="$cpu" -v n="$receivers" -v b="$size" 'BEGIN {printf "%.2f", c / (n * b / 1073741824)}')
    # Median over runs of each process's peak RSS, in MiB.
    rss=$(awk '{n = split($8, a, ","); for (i = 1; i <= n; i++) print i, a[i]}' <<<"$rows" |
        sort -k1,1n -k2,2g | awk '
            {v[$1, ++c[$1]] = $2; if ($1 > m) m = $1}
            END {
                for (i = 1; i <= m; i++) {
                    k = c[i]; x = (k % 2) ? v[i, (k + 1) / 2] : (v[i, k / 2] + v[i, k / 2 + 1]) / 2
                    printf "%s%.1f", (i > 1 ? " " : ""), x / 1024
                }
            }')
    case $c in
    ring | chunk-files | durable) rss="owner $(cut -d' ' -f1 <<<"$rss"), peers $(cut -d' ' -f2- <<<"$rss")" ;;
    get) rss="owner $(cut -d' ' -f1 <<<"$rss"), getters $(cut -d' ' -f2- <<<"$rss")" ;;
    nginx) rss="nginx $(cut -d' ' -f1 <<<"$rss"), curls $(cut -d' ' -f2- <<<"$rss")" ;;
    disk) rss="dd $rss" ;;
    esac
    runs=$cnt
    if ((noisy)); then runs+="+${noisy}n"; fi
    printf '%-12s %8ss %8ss %8ss %7s %6s %6s %9s %s\n' "$c" "${med[$c]}" "$mn" "$mx" "$runs" "$cpu" "$sys" "$per_gib" "$rss"
done
if [[ -n ${med[nginx]:-} ]]; then
    echo
    for c in ring chunk-files get cat; do
        [[ -n ${med[$c]:-} ]] || continue
        awk -v a="${med[$c]}" -v b="${med[nginx]}" -v c="$c" 'BEGIN {printf "ratio %s / nginx: %.2f\n", c, a / b}'
    done
fi
if [[ -n ${med[durable]:-} ]]; then
    echo
    tail_med=$(runs_of durable | awk '$11 != "-" {print $11}' | median)
    echo "durable: the largest per-peer sync time after the last chunk arrived, median: ${tail_med}s"
    for c in ring disk; do
        [[ -n ${med[$c]:-} ]] || continue
        awk -v a="${med[durable]}" -v b="${med[$c]}" -v c="$c" 'BEGIN {printf "ratio durable / %s: %.2f\n", c, a / b}'
    done
    if [[ -n ${med[ring]:-} && -n ${med[disk]:-} ]]; then
        awk -v a="${med[durable]}" -v b="${med[ring]}" -v d="${med[disk]}" \
            'BEGIN {m = (b > d) ? b : d; printf "ratio durable / max(ring, disk): %.2f\n", a / m}'
    fi
fi
if [[ -n ${med[get]:-} && -n ${med[ring]:-} ]]; then
    awk -v a="${med[get]}" -v b="${med[ring]}" -v g="$getters" -v p="$peers" \
        'BEGIN {printf "ratio get (%d getters) / ring (%d peers): %.2f\n", g, p, a / b}'
fi
echo "(+Nn: N noisy runs left out and repeated; CPU_S, SYS_S: CPU seconds (all, in the kernel) of"
echo " the contender's processes, medians; CPU_S/GiB: CPU_S per GiB delivered, receivers x file size)"
