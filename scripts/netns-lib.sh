# shellcheck shell=bash
# Shell helpers for scripts that build hosts out of network namespaces (netns-ring.sh,
# bench-shaped.sh); sourced after lib.sh, not run. The sourcing script defines `die MESSAGE`
# and sets `me` (its name, for messages), `work` (its work folder) and `namespaces=()` (every
# namespace it made, which netns_delete_all deletes).
# shellcheck disable=SC2034,SC2154 # NOW_MS, br_ns… are for the sourcing script; me, work are its

# Milliseconds since the epoch, into NOW_MS.
now_ms() {
    local t=${EPOCHREALTIME/,/.}
    NOW_MS=$((10#${t/./} / 1000))
}

# 1234 → "1.23s"
secs() {
    awk -v ms="$1" 'BEGIN { printf "%.2fs", ms / 1000 }'
}

# Bytes of a size (20MiB, 512k, 1.5GiB, 3000000), at least 1 and at most 1 TiB; fails
# (prints nothing) otherwise.
size_bytes() {
    awk -v s="$1" 'BEGIN {
        if (!match(s, /^[0-9]+(\.[0-9]+)?/)) exit 1
        n = substr(s, 1, RLENGTH); u = tolower(substr(s, RLENGTH + 1))
        m[""] = 1; m["b"] = 1
        m["k"] = 1024; m["kb"] = 1024; m["kib"] = 1024
        m["m"] = 1048576; m["mb"] = 1048576; m["mib"] = 1048576
        m["g"] = 1073741824; m["gb"] = 1073741824; m["gib"] = 1073741824
        if (!(u in m) || n * m[u] < 1 || n * m[u] > 1099511627776) exit 1
        printf "%d", n * m[u]
    }'
}

# Bits per second of a rate in tc's units (100mbit, 1gbit, 10mbps = bytes), from 8kbit to
# 4tbit; a unit is required (a bare number is ambiguous). Fails (prints nothing) otherwise.
rate_bits() {
    awk -v r="$1" 'BEGIN {
        if (!match(r, /^[0-9]+(\.[0-9]+)?/)) exit 1
        n = substr(r, 1, RLENGTH); u = tolower(substr(r, RLENGTH + 1))
        m["bit"] = 1; m["kbit"] = 1e3; m["mbit"] = 1e6; m["gbit"] = 1e9; m["tbit"] = 1e12
        m["bps"] = 8; m["kbps"] = 8e3; m["mbps"] = 8e6; m["gbps"] = 8e9; m["tbps"] = 8e12
        if (!(u in m) || n * m[u] < 8000 || n * m[u] > 4e12) exit 1
        printf "%d", n * m[u]
    }'
}

# 100000000 → "100mbit"
rate_text() {
    awk -v b="$1" 'BEGIN {
        if (b >= 1e9) printf "%ggbit", b / 1e9; else if (b >= 1e6) printf "%gmbit", b / 1e6; else printf "%gkbit", b / 1e3
    }'
}

# Runs `ip "$@"` and dies with its message when it fails.
ipx() {
    local err
    if ! err=$(ip "$@" 2>&1); then
        die "ip $*: ${err:-failed}"
    fi
}

# Dies unless root, `ip` and `tc` are here, and none of the namespaces PREFIX-br,
# PREFIX-owner, PREFIX-p1…PREFIX-pN exists yet.
netns_check() {
    local prefix=$1 n=$2 i tool
    ((EUID == 0)) || die "needs root: it makes network namespaces and tc qdiscs (try sudo)"
    for tool in ip tc; do
        command -v "$tool" >/dev/null || die "needs '$tool' (apt-get install iproute2)"
    done
    for ((i = 0; i <= n; i++)); do
        local name=owner
        ((i == 0)) || name=p$i
        [[ ! -e /run/netns/$prefix-$name ]] ||
            die "namespace $prefix-$name already exists (another run? choose --ns-prefix)"
    done
    [[ ! -e /run/netns/$prefix-br ]] || die "namespace $prefix-br already exists (another run? choose --ns-prefix)"
}

