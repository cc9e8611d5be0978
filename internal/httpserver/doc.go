// Package httpserver is the binary's one HTTP listener: Prometheus metrics,
// liveness and readiness probes, and whatever handlers later components
// (query API, dashboard, HTTP ingest) mount on it.
//
// It owns the listener, its timeouts and probes. It must not know what the
// handlers mounted on it do.
package httpserver
