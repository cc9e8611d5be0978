# Every target runs on a fresh machine: the scripts install and start what
# they need (versitygw, a broker process) and stop it afterwards.

GO ?= go

.PHONY: test test-long faults build bench bench-ingest dev clean mutation

## test: the default suite (gofmt, vet, race tests against a real S3 server and broker)
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

## mutation: mutation testing (gremlins) of PKGS, e.g. make mutation PKGS="./aggregate:plan ./schema";
## PKG:FILES mutates only the files matching FILES. Scores are in RELIABILITY.md.
# The commit-protocol package: ./lake once sink/ is split into objstore/ and lake/.
COMMIT_PROTOCOL_PKG ?= ./sink
PKGS ?= $(COMMIT_PROTOCOL_PKG)
mutation:
	scripts/mutation.sh $(PKGS)
