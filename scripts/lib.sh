# shellcheck shell=bash
# Shell helpers shared by ring.sh, bench.sh, netns-ring.sh and bench-shaped.sh (sourced, not
# run). A script that sources this defines `die_usage MESSAGE`, and `log MESSAGE` if it calls
# quiet_gate.

# Prints the last N (default 20) lines of a log, indented, or says it is empty.
show_tail() {
    local log=$1 n=${2:-20}
    if [[ -s $log ]]; then
        echo "  --- last $n lines of $log:"
        tail -n "$n" "$log" | sed 's/^/  | /'
    else
        echo "  --- $log is empty"
    fi
}

# The folder cargo puts PROFILE's binaries in for the project at ROOT: CARGO_TARGET_DIR
# (relative to ROOT when not absolute) or ROOT/target, then PROFILE.
target_bin_dir() {
    local root=$1 profile=$2 target_dir=${CARGO_TARGET_DIR:-$1/target}
    [[ $target_dir == /* ]] || target_dir=$root/$target_dir
    echo "$target_dir/$profile"
}

# Waits (at most QUIET_MAX s, default MAX) until the machine was under QUIET_PCT % (default
# 10) busy over 1 s; busy is user+nice+system+irq+softirq+steal of all cores.
quiet_gate() {
    local max=${QUIET_MAX:-$1} pct_max=${QUIET_PCT:-10} start=$SECONDS a b pct
    local ncpu clk_tck
    ncpu=$(nproc)
    clk_tck=$(getconf CLK_TCK)
    while :; do
        a=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat)
        sleep 1
        b=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat)
        pct=$(((b - a) * 100 / (clk_tck * ncpu)))
        ((pct < pct_max)) && return 0
        if ((SECONDS - start >= max)); then
            log "machine still ${pct}% busy after ${max}s; measuring anyway"
            return 0
        fi
    done
}

# TERM, then KILL after 5 s, for each live PID given; reaps them all.
stop_pids() {
    local p alive=() waited=0
    for p in "$@"; do
        if kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p" 2>/dev/null || true
            alive+=("$p")
        fi
    done
    while ((${#alive[@]} > 0 && waited < 50)); do
        local any=0
        for p in "${alive[@]}"; do
            if kill -0 "$p" 2>/dev/null; then any=1; fi
        done
        ((any)) || break
        sleep 0.1
        waited=$((waited + 1))
    done
    for p in "${alive[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
    done
    for p in "$@"; do
        wait "$p" 2>/dev/null || true
    done
}

# Fails with "OPTION needs a value" unless a non-empty value follows the option.
need_value() {
    [[ $# -ge 2 && -n $2 ]] || die_usage "$1 needs a value"
}

# 1536 → "1.5 KiB": bytes in binary units.
human_size() {
    awk -v n="$1" 'BEGIN {
        split("B KiB MiB GiB TiB", u, " "); i = 1
        while (n >= 1024 && i < 5) { n /= 1024; i++ }
        if (i == 1) printf "%d B", n; else printf "%.1f %s", n, u[i]
    }'
}

# The end of every script's EXIT trap: removes the work folder $work (or, with $keep, says
# where it is, on stderr when the second argument is `stderr`), then exits 130 if
# $interrupted, else with STATUS.
# shellcheck disable=SC2154 # keep and interrupted belong to the sourcing script
finish_cleanup() {
    local status=$1 to=${2:-stdout}
    if [[ -n ${work:-} && -d $work ]]; then
        if ((keep)); then
            if [[ $to == stderr ]]; then echo "work folder kept: $work" >&2; else echo "work folder kept: $work"; fi
        else
            rm -rf -- "$work"
        fi
    fi
    if ((interrupted)); then exit 130; fi
    exit "$status"
}

# write_nginx_conf DIR LISTEN ROOT: writes DIR/nginx.conf (and DIR/tmp) for nginx serving the
# files of ROOT on LISTEN (ADDR:PORT) with sendfile, in the foreground, its pid and error log
# in DIR: the configuration of ../shared/bench-anchors/02-http-fanout.sh.
write_nginx_conf() {
    local dir=$1 listen=$2 root=$3
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path $dir/tmp;
  proxy_temp_path $dir/tmp;
  fastcgi_temp_path $dir/tmp;
  uwsgi_temp_path $dir/tmp;
  scgi_temp_path $dir/tmp;
  types { application/octet-stream bin; }
  default_type application/octet-stream;
  server {
    listen $listen;
    root $root;
  }
}
EOF
}
