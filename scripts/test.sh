#!/usr/bin/env bash
# test.sh is the one test command (make test, .ci/run): it installs what the
# tests need, starts the real servers on loopback, runs the suite and stops
# the servers again, whatever happens.
#
#   scripts/test.sh          the default suite (gofmt, vet, race tests with a real S3 server)
#   scripts/test.sh long     only the long runs (SLUICE_LONG=1): 25 kills over 1M+ records,
#                            dev's first summaries and its dashboard in Chromium; CI runs
#                            it after the default suite
#   scripts/test.sh faults   only the fault-injection suite (SLUICE_FAULTS=1): S3 down and
#                            slow, broker restarts, replicas joining and leaving, aggregators
#                            killed and racing, Kinesis ingesters killed, resharded, scaled
#                            and throttled; CI runs it too
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode="${1:-default}"

step() { printf '\n== %s\n' "$*"; }

if [[ "$mode" == "default" ]]; then
step "gofmt"
unformatted="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.tools/*'))"
if [[ -n "$unformatted" ]]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step "go vet"
go vet ./...

step "go mod tidy (go.mod and go.sum as committed)"
for mod in . tools/duckdbcheck; do
	if ! (cd "$mod" && go mod tidy -diff); then
		echo "go mod tidy would change $mod/go.mod or go.sum (above): run it there and commit the result"; exit 1
	fi
done
fi

step "real S3 server (versitygw)"
scripts/versitygw.sh install
scripts/versitygw.sh start >/dev/null
trap 'scripts/versitygw.sh stop >/dev/null 2>&1 || true' EXIT
# shellcheck disable=SC1091
. ./.testenv/versitygw.env

step "Kinesis-compatible server (kinesalite)"
scripts/kinesalite.sh install
scripts/kinesalite.sh start >/dev/null
trap 'scripts/versitygw.sh stop >/dev/null 2>&1 || true; scripts/kinesalite.sh stop >/dev/null 2>&1 || true' EXIT
# shellcheck disable=SC1091
. ./.testenv/kinesalite.env

export CI="${CI:-}"
if [[ "$mode" == "long" ]]; then
	step "long runs (SLUICE_LONG=1)"
	SLUICE_LONG=1 go test -race -count=1 -timeout 40m -run 'TestCrash|TestDev' ./cmd/sluice
elif [[ "$mode" == "faults" ]]; then
	step "fault suite (SLUICE_FAULTS=1)"
	SLUICE_FAULTS=1 go test -count=1 -timeout 20m -v -run 'TestFaults$|TestKinesisFaults$' ./cmd/sluice
	# Ops: 12 SIGKILLs of the rule evaluator and the webhook receiver.
	SLUICE_FAULTS=1 go test -count=1 -timeout 10m -v -run 'TestOpsCrashEventRules$' ./ops
	# The batch source: ~20 SIGKILLs over 208 files (one of 110 MB), two
	# and three batch processes sharing an inbox, and a holder stopped
	# (SIGSTOP) past its lease, taken over, then woken (about 2 minutes).
	SLUICE_FAULTS=1 go test -count=1 -timeout 10m -v -run 'TestFaultsBatch' ./ingest/inbox
	# The web tier: SIGKILL of an HTTP ingest server under load, a body
	# slower than the read timeout.
	SLUICE_FAULTS=1 go test -count=1 -timeout 5m -v -run 'TestFaults' ./ingest/httpin ./web
	# Each fuzz target for a fixed number of executions (about its old 10-30 s
	# here); a crasher is written under testdata/fuzz/ and fails the run
	# (commit it: it stays a regression test). Counts, not durations: with a
	# duration, Go 1.26's fuzz coordinator can report its own deadline as a
	# failure when a loaded machine leaves a worker mid-call at the boundary
	# (golang/go#75804, fixed in Go 1.27); a count has no deadline to race.
	# -timeout still ends a target that hangs.
	step "fuzzing (fixed executions per target)"
	go test -timeout 5m -run '^$' -fuzz '^FuzzDecode$' -fuzztime 80000x -fuzzminimizetime 5s ./schema
	go test -timeout 5m -run '^$' -fuzz '^FuzzParse$' -fuzztime 25000x -fuzzminimizetime 5s ./schema
	go test -timeout 5m -run '^$' -fuzz '^FuzzHandlers$' -fuzztime 60000x -fuzzminimizetime 5s ./internal/httpserver
	go test -timeout 5m -run '^$' -fuzz '^FuzzIngestBody$' -fuzztime 60000x -fuzzminimizetime 5s ./ingest/httpin
	go test -timeout 5m -run '^$' -fuzz '^FuzzQueryParams$' -fuzztime 60000x -fuzzminimizetime 5s ./web/query
	go test -timeout 5m -run '^$' -fuzz '^FuzzJSONString$' -fuzztime 60000x -fuzzminimizetime 5s ./web/query
	go test -timeout 5m -run '^$' -fuzz '^FuzzTokenParse$' -fuzztime 80000x -fuzzminimizetime 5s ./web/auth
else
	# Before the Go tests: it installs prometheus, which the dashboard test runs.
	step "deploy files (compose, promtool, dashboards, static build)"
	scripts/deploy-check.sh
	step "go test -race"
	go test -race -count=1 -timeout 20m ./...
fi
