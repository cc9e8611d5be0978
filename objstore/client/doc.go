// Package client opens the object store a configuration names: a local
// directory or an S3 bucket, wrapped in the retry and metrics decorators and
// checked for conditional writes. It owns the store section of sluice.yaml;
// it knows nothing of tables, the lake's key layout or the commands that
// open stores.
package client
