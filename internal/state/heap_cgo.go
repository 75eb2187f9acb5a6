//go:build cgo

package state

// storeOnGoHeap: with cgo, Pebble allocates its block cache and memtables
// with C malloc (internal/manual), outside the Go heap and its soft limit.
const storeOnGoHeap = false