# Builds N+1 hosts: namespaces PREFIX-owner (SUBNET.10) and PREFIX-p1…pN (SUBNET.11…), each
# with one veth, eth0, to the bridge br0 in namespace PREFIX-br. Sets br_ns, host_ns[] and
# host_ip[] (index 0 the owner) and records every namespace in `namespaces` before making it.
# The root namespace's interfaces and routes are never touched.
netns_make_hosts() {
    local prefix=$1 subnet=$2 n=$3 i ns
    br_ns=$prefix-br
    host_ns=("$prefix-owner")
    host_ip=("$subnet.10")
    for ((i = 1; i <= n; i++)); do
        host_ns+=("$prefix-p$i")
        host_ip+=("$subnet.$((10 + i))")
    done
    namespaces+=("$br_ns")
    ipx netns add "$br_ns"
    ipx -n "$br_ns" link set lo up
    ipx -n "$br_ns" link add br0 type bridge
    ipx -n "$br_ns" link set br0 up
    for ((i = 0; i <= n; i++)); do
        ns=${host_ns[i]}
        namespaces+=("$ns")
        ipx netns add "$ns"
        ipx -n "$ns" link set lo up
        # vhI stays at the bridge; its other end becomes the host's eth0.
        ipx -n "$br_ns" link add "vh$i" type veth peer name eth0 netns "$ns"
        ipx -n "$br_ns" link set "vh$i" master br0
        ipx -n "$br_ns" link set "vh$i" up
        ipx -n "$ns" addr add "${host_ip[i]}/24" dev eth0
        ipx -n "$ns" link set eth0 up
    done
}

# Whether this kernel has the qdisc "$@", tried on the bridge namespace's lo (made here, it
# carries nothing); the error goes to $work/tc-probe.err.
qdisc_works() {
    if ip netns exec "$br_ns" tc qdisc add dev lo root "$@" 2>"$work/tc-probe.err"; then
        ip netns exec "$br_ns" tc qdisc del dev lo root 2>/dev/null || true
        return 0
    fi
    return 1
}

# tbf's bucket for a rate in bits/s: 10 ms at the rate, at least 32 KiB.
tbf_burst() {
    local b=$(($1 / 8 / 100))
    ((b >= 32768)) || b=32768
    echo "$b"
}

# Sets rate_qdisc to tbf, or htb where this kernel lacks tbf; dies when it has neither.
pick_rate_qdisc() {
    if qdisc_works tbf rate "${1}bit" burst "$(tbf_burst "$1")" latency 50ms; then
        rate_qdisc=tbf
    elif qdisc_works htb default 1; then
        rate_qdisc=htb
    else
        die "this kernel has neither tbf nor htb: cannot shape the uplinks ($(tr '\n' ' ' <"$work/tc-probe.err"))"
    fi
}

# Adds the rate qdisc ($rate_qdisc) at BITS bits/s to dev eth0 of namespace NS under PARENT…
# ("root" or "parent 1:1"): the host's uplink.
add_rate_qdisc() {
    local ns=$1 bits=$2
    shift 2
    if [[ $rate_qdisc == tbf ]]; then
        ipx netns exec "$ns" tc qdisc add dev eth0 "$@" handle 10: tbf rate "${bits}bit" burst "$(tbf_burst "$bits")" latency 50ms
    else
        ipx netns exec "$ns" tc qdisc add dev eth0 "$@" handle 10: htb default 1
        ipx netns exec "$ns" tc class add dev eth0 parent 10: classid 10:1 htb rate "${bits}bit" quantum 60000
    fi
}

# Kills every process inside the namespaces made here and deletes them (their veths and the
# bridge go with them); says which namespaces named PREFIX-… are left, if any.
netns_delete_all() {
    local prefix=$1 ns p left
    for ns in "${namespaces[@]}"; do
        [[ -e /run/netns/$ns ]] || continue
        for p in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$p" 2>/dev/null || true
        done
        ip netns del "$ns" 2>/dev/null || echo "$me: could not delete namespace $ns" >&2
    done
    left=$(ip netns list 2>/dev/null | awk -v p="$prefix-" 'index($1, p) == 1 { print $1 }')
    if [[ -n $left ]]; then
        echo "$me: namespaces left behind: $left" >&2
    fi
}
