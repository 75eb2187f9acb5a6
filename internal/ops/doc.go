// Package ops holds the logic behind ordo's operator commands: `ordo replay`
// (rewind a stopped group's committed offsets) and `ordo dlq list|show|redrive`
// (inspect dead letters and republish them exactly once). The command line in
// internal/app only parses flags and prints; everything that talks to Kafka is
// here so it can be tested against a real broker.
//
// Every function takes a context and the connection options of the cluster
// (seed brokers, TLS, SASL) and makes the clients it needs; nothing is kept
// between calls.
package ops
