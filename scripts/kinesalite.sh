#!/usr/bin/env bash
# kinesalite.sh runs kinesalite, a Kinesis-compatible server (in memory), for
# the Kinesis source's tests, without Docker.
#
#   scripts/kinesalite.sh install   npm install kinesalite into ./.testenv/kinesalite (once)
#   scripts/kinesalite.sh start     start it on 127.0.0.1:<free port>, print export lines
#                                   (also written to ./.testenv/kinesalite.env)
#   scripts/kinesalite.sh stop      stop the server this script started
#   scripts/kinesalite.sh env       print the export lines of the running server
#
# Typical use:
#   scripts/kinesalite.sh start && . ./.testenv/kinesalite.env && go test -race ./ingest/kinesis/
#   scripts/kinesalite.sh stop
#
# Its own CLI binds every interface; scripts/kinesalite-server.js binds
# loopback only. Run from the repository root (paths are relative to it).
set -euo pipefail

KINESALITE_VERSION="${KINESALITE_VERSION:-3.3.3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_DIR="$ROOT/.testenv"
PREFIX="$ENV_DIR/kinesalite"
MODULES="$PREFIX/node_modules"
STAMP="$PREFIX/.version"
PID_FILE="$ENV_DIR/kinesalite.pid"
PORT_FILE="$ENV_DIR/kinesalite.port"
ENV_FILE="$ENV_DIR/kinesalite.env"
LOG_FILE="$ENV_DIR/kinesalite.log"
START_TIMEOUT_SECONDS="${KINESALITE_START_TIMEOUT:-30}"

log() { echo "kinesalite.sh: $*" >&2; }
die() { log "$*"; exit 1; }

install_k() {
	if [[ -d "$MODULES/kinesalite" && -f "$STAMP" && "$(cat "$STAMP")" == "$KINESALITE_VERSION" ]]; then
		log "kinesalite $KINESALITE_VERSION already installed in $PREFIX"
		return 0
	fi
	command -v npm >/dev/null || die "npm not found in PATH"
	mkdir -p "$PREFIX"
	log "installing kinesalite $KINESALITE_VERSION into $PREFIX"
	# In memory only: leveldown's native build is not needed, so no install scripts.
	npm install --prefix "$PREFIX" --no-audit --no-fund --ignore-scripts --no-save "kinesalite@$KINESALITE_VERSION" >&2
	echo "$KINESALITE_VERSION" >"$STAMP"
}

running_pid() {
	[[ -f "$PID_FILE" ]] || return 1
	local pid
	pid="$(cat "$PID_FILE")"
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
	# Guard against a recycled pid belonging to something else.
	if [[ -r "/proc/$pid/cmdline" ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q kinesalite; then
		return 1
	fi
	echo "$pid"
}

write_env() {
	local port=$1
	cat >"$ENV_FILE" <<EOT
export SLUICE_TEST_KINESIS_ENDPOINT=http://127.0.0.1:$port
export SLUICE_TEST_KINESALITE_MODULES=$MODULES
EOT
}

start_k() {
	local pid
	if pid="$(running_pid)"; then
		log "already running (pid $pid)"
		cat "$ENV_FILE"
		return 0
	fi
	install_k
	command -v node >/dev/null || die "node not found in PATH"
	rm -f "$PORT_FILE"
	# setsid: its own session, so it survives this shell; stop kills it by pid.
	setsid node "$ROOT/scripts/kinesalite-server.js" "$MODULES" "$PORT_FILE" \
		>"$LOG_FILE" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$PID_FILE"
	local deadline=$((SECONDS + START_TIMEOUT_SECONDS))
	while [[ ! -s "$PORT_FILE" ]]; do
		if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
			log "kinesalite did not start within ${START_TIMEOUT_SECONDS}s; log follows"
			cat "$LOG_FILE" >&2 || true
			kill "$pid" 2>/dev/null || true
			rm -f "$PID_FILE"
			exit 1
		fi
		sleep 0.1
	done
	write_env "$(cat "$PORT_FILE")"
	log "kinesalite $KINESALITE_VERSION running on 127.0.0.1:$(cat "$PORT_FILE") (pid $pid, log $LOG_FILE)"
	cat "$ENV_FILE"
}

stop_k() {
	local pid
	if ! pid="$(running_pid)"; then
		log "not running"
		rm -f "$PID_FILE" "$ENV_FILE" "$PORT_FILE"
		return 0
	fi
	kill "$pid"
	for _ in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "pid $pid did not exit on TERM; sending KILL"
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$PID_FILE" "$ENV_FILE" "$PORT_FILE"
	log "stopped (pid $pid)"
}

case "${1:-}" in
install) install_k ;;
start) start_k ;;
stop) stop_k ;;
env)
	running_pid >/dev/null || die "not running"
	cat "$ENV_FILE"
	;;
*)
	echo "usage: $0 install|start|stop|env" >&2
	exit 2
	;;
esac
