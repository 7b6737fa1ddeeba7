#!/usr/bin/env bash
# `make bench`: install wrk if missing, then run bench/bench_api.py against PostgreSQL and Redis on 127.0.0.1.
#
# Needs PostgreSQL on 127.0.0.1:5432 (a role allowed to create databases) and Redis on 127.0.0.1:6379;
# BENCH_DATABASE_URL and BENCH_REDIS_URL override the defaults below. The scratch database is created and
# dropped by the benchmark; Redis keys are written and deleted under their own prefix only.
# Every process the benchmark starts is stopped by PID when it ends, fails or is interrupted (trap below).
# Tuning: BENCH_DURATION (s per run), BENCH_WARMUP, BENCH_CONNECTIONS, BENCH_LOGIN_CONNECTIONS, BENCH_STRICT=1
# (exit 3 when a target is missed); see docs/performance.md.
# Then bench/bench_discover.py: GET /discover at 10k and 100k profiles (BENCH_DISCOVER_* settings), then
# bench/bench_chat.py: chat delivery across two instances against raw Redis pub/sub (BENCH_CHAT_* settings).
# BENCH_ONLY=api, BENCH_ONLY=discover or BENCH_ONLY=chat runs only that part.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=.venv/bin/python
export BENCH_DATABASE_URL="${BENCH_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/kindred_bench}"
export BENCH_REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379/14}"

if [[ ! -x $PYTHON ]]; then
    echo "bench: $PYTHON not found; run 'make install' (or 'make bench', which does)" >&2
    exit 1
fi

if ! command -v wrk >/dev/null 2>&1; then
    sudo=""
    if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
    echo "bench: installing wrk (apt-get install -y wrk)"
    if ! $sudo apt-get install -y wrk; then
        # Only when the package lists are stale or missing.
        $sudo apt-get update
        $sudo apt-get install -y wrk
    fi
fi

scratch="$(mktemp -d -t kindred-bench-run.XXXXXX)"
# The benchmark lists the PID of every server it starts in $BENCH_SCRATCH_DIR/pids and keeps its files there.
export BENCH_SCRATCH_DIR="$scratch"
driver_pid=""

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n $driver_pid ]] && kill -0 "$driver_pid" 2>/dev/null; then
        kill -TERM "$driver_pid" 2>/dev/null || true # it stops its servers and drops its database
        wait "$driver_pid" 2>/dev/null || true
    fi
    if [[ -f $scratch/pids ]]; then # servers left behind if the benchmark itself was killed
        while read -r pid; do
            if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; fi
        done <"$scratch/pids"
    fi
    if ((status >= 128)); then # killed by a signal: make sure the scratch databases and keys are gone
        "$PYTHON" bench/bench_api.py --cleanup || true
        "$PYTHON" bench/bench_discover.py --cleanup || true
        "$PYTHON" bench/bench_chat.py --cleanup || true
    fi
    rm -rf "$scratch"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

only="${BENCH_ONLY:-all}"
case $only in all | api | discover | chat) ;; *)
    echo "bench: BENCH_ONLY must be api, discover or chat, not '$only'" >&2
    exit 1
    ;;
esac
# In the background so that a signal reaches the trap at once instead of after the benchmark ends.
run_driver() {
    local status=0
    "$PYTHON" "$1" &
    driver_pid=$!
    wait "$driver_pid" || status=$?
    driver_pid=""
    return "$status"
}
api_status=0 discover_status=0 chat_status=0
if [[ $only == all || $only == api ]]; then run_driver bench/bench_api.py || api_status=$?; fi
if [[ $only == all || $only == discover ]]; then run_driver bench/bench_discover.py || discover_status=$?; fi
if [[ $only == all || $only == chat ]]; then run_driver bench/bench_chat.py || chat_status=$?; fi
# The first failure wins (1: invalid measurement, 3: BENCH_STRICT and a target missed).
if ((api_status != 0)); then exit "$api_status"; fi
if ((discover_status != 0)); then exit "$discover_status"; fi
exit "$chat_status"
