// Package testkit holds the fixtures many packages' tests share, so that
// each exists once. It depends on the schema package and the standard
// library only, so that any package's internal tests may import it.
//
// Production code must not import it.
package testkit
