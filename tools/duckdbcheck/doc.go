// Package duckdbcheck reads the lake with DuckDB the way the README says.
package duckdbcheck
