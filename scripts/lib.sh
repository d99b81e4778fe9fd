# Shell helpers shared by ring.sh and bench.sh (sourced, not run).

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
