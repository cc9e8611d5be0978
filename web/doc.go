// Package web is Sluice's three-tier web pattern on one listener: HTTP
// ingest (a source beside Kafka and Kinesis), a query API over the
// summaries, API keys and tokens, and a dashboard page that uses only the
// public query API. It mounts its handlers on the binary's httpserver
// (timeouts, health, metrics) and owns nothing else.
package web
