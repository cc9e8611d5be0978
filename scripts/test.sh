#!/usr/bin/env bash
# test.sh is the one test command (make test, .ci/run): it installs what the
# tests need, starts the real servers on loopback, runs the suite and stops
# the servers again, whatever happens.
#
#   scripts/test.sh          the default suite (gofmt, vet, race tests with a real S3 server)
#   scripts/test.sh long     also the long crash and benchmark-style runs (SLUICE_LONG=1)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode="${1:-default}"

step() { printf '\n== %s\n' "$*"; }

step "gofmt"
unformatted="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.tools/*'))"
if [[ -n "$unformatted" ]]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step "go vet"
go vet ./...

step "real S3 server (versitygw)"
scripts/versitygw.sh install
scripts/versitygw.sh start >/dev/null
trap 'scripts/versitygw.sh stop >/dev/null 2>&1 || true' EXIT
# shellcheck disable=SC1091
. ./.testenv/versitygw.env

step "go test -race"
export CI="${CI:-}"
if [[ "$mode" == "long" ]]; then
	export SLUICE_LONG=1
fi
go test -race -count=1 -timeout 20m ./...
