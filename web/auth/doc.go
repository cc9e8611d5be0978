// Package auth is the web tier's access control: API keys stored hashed in
// the lake, scopes per key (append:<table>, read:<table>, admin), short
// signed tokens with fixed filters for read-only embedding, and a rate
// limit per key.
//
// It owns keys, scopes, tokens and rate limits. It must not know ingestion,
// summaries or the rest of the web tier, which ask it whether a request may
// pass.
package auth
