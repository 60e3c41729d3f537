#!/usr/bin/env bash
# Airflow for this project on this machine: `airflow standalone` (api-server, scheduler,
# dag-processor, triggerer; LocalExecutor, SQLite) with the project's DAGs and Spark on local[*].
#
#   scripts/airflow_local.sh start            start, print the UI address and login, run until Ctrl-C
#   scripts/airflow_local.sh start --detach   start, print the same, return (stop it with `stop`)
#   scripts/airflow_local.sh stop             stop an Airflow started by this script
#   scripts/airflow_local.sh status
#
# Settings (environment, all optional):
#   AIRFLOW_HOME                 default <repo>/.airflow (git-ignored): config, SQLite DB, logs
#   AIRFLOW_PORT                 default 8080
#   AIRFLOW_API_HOST             default 127.0.0.1 (0.0.0.0 to reach the UI from another machine)
#   LAKEHOUSE_ROOT               default <repo>/lakehouse (a folder or s3a://bucket/prefix)
#   AIRFLOW_CONN_SPARK_DEFAULT   default {"conn_type": "spark", "host": "local[*]"}; a cluster:
#                                {"conn_type": "spark", "host": "spark://HOST", "port": 7077}
#   AIRFLOW_START_TIMEOUT        seconds to wait for a healthy Airflow, default 300
#   AIRFLOW_STOP_TIMEOUT         seconds to wait for a clean stop before SIGKILL, default 60
#
# Airflow runs in a session of its own. Stopping signals its process group (the standalone and its
# components; task supervisors forward the SIGTERM to their tasks, whose on_kill stops the Spark
# job cleanly), waits for every process of the session to end, and SIGKILLs what is left after
# AIRFLOW_STOP_TIMEOUT: `airflow standalone` leaves its children running if only its own PID is
# signalled, and task processes and spark-submit live in process groups of their own.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_BIN="$REPO/.venv/bin"

export AIRFLOW_HOME="${AIRFLOW_HOME:-$REPO/.airflow}"
PORT="${AIRFLOW_PORT:-8080}"
API_HOST="${AIRFLOW_API_HOST:-127.0.0.1}"
START_TIMEOUT="${AIRFLOW_START_TIMEOUT:-300}"
STOP_TIMEOUT="${AIRFLOW_STOP_TIMEOUT:-60}"
PID_FILE="$AIRFLOW_HOME/airflow-local.pid"
# The PID of a `start` running in the foreground: `stop` asks it to stop, so that one process stops.
OWNER_FILE="$AIRFLOW_HOME/airflow-local.owner.pid"
LOG_FILE="$AIRFLOW_HOME/logs/standalone.log"
UI_URL="http://localhost:$PORT"
LOCAL_SPARK_CONNECTION='{"conn_type": "spark", "host": "local[*]"}'

die() { echo "airflow_local: $*" >&2; exit 1; }

configure() {
    [[ -x "$VENV_BIN/airflow" ]] || die "$VENV_BIN/airflow not found: run 'make venv' first"
    export PATH="$VENV_BIN:$PATH"
    export AIRFLOW__CORE__DAGS_FOLDER="$REPO/dags"
    export AIRFLOW__CORE__PLUGINS_FOLDER="$REPO/plugins"
    export AIRFLOW__CORE__LOAD_EXAMPLES=False
    # 2 cores: a handful of task slots; a continuous streaming run holds one for as long as it runs.
    export AIRFLOW__CORE__PARALLELISM=4
    export AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG=4
    export AIRFLOW__API__HOST="$API_HOST"
    export AIRFLOW__API__PORT="$PORT"
    export AIRFLOW__API__BASE_URL="$UI_URL"
    export AIRFLOW__API__WORKERS="${AIRFLOW__API__WORKERS:-1}"
    # New DAG files show up within 30 s instead of 5 minutes.
    export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="${AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL:-30}"
    export LAKEHOUSE_ROOT="${LAKEHOUSE_ROOT:-$REPO/lakehouse}"
    export AIRFLOW_CONN_SPARK_DEFAULT="${AIRFLOW_CONN_SPARK_DEFAULT:-$LOCAL_SPARK_CONNECTION}"
    # The Spark job's driver and workers run the venv's Python, which has pyspark and flight_gold.
    export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$VENV_BIN/python}"
    export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$VENV_BIN/python}"
    mkdir -p "$AIRFLOW_HOME/logs"
}

# The session id recorded at start, if its leader still runs.
running_sid() {
    [[ -f "$PID_FILE" ]] || return 1
    local sid
    sid="$(cat "$PID_FILE")"
    [[ "$sid" =~ ^[0-9]+$ ]] || return 1
    [[ -n "$(session_pids "$sid")" ]] || return 1
    echo "$sid"
}

session_pids() { ps -s "$1" -o pid= 2>/dev/null | tr -d ' ' || true; }

http_get() {
    "$VENV_BIN/python" - "$1" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        sys.stdout.write(r.read().decode())
except Exception:
    sys.exit(1)
EOF
}

