// Package httpin is the HTTP source: events posted to
// /v1/tables/{table}/events become records of one chain partition per
// table and server instance, with positions the server assigns. A request
// is answered 200 only once its records are committed to the lake; until
// then the server keeps them in memory, so a failed flush is redone from
// there (the Rewind of the source seam) rather than lost.
//
// Every start of the server is a new incarnation of its partitions (a
// reset link with a fresh source id, positions from 0 again): records an
// earlier incarnation held but never committed are then told apart from
// new ones, which is what lets an Idempotency-Key retry find out exactly
// which records of a request made it (see idempotency.go).
//
// It owns its partitions' positions and the requests waiting for their
// commit. It must not know the other sources nor the web tier's routing and
// authentication, which mount its handler.
package httpin
