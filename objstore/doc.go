// Package objstore holds the object-store interface that every part of Sluice
// writes through, its S3 and local-directory implementations, and the retry
// and metrics decorators that keep the interface. Which objects are committed
// is the lake package's business, not the store's.
package objstore
