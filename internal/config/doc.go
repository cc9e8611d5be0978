// Package config reads sluice.yaml: one file for every subcommand, each
// reading the sections it needs. It owns the file's ${VAR} expansion,
// defaults and validation across sections; each section's own rules live
// with the package that uses it. It opens nothing and starts nothing.
package config
