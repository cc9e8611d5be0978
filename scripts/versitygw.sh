#!/usr/bin/env bash
# versitygw.sh runs a real S3 server (versitygw in posix mode) for the store
# acceptance tests, without Docker.
#
#   scripts/versitygw.sh install   build versitygw into ./.tools/bin (once)
#   scripts/versitygw.sh start     start it on 127.0.0.1:<free port> with a fresh data dir,
#                                  print export lines (also written to ./.testenv/versitygw.env)
#   scripts/versitygw.sh stop      stop the server this script started
#   scripts/versitygw.sh env       print the export lines of the running server
#
# Typical use:
#   scripts/versitygw.sh start && . ./.testenv/versitygw.env && go test -race ./objstore/... ./lake/...
#   scripts/versitygw.sh stop
#
# Run from the repository root (paths are relative to it).
set -euo pipefail

VERSITYGW_VERSION="${VERSITYGW_VERSION:-v1.8.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_BIN="$ROOT/.tools/bin"
BIN="$TOOLS_BIN/versitygw"
STAMP="$TOOLS_BIN/.versitygw-version"
ENV_DIR="$ROOT/.testenv"
DATA_DIR="$ENV_DIR/versitygw"
PID_FILE="$ENV_DIR/versitygw.pid"
ENV_FILE="$ENV_DIR/versitygw.env"
LOG_FILE="$ENV_DIR/versitygw.log"
# Test-only credentials for a server bound to loopback; override if you like.
ACCESS_KEY="${VERSITYGW_ACCESS_KEY:-sluicetest}"
SECRET_KEY="${VERSITYGW_SECRET_KEY:-sluicetestsecret}"
START_TIMEOUT_SECONDS="${VERSITYGW_START_TIMEOUT:-30}"

log() { echo "versitygw.sh: $*" >&2; }
die() { log "$*"; exit 1; }

install_gw() {
	if [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$VERSITYGW_VERSION" ]]; then
		log "versitygw $VERSITYGW_VERSION already installed at $BIN"
		return 0
	fi
	command -v go >/dev/null || die "go not found in PATH"
	mkdir -p "$TOOLS_BIN"
	log "installing versitygw $VERSITYGW_VERSION into $TOOLS_BIN (cold build takes a few minutes)"
	GOBIN="$TOOLS_BIN" go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
	echo "$VERSITYGW_VERSION" >"$STAMP"
	log "installed $BIN"
}

running_pid() {
	[[ -f "$PID_FILE" ]] || return 1
	local pid
	pid="$(cat "$PID_FILE")"
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
	# Guard against a recycled pid belonging to something else.
	if [[ -r "/proc/$pid/cmdline" ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q versitygw; then
		return 1
	fi
	echo "$pid"
}

free_port() {
	# Ask the kernel for a free port; the small race until versitygw binds it is
	# covered by the readiness check below (a lost race fails loudly).
	if command -v python3 >/dev/null; then
		python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
		return
	fi
	local port
	for _ in $(seq 1 50); do
		port=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return
		fi
	done
	die "no free port found"
}

xattr_ok() {
	local probe="$1/.xattr-probe"
	: >"$probe"
	local ok=0
	if command -v setfattr >/dev/null; then
		setfattr -n user.sluice -v 1 "$probe" 2>/dev/null || ok=1
	elif command -v python3 >/dev/null; then
		python3 -c 'import os,sys; os.setxattr(sys.argv[1], "user.sluice", b"1")' "$probe" 2>/dev/null || ok=1
	fi
	rm -f "$probe"
	return $ok
}

wait_ready() {
	local port=$1 pid=$2 deadline=$((SECONDS + START_TIMEOUT_SECONDS))
	while ((SECONDS < deadline)); do
		kill -0 "$pid" 2>/dev/null || return 1
		# Any HTTP answer (an S3 error for an anonymous request) means it serves.
		if command -v curl >/dev/null; then
			if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"; then
				return 0
			fi
		elif (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

write_env() {
	local port=$1
	cat >"$ENV_FILE" <<EOF
export SLUICE_TEST_S3_ENDPOINT=127.0.0.1:$port
export SLUICE_TEST_S3_ACCESS_KEY=$ACCESS_KEY
export SLUICE_TEST_S3_SECRET_KEY=$SECRET_KEY
EOF
}

start_gw() {
	local pid
	if pid="$(running_pid)"; then
		log "already running (pid $pid)"
		cat "$ENV_FILE"
		return 0
	fi
	install_gw
	mkdir -p "$ENV_DIR"
	rm -rf "$DATA_DIR"
	mkdir -p "$DATA_DIR"
	# posix mode keeps object metadata (ETags, content types) in user xattrs;
	# on a filesystem without them (some tmpfs, overlay setups) it needs a
	# sidecar directory instead.
	local meta=()
	if ! xattr_ok "$DATA_DIR"; then
		log "no user xattrs on $DATA_DIR; storing metadata in a sidecar directory"
		rm -rf "$DATA_DIR.meta"
		mkdir -p "$DATA_DIR.meta"
		meta=(--sidecar "$DATA_DIR.meta")
	fi
	local port
	port="$(free_port)"
	# setsid puts the server in its own session so it survives this shell and
	# a Ctrl-C in the calling terminal; stop kills it by pid.
	ROOT_ACCESS_KEY="$ACCESS_KEY" ROOT_SECRET_KEY="$SECRET_KEY" \
		setsid "$BIN" --port "127.0.0.1:$port" --quiet posix "${meta[@]}" "$DATA_DIR" \
		>"$LOG_FILE" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$PID_FILE"
	if ! wait_ready "$port" "$pid"; then
		log "versitygw did not answer on 127.0.0.1:$port within ${START_TIMEOUT_SECONDS}s; log follows"
		cat "$LOG_FILE" >&2 || true
		kill "$pid" 2>/dev/null || true
		rm -f "$PID_FILE"
		exit 1
	fi
	write_env "$port"
	log "versitygw $VERSITYGW_VERSION running on 127.0.0.1:$port (pid $pid, data $DATA_DIR, log $LOG_FILE)"
	cat "$ENV_FILE"
}

stop_gw() {
	local pid
	if ! pid="$(running_pid)"; then
		log "not running"
		rm -f "$PID_FILE" "$ENV_FILE"
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
	rm -f "$PID_FILE" "$ENV_FILE"
	log "stopped (pid $pid)"
}

case "${1:-}" in
install) install_gw ;;
start) start_gw ;;
stop) stop_gw ;;
env)
	running_pid >/dev/null || die "not running"
	cat "$ENV_FILE"
	;;
*)
	echo "usage: $0 install|start|stop|env" >&2
	exit 2
	;;
esac
