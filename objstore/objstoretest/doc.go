// Package objstoretest holds the acceptance suite every objstore.Bucket must pass,
// and helpers that give tests a real bucket: a temporary directory, or a
// fresh bucket on the S3 server named by the environment.
//
// It is test support only: no production package imports it.
package objstoretest
