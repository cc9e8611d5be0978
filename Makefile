# Every target runs on a fresh machine: the scripts install and start what
# they need (versitygw, a broker process) and stop it afterwards.

GO ?= go

.PHONY: test test-long faults duckdb-check build bench bench-aggregate-duckdb bench-ingest bench-ingest-kinesis bench-micro bench-aggregate bench-loadtest dev clean mutation mutation-ci

## test: the default suite (gofmt, vet, deploy files, race tests against a real S3 server and broker);
## it apt-installs prometheus, docker-compose and jq when missing, which needs root (see README, Tests)
test:
	scripts/test.sh

## test-long: the long crash and dev runs only (CI runs it after make test)
test-long:
	scripts/test.sh long

## duckdb-check: the README's DuckDB query (duckdb-go, cgo) against a lake with a crashed flush
## and compactions, and after SIGKILLs of sluice dev; a module of its own, so that go test ./...
## does not build DuckDB. SLUICE_DUCKDB_LAKE=<dir> also checks that local lake.
duckdb-check:
	cd tools/duckdbcheck && CGO_ENABLED=1 $(GO) test -count=1 ./...

build:
	$(GO) build -o bin/sluice ./cmd/sluice

## dev: the whole pipeline on embedded defaults
dev:
	$(GO) run ./cmd/sluice dev

clean:
	rm -rf bin .testenv sluice-data $(BENCH_OUT)

# Benchmarks. BENCHMARKS.md gives each ranged row as the range of
# BENCH_RUNS runs; the load-test reports go to BENCH_OUT. Run on a quiet
# machine: all of it takes about a quarter of an hour on 2 cores.
BENCH_RUNS ?= 3
BENCH_OUT ?= bench-out

## bench: every figure in BENCHMARKS.md (ingest from Kafka and Kinesis, micro-benchmarks, aggregation, load test)
bench: bench-ingest bench-ingest-kinesis bench-micro bench-aggregate bench-loadtest

## bench-ingest: Kafka -> committed raw Parquet, end to end (BENCH_RUNS runs)
bench-ingest: build
	for i in $$(seq $(BENCH_RUNS)); do bin/sluice bench ingest --events 2000000 --partitions 8 || exit 1; done

## bench-ingest-kinesis: a Kinesis stream (kinesalite, started and stopped here) -> committed raw Parquet,
## and the Kafka variant on the same events (same N, seed and partition count), BENCH_RUNS runs each
KINESIS_BENCH_EVENTS ?= 200000
KINESIS_BENCH_SHARDS ?= 4
bench-ingest-kinesis: build
	scripts/kinesalite.sh start >/dev/null
	. ./.testenv/kinesalite.env && for i in $$(seq $(BENCH_RUNS)); do \
		bin/sluice bench ingest --source kinesis --kinesis-endpoint $$SLUICE_TEST_KINESIS_ENDPOINT --kinesis-pid $$(cat .testenv/kinesalite.pid) \
			--events $(KINESIS_BENCH_EVENTS) --partitions $(KINESIS_BENCH_SHARDS) || { scripts/kinesalite.sh stop; exit 1; }; \
		bin/sluice bench ingest --events $(KINESIS_BENCH_EVENTS) --partitions $(KINESIS_BENCH_SHARDS) || { scripts/kinesalite.sh stop; exit 1; }; \
	done
	scripts/kinesalite.sh stop

## bench-micro: the hot path on one core (decode, Parquet encode) and the decoders it was chosen against
bench-micro:
	$(GO) test -run '^$$' -bench 'BenchmarkDecode$$|BenchmarkDecodeAlternatives|BenchmarkWriteParquet' -benchtime 2s ./schema

## bench-aggregate: the real `sluice aggregate --once` pass over committed raw objects (1m and 1h windows,
## BENCH_RUNS rounds each), then the in-memory fold alone (micro-benchmarks) and BenchmarkAggregate
bench-aggregate: build
	bin/sluice bench aggregate --events 2000000 --window 1m --rounds $(BENCH_RUNS)
	bin/sluice bench aggregate --events 2000000 --window 1h --rounds $(BENCH_RUNS)
	for i in $$(seq $(BENCH_RUNS)); do bin/sluice bench aggregate --fold-only --events 2000000 --events-per-second 1000 --window 1m || exit 1; done
	for i in $$(seq $(BENCH_RUNS)); do bin/sluice bench aggregate --fold-only --events 2000000 --events-per-second 1000 --window 1h || exit 1; done
	$(GO) test -run '^$$' -bench BenchmarkAggregate -benchtime 2x ./aggregate

## bench-loadtest: the load-test rows (flat out, 250k/s, 125k/s), reports in BENCH_OUT
bench-loadtest: build
	mkdir -p $(BENCH_OUT)
	bin/sluice loadtest --embedded --duration 30s --rate 0 --report-json $(BENCH_OUT)/flat.json --report-html $(BENCH_OUT)/flat.html
	bin/sluice loadtest --embedded --duration 60s --rate 250000 --report-json $(BENCH_OUT)/r250k.json --report-html $(BENCH_OUT)/r250k.html
	bin/sluice loadtest --embedded --duration 60s --rate 125000 --report-json $(BENCH_OUT)/r125k.json --report-html $(BENCH_OUT)/r125k.html

## bench-aggregate-duckdb: the real `sluice aggregate --once` pass and DuckDB's equivalent query (2 threads)
## on the same committed files, interleaved round by round, with the ratio of medians (cgo: DuckDB)
bench-aggregate-duckdb: build
	cd tools/duckdbcheck && CGO_ENABLED=1 $(GO) run ./aggbench --sluice ../../bin/sluice --events 2000000 --rounds $(BENCH_RUNS)

## faults: the fault-injection suite (real processes: S3 down and slow, broker restarts, replicas, aggregators)
faults:
	scripts/test.sh faults

## mutation: mutation testing (gremlins) of PKGS, e.g. make mutation PKGS="./aggregate:plan ./schema:timeparse,decode";
## PKG:FILES mutates only the listed files. Scores are in RELIABILITY.md.
# The commit-protocol package.
COMMIT_PROTOCOL_PKG ?= ./lake
PKGS ?= $(COMMIT_PROTOCOL_PKG)
mutation:
	scripts/mutation.sh $(PKGS)

## mutation-ci: the commit protocol's files, as .ci/run runs them: two workers, and the lake's
## tests on the local store only (no S3 server in the loop), so each mutant is one build and seconds
mutation-ci:
	env -u CI -u SLUICE_TEST_S3_ENDPOINT -u SLUICE_TEST_S3_ACCESS_KEY -u SLUICE_TEST_S3_SECRET_KEY \
		MUTATION_WORKERS=2 scripts/mutation.sh $(COMMIT_PROTOCOL_PKG):commitlog,checkpoint
