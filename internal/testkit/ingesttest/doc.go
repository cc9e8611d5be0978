// Package ingesttest writes test data through the real ingest writer and
// waits for each flush to commit, so that a test reads a lake exactly as
// an ingester would have left it. It is for tests only; it lives apart
// from testkit because it imports the ingest package, which testkit's
// other users must not depend on.
package ingesttest
