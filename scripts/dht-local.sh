#!/usr/bin/env bash
# dht-local.sh: a private mainline DHT of N `peer dht-node`s on 127.0.0.1, a tracker and a
# publisher that announces a file in it (`peer share --dht`); the tracker is killed (SIGKILL)
# and `peer get TICKET --dht` finds the publisher through the DHT. Prints how long the DHT took
# to form, the time from the getter's cold start to its first chunk and to the verified file,
# and checks the copy against the original. Then a getter that completed and stays up
# (announced in the DHT) serves beside the publisher: a third getter's chunks from each are
# counted; with the publisher killed too, a fourth completes from that getter alone. Every
# node is on loopback: nothing is sent to any other address.
#
# Usage: scripts/dht-local.sh [--nodes N] [--size SIZE] [--keep]
#   --nodes N     DHT nodes (default 20)
#   --size SIZE   the file's size, e.g. 64MiB (default 64MiB)
#   --keep        keep the work folder (logs, events) and say where it is
# Environment:
#   RINGSWARM_BIN_DIR  folder holding `file-owner` and `peer`; when set, nothing is built.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

die_usage() {
    echo "dht-local.sh: $1" >&2
    echo "usage: scripts/dht-local.sh [--nodes N] [--size SIZE] [--keep]" >&2
    exit 2
}

nodes=20 size=64MiB keep=0 interrupted=0
while (($# > 0)); do
    case $1 in
    --nodes) need_value "$@" && nodes=$2 && shift 2 ;;
    --size) need_value "$@" && size=$2 && shift 2 ;;
    --keep) keep=1 && shift ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' && exit 0 ;;
    *) die_usage "unknown argument '$1'" ;;
    esac
done
[[ $nodes =~ ^[1-9][0-9]{0,2}$ ]] || die_usage "--nodes must be a number from 1 to 999, not '$nodes'"
num=${size%B}
if [[ $num == *i ]]; then from=iec-i; else from=iec; fi
bytes=$(numfmt --from="$from" "$num" 2>/dev/null) || die_usage "--size must be a size such as 64MiB, not '$size'"

if [[ -n ${RINGSWARM_BIN_DIR:-} ]]; then
    bin=$RINGSWARM_BIN_DIR
else
    cargo build --release --locked --quiet
    bin=$(target_bin_dir "$PWD" release)
fi
work=$(mktemp -d)
export XDG_CONFIG_HOME=$work/config
pids=()
cleanup() {
    local status=$?
    stop_pids "${pids[@]}"
    finish_cleanup "$status"
}
trap cleanup EXIT
trap 'interrupted=1; exit 130' INT TERM

# wait_for FILE TEXT: waits (60 s at most) until FILE holds TEXT.
wait_for() {
    local i
    for ((i = 0; i < 600; i++)); do
        if grep -q -- "$2" "$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "dht-local.sh: no '$2' in $1" >&2
    show_tail "$1" >&2
    exit 1
}
now() { date +%s.%N; }

t0=$(now)
"$bin/peer" dht-node 0 --bind 127.0.0.1 >"$work/dht1.out" 2>"$work/dht1.err" &
pids+=($!)
wait_for "$work/dht1.out" "listening on"
boot=$(grep -o '127\.0\.0\.1:[0-9]*' "$work/dht1.out" | head -1)
for ((i = 2; i <= nodes; i++)); do
    "$bin/peer" dht-node 0 --bind 127.0.0.1 --dht-bootstrap "$boot" >"$work/dht$i.out" 2>"$work/dht$i.err" &
    pids+=($!)
done
if ((nodes > 1)); then wait_for "$work/dht1.err" "dht: $((nodes - 1)) nodes in the routing table"; fi
formed=$(now)

head -c "$bytes" /dev/urandom >"$work/file.bin"
"$bin/file-owner" 0 --tracker --bind 127.0.0.1 >"$work/tracker.out" 2>"$work/tracker.err" &
tracker=$!
disown "$tracker" # killed on purpose below: no "Killed" line from the shell
pids+=("$tracker")
wait_for "$work/tracker.out" "listening on"
port=$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$work/tracker.out" | grep -o '[0-9]*$')
"$bin/peer" share "$port" "$work/file.bin" --bind 127.0.0.1 --dht --dht-bootstrap "$boot" \
    >"$work/share.out" 2>"$work/share.err" &
share=$!
disown "$share" # killed on purpose below
pids+=("$share")
wait_for "$work/share.out" "ticket: "
wait_for "$work/share.err" "in the DHT (port "
ticket=$(grep -o 'ringswarm://[^ ]*' "$work/share.out" | head -1)
kill -KILL "$tracker"
while kill -0 "$tracker" 2>/dev/null; do sleep 0.05; done

# get NAME: `peer get TICKET --dht` into $work/NAME, to its end, the copy checked; sets
# `started` and `took` (seconds).
get() {
    started=$(now)
    "$bin/peer" get "$ticket" --dir "$work/$1" --bind 127.0.0.1 --linger 0 --dht --dht-bootstrap "$boot" \
        --events "$work/$1.jsonl" >"$work/$1.out" 2>"$work/$1.err"
    took=$(awk -v s="$started" -v e="$(now)" 'BEGIN { printf "%.3f", e - s }')
    cmp -s "$work/file.bin" "$work/$1/file.bin" || {
        echo "dht-local.sh: $1's copy differs from the original" >&2
        exit 1
    }
}

get got
first=$(grep -m1 '"event":"chunk_received"' "$work/got.jsonl" | grep -o '"ts":[0-9.]*' | cut -d: -f2)
awk -v t0="$t0" -v formed="$formed" -v start="$started" -v first="$first" -v took="$took" -v n="$nodes" \
    -v size="$(human_size "$bytes")" 'BEGIN {
    printf "DHT of %d nodes formed in %.2f s\n", n, formed - t0
    printf "getter (tracker killed): cold start to first chunk %.3f s, to the verified file %.3f s (%s)\n", first - start, took, size
}'
grep -m1 'the DHT named' "$work/got.out" | sed 's/^/  /'
echo "copy verified: byte-identical"
# from NAME PORT: how many chunks NAME received from 127.0.0.1:PORT.
from() { grep '"event":"chunk_received"' "$work/$1.jsonl" | grep -c "127\.0\.0\.1:$2\"" || true; }

# A getter that completes and stays up: announced in the DHT, it is a source too (capped at
# 16 MiB/s, so that the publisher the DHT also names serves a share).
"$bin/peer" get "$ticket" --dir "$work/seeder" --bind 127.0.0.1 --dht --dht-bootstrap "$boot" --upload-limit 16MiB \
    >"$work/seeder.out" 2>"$work/seeder.err" &
pids+=($!)
wait_for "$work/seeder.out" "complete: "
wait_for "$work/seeder.err" "in the DHT (port "
seeder=$(grep -o 'listening on [0-9.]*:[0-9]*' "$work/seeder.out" | grep -o '[0-9]*$')
publisher=$(grep -o 'listening on [0-9.]*:[0-9]*' "$work/share.out" | grep -o '[0-9]*$')
get both
echo "getter beside the publisher and a complete getter: verified file in $took s; chunks from the publisher $(from both "$publisher"), from the complete getter $(from both "$seeder")"
kill -KILL "$share"
while kill -0 "$share" 2>/dev/null; do sleep 0.05; done
get alone
echo "publisher killed too: verified file in $took s, chunks from the complete getter $(from alone "$seeder")"
