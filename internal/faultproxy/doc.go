// Package faultproxy is an HTTP reverse proxy on loopback that puts faults
// between a client and a server: it can stop listening (the server looks
// down: connections are refused, open ones are cut), answer slowly (a
// delay before each request is forwarded) and answer a random share of
// chosen requests with an error (see Failures). The fault suite puts it in front
// of the S3 server to show that ingestion rides out an outage and a slow
// store without losing, duplicating or hoarding records.
//
// The Host header is passed through unchanged, so signed requests (S3
// SigV4) stay valid when the client is pointed at the proxy.
//
// It can also play an S3-compatible server without conditional writes
// (IgnoreConditionalWrites): conditional headers are stripped from PUTs,
// which are signed again so that the server accepts them; and it can hold
// chosen requests in flight until released (HoldRequests), as a network
// path that stalls one client's write.
//
// It is test support only and knows nothing of Sluice's packages.
package faultproxy
