//go:build !cgo

package state

// storeOnGoHeap: without cgo (the release binary and image are built with
// CGO_ENABLED=0), Pebble's block cache and memtables are Go byte slices
// (internal/manual's !cgo New), so they count against the soft memory limit.
const storeOnGoHeap = true
