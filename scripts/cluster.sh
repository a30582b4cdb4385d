#!/usr/bin/env bash
# Starts, stops and shows a local TinyKV cluster: one tinykv-scheduler and
# three tinykv-server stores on loopback, each with its data and log under
# one directory. `make cluster` and `make cluster-stop` call this script.
#
#   scripts/cluster.sh start|stop|status
#   scripts/cluster.sh start-store N   (re)start store N alone (e.g. after
#                                      killing it, or a new store 4)
#
# Settings (environment variables, with their defaults):
#   BIN=target/debug          where the binaries are
#   CLUSTER_DIR=data/cluster  data directories, logs and pid files
#   HOST=127.0.0.1
#   SCHEDULER_PORT=2379       the stores' ports are STORE_PORT, +1, +2
#   STORE_PORT=20161
#   STORES=3
#   REGION_MAX_SIZE=1048576   a region splits above this many bytes (small,
#                             so that splits are easy to watch)
set -euo pipefail

BIN=${BIN:-target/debug}
CLUSTER_DIR=${CLUSTER_DIR:-data/cluster}
HOST=${HOST:-127.0.0.1}
SCHEDULER_PORT=${SCHEDULER_PORT:-2379}
STORE_PORT=${STORE_PORT:-20161}
STORES=${STORES:-3}
REGION_MAX_SIZE=${REGION_MAX_SIZE:-1048576}
SCHEDULER="$HOST:$SCHEDULER_PORT"

die() { echo "cluster: $*" >&2; exit 1; }

# Whether the process in pid file $1 is running.
alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# The number of lines in log $1 (0 if it does not exist yet).
lines() { if [[ -f "$1" ]]; then wc -l <"$1"; else echo 0; fi; }

# Waits (up to 30 s) until log $1, after its first $3 lines, says the
# process listens; fails naming the log if the process ($2: pid file)
# exits or the time runs out.
wait_listening() {
    local log=$1 pidfile=$2 from=$3
    for _ in $(seq 300); do
        tail -n +"$((from + 1))" "$log" 2>/dev/null | grep -q "listening on" && return 0
        alive "$pidfile" || die "$(basename "$log" .log) exited; its log ($log) ends with:
$(tail -n 15 "$log")"
        sleep 0.1
    done
    die "$(basename "$log" .log) did not start listening within 30 s; see $log"
}

# Starts store $1 (its directory, port STORE_PORT + $1 - 1 and log) and
# waits until it listens.
start_store() {
    local i=$1
    local addr="$HOST:$((STORE_PORT + i - 1))"
    alive "$CLUSTER_DIR/store$i.pid" && die "store$i is already running (pid $(cat "$CLUSTER_DIR/store$i.pid"))"
    local from
    from=$(lines "$CLUSTER_DIR/store$i.log")
    echo "Starting tinykv-server store$i on $addr (data in $CLUSTER_DIR/store$i)"
    "$BIN/tinykv-server" --scheduler "$SCHEDULER" --data-dir "$CLUSTER_DIR/store$i" \
        --addr "$addr" --region-max-size "$REGION_MAX_SIZE" \
        >>"$CLUSTER_DIR/store$i.log" 2>&1 &
    echo $! >"$CLUSTER_DIR/store$i.pid"
    wait_listening "$CLUSTER_DIR/store$i.log" "$CLUSTER_DIR/store$i.pid" "$from"
}

start() {
    for bin in tinykv-scheduler tinykv-server tinykv-ctl; do
        [[ -x "$BIN/$bin" ]] || die "$BIN/$bin is missing: run 'make cluster' (it builds them first)"
    done
    mkdir -p "$CLUSTER_DIR"
    for pidfile in "$CLUSTER_DIR"/*.pid; do
        [[ -e "$pidfile" ]] || continue
        alive "$pidfile" && die "already running ($(basename "$pidfile" .pid) is pid $(cat "$pidfile")); 'make cluster-stop' stops it"
        rm -f "$pidfile"
    done
    echo "Starting tinykv-scheduler on $SCHEDULER (data in $CLUSTER_DIR/scheduler)"
    local from
    from=$(lines "$CLUSTER_DIR/scheduler.log")
    "$BIN/tinykv-scheduler" --data-dir "$CLUSTER_DIR/scheduler" --addr "$SCHEDULER" \
        >>"$CLUSTER_DIR/scheduler.log" 2>&1 &
    echo $! >"$CLUSTER_DIR/scheduler.pid"
    wait_listening "$CLUSTER_DIR/scheduler.log" "$CLUSTER_DIR/scheduler.pid" "$from"
    for i in $(seq "$STORES"); do
        # One at a time: the first store bootstraps the cluster.
        start_store "$i"
    done
    cat <<INFO

The cluster is up: a scheduler and $STORES stores. Talk to it with tinykv-ctl:
  $BIN/tinykv-ctl --scheduler $SCHEDULER raw put hello world
  $BIN/tinykv-ctl --scheduler $SCHEDULER raw get hello
  $BIN/tinykv-ctl --scheduler $SCHEDULER txn put k1 v1 k2 v2
  $BIN/tinykv-ctl --scheduler $SCHEDULER cluster stores
  $BIN/tinykv-ctl --scheduler $SCHEDULER cluster regions
Logs: $CLUSTER_DIR/*.log. Kill a store (kill -9 \$(cat $CLUSTER_DIR/store2.pid)) and watch the
scheduler re-replicate its regions after a minute; docs/src/running-a-cluster.md says what to watch.
Stop everything with: make cluster-stop   (the data stays in $CLUSTER_DIR; delete it for a fresh cluster)
INFO
}

stop() {
    local any=0
    for pidfile in "$CLUSTER_DIR"/store*.pid "$CLUSTER_DIR"/scheduler.pid; do
        [[ -e "$pidfile" ]] || continue
        any=1
        local name pid
        name=$(basename "$pidfile" .pid)
        pid=$(cat "$pidfile")
        if alive "$pidfile"; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 100); do alive "$pidfile" || break; sleep 0.1; done
            if alive "$pidfile"; then
                echo "$name (pid $pid) did not stop within 10 s; killing it"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            echo "stopped $name (pid $pid)"
        fi
        rm -f "$pidfile"
    done
    [[ $any == 1 ]] || echo "no cluster is running from $CLUSTER_DIR"
}

status() {
    local any=0
    for pidfile in "$CLUSTER_DIR"/scheduler.pid "$CLUSTER_DIR"/store*.pid; do
        [[ -e "$pidfile" ]] || continue
        any=1
        if alive "$pidfile"; then
            echo "$(basename "$pidfile" .pid): running (pid $(cat "$pidfile"))"
        else
            echo "$(basename "$pidfile" .pid): not running"
        fi
    done
    [[ $any == 1 ]] || echo "no cluster was started from $CLUSTER_DIR"
}

case "${1:-}" in
    start) start ;;
    start-store)
        [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || die "usage: $0 start-store N (N = 1, 2, ...)"
        start_store "$2" ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: $0 start|stop|status|start-store N" ;;
esac
