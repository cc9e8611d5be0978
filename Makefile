# Every target runs on a fresh machine: the scripts install and start what
# they need (versitygw, a broker process) and stop it afterwards.

GO ?= go

.PHONY: test test-long faults build bench bench-ingest dev clean

## test: the default suite (gofmt, vet, deploy files, race tests against a real S3 server and broker);
## it apt-installs prometheus, docker-compose and jq when missing, which needs root (see README, Tests)
test:
	scripts/test.sh

## test-long: the long crash and dev runs only (CI runs it after make test)
test-long:
	scripts/test.sh long

build:
	$(GO) build -o bin/sluice ./cmd/sluice

## dev: the whole pipeline on embedded defaults
dev:
	$(GO) run ./cmd/sluice dev

clean:
	rm -rf bin .testenv sluice-data

## bench: the end-to-end benchmarks recorded in BENCHMARKS.md
bench:
	$(GO) run ./cmd/sluice bench ingest --events 2000000 --partitions 8
	$(GO) run ./cmd/sluice bench aggregate --events 2000000 --window 1m

bench-ingest:
	$(GO) run ./cmd/sluice bench ingest --events 2000000 --partitions 8

## faults: the fault-injection suite (real processes: S3 down and slow, broker restarts, replicas, aggregators)
faults:
	scripts/test.sh faults