healthy() {
    local body
    body="$(http_get "$UI_URL/api/v2/monitor/health")" || return 1
    "$VENV_BIN/python" -c '
import json, sys
h = json.loads(sys.argv[1])
ok = all(h.get(c, {}).get("status") == "healthy" for c in ("metadatabase", "scheduler", "triggerer", "dag_processor"))
sys.exit(0 if ok else 1)' "$body"
}

print_banner() {
    local password_file="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
    local password="(see $password_file)"
    if [[ -f "$password_file" ]]; then
        password="$("$VENV_BIN/python" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("admin", "?"))' "$password_file")"
    fi
    cat <<EOF

  Airflow is ready: $UI_URL
  Log in as: admin / $password     (stored in $password_file)

  DAGs from:       $REPO/dags
  Lakehouse:       $LAKEHOUSE_ROOT
  Spark:           connection spark_default = $AIRFLOW_CONN_SPARK_DEFAULT
  Airflow home:    $AIRFLOW_HOME      (log: $LOG_FILE)

  Trigger gold_streaming: DAGs > gold_streaming > Trigger (unpause it first with its toggle).
  Stop the stream:        DAGs > gold_streaming_stop > Trigger.   Watch it: Flight Gold (top menu).
EOF
}

stop_sid() {
    local sid="$1" waited=0
    echo "airflow_local: stopping Airflow (session $sid) ..." >&2
    kill -TERM -- "-$sid" 2>/dev/null || true
    while [[ -n "$(session_pids "$sid")" ]] && (( waited < STOP_TIMEOUT * 10 )); do
        sleep 0.1
        waited=$((waited + 1))
    done
    local left
    left="$(session_pids "$sid")"
    if [[ -n "$left" ]]; then
        echo "airflow_local: still running after ${STOP_TIMEOUT}s, killing: $(echo $left)" >&2
        # shellcheck disable=SC2086
        kill -KILL $left 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
    echo "airflow_local: stopped" >&2
}

cmd_start() {
    local detach=0
    [[ "${1:-}" == "--detach" || "${1:-}" == "-d" ]] && detach=1
    configure
    if sid="$(running_sid)"; then
        die "already running (session $sid, $UI_URL); 'scripts/airflow_local.sh stop' stops it"
    fi
    if http_get "$UI_URL/api/v2/monitor/health" >/dev/null; then
        die "port $PORT is already serving something; set AIRFLOW_PORT to another port"
    fi
    echo "airflow_local: starting Airflow in $AIRFLOW_HOME (log: $LOG_FILE) ..." >&2
    # setsid: a new session and process group whose id is the standalone's PID.
    setsid "$VENV_BIN/airflow" standalone >>"$LOG_FILE" 2>&1 < /dev/null &
    local sid=$!
    echo "$sid" > "$PID_FILE"
    if (( ! detach )); then
        echo "$$" > "$OWNER_FILE"
        trap 'trap - INT TERM; stop_sid "$sid"; rm -f "$OWNER_FILE"; exit 0' INT TERM
    fi
    local waited=0
    until healthy; do
        if ! kill -0 "$sid" 2>/dev/null; then
            tail -n 30 "$LOG_FILE" >&2 || true
            stop_sid "$sid"
            die "airflow standalone exited during start-up; see $LOG_FILE"
        fi
        if (( waited >= START_TIMEOUT )); then
            stop_sid "$sid"
            die "Airflow was not healthy after ${START_TIMEOUT}s; see $LOG_FILE"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    print_banner
    if (( detach )); then
        echo "  Stop it with: scripts/airflow_local.sh stop   (or make airflow-stop)"
        return 0
    fi
    echo "  Ctrl-C stops Airflow and everything it started."
    # `wait` returns when a trapped signal arrives, or when the standalone ends on its own.
    while kill -0 "$sid" 2>/dev/null; do
        wait "$sid" 2>/dev/null || true
    done
    stop_sid "$sid"
    rm -f "$OWNER_FILE"
    die "airflow standalone ended on its own; see $LOG_FILE"
}

cmd_stop() {
    configure
    local owner="" sid waited=0
    [[ -f "$OWNER_FILE" ]] && owner="$(cat "$OWNER_FILE")"
    if [[ "$owner" =~ ^[0-9]+$ ]] && kill -0 "$owner" 2>/dev/null; then
        # A foreground `start` owns this Airflow: its trap stops it and then it exits.
        kill -TERM "$owner"
        while kill -0 "$owner" 2>/dev/null && (( waited < (STOP_TIMEOUT + 30) * 10 )); do
            sleep 0.1
            waited=$((waited + 1))
        done
    fi
    if sid="$(running_sid)"; then
        stop_sid "$sid"
    else
        echo "airflow_local: not running" >&2
    fi
    rm -f "$PID_FILE" "$OWNER_FILE"
}

cmd_status() {
    configure
    local sid
    if sid="$(running_sid)"; then
        echo "running: session $sid, $(session_pids "$sid" | wc -l) processes, $UI_URL"
        healthy && echo "healthy" || echo "not healthy (yet)"
    else
        echo "not running"
        return 3
    fi
}

case "${1:-}" in
    start) shift; cmd_start "$@" ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start [--detach] | stop | status" >&2; exit 2 ;;
esac
