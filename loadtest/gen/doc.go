// Package gen generates realistic, reproducible events for the sample table
// `events` (schema/tables/events.yaml) and produces them to Kafka at a
// target rate. The same Config (with a fixed Seed and no Clock) yields the
// same bytes, so a verifier can regenerate exactly what a load test sent.
//
// It knows nothing of Sluice's packages, so that its truth shares no code
// with what it checks.
package gen
