// Package arena hands out short-lived values carved from blocks that several
// of them share, so that the hot path pays one allocation per block instead
// of one per value.
//
// A Blocks is safe for concurrent use: its blocks are pooled (sync.Pool),
// and a caller takes a block, carves its value (and value slots) out of it
// and puts the block back at once. A carved part is never carved again, so
// it is its caller's alone; the block is only memory that several callers'
// values live in. Go's garbage collector keeps a block alive while any value
// in it is referenced, which is what makes this safe, and also what it
// costs: a value kept long after its event keeps its block, and its
// neighbours' memory, alive. The blocks are small (PerBlock values and
// SlotChunk slots) to bound that.
package arena

import "sync"

const (
	// PerBlock is how many values of T one block holds: more means fewer
	// allocations and more memory kept alive by one retained value.
	PerBlock = 8
	// SlotChunk is how many `any` slots one slot chunk holds (4 KiB).
	SlotChunk = 256
)

// Blocks carves values of type T, each with room for value slots, from
// pooled blocks. The zero value is ready to use; a Blocks must not be
// copied after first use.
type Blocks[T any] struct {
	pool sync.Pool // of *block[T]
}

type block[T any] struct {
	items [PerBlock]T
	n     int
	slots []any // the unused rest of the current slot chunk
}

// Take returns a zeroed *T and n zeroed slots (length n, capacity n: an
// append copies out), both the caller's alone.
func (b *Blocks[T]) Take(n int) (*T, []any) {
	blk, _ := b.pool.Get().(*block[T])
	if blk == nil || blk.n == PerBlock {
		var rest []any
		if blk != nil {
			rest = blk.slots // the full block's unused slots go to its successor
		}
		blk = &block[T]{slots: rest}
	}
	v := &blk.items[blk.n]
	blk.n++
	var slots []any
	if n > 0 {
		if len(blk.slots) < n {
			blk.slots = make([]any, max(n, SlotChunk))
		}
		slots = blk.slots[:n:n]
		blk.slots = blk.slots[n:]
	}
	b.pool.Put(blk)
	return v, slots
}
