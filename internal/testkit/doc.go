// Package testkit holds the fixtures that tests of many packages share, so
// that each exists once: the sample table (SampleTable), a self-signed TLS
// certificate (NewCert), peak heap measurement (PeakHeap), and child
// processes: the sluice binary (SluiceBinary), children with their logs
// (Procs, Proc), the test binary re-run as a helper (TestBinaryCmd), a
// free address to give them (FreeAddr).
//
// It depends on the schema package and the standard library only, so that
// any package's internal tests may import it. Fixtures that need the ingest
// writer or a Kafka broker are in ingesttest and kafkatest. Production code
// must not import any of them (internal/layout checks).
package testkit
