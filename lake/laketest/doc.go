// Package laketest holds the acceptance suites of the lake's store-like
// parts (the commit log, the sweeper) and the counting bucket tests use to
// see which requests they make, run against the local store and a real S3
// server alike. It is test support only: no production package imports it.
package laketest
