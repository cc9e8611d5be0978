// Package page serves the dashboard: static assets embedded in the binary
// (no CDN), with ETags and cache headers. The page itself uses only the
// public query API, with the read-scoped token it is given in the URL's
// fragment.
//
// It must not know the query API's internals: the page talks to it over HTTP
// like any client.
package page
