// Package kinesistest drives a real Kinesis-compatible server (kinesalite,
// started by scripts/kinesalite.sh) in tests: streams, producers that keep
// PutRecords' answers as the truth, resharding, and a reader of what the
// lake committed.
//
// It is test support only: no production package imports it.
package kinesistest
