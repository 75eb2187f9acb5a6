package state

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestKeyInRangeIsBytewise: the string comparison keyInRange uses orders
// keys exactly as bytes.Compare, including bytes >= 0x80 and prefixes.
func TestKeyInRangeIsBytewise(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	key := func() []byte {
		b := make([]byte, rng.IntN(5))
		for i := range b {
			b[i] = []byte{0, 1, 'a', 'b', 0x7f, 0x80, 0xff}[rng.IntN(7)]
		}
		return b
	}
	for range 200000 {
		k, lo, hi := key(), key(), key()
		if rng.IntN(4) == 0 {
			hi = nil
		}
		want := bytes.Compare(k, lo) >= 0 && (hi == nil || bytes.Compare(k, hi) < 0)
		if got := keyInRange(string(k), lo, hi); got != want {
			t.Fatalf("keyInRange(%x, %x, %x) = %v, want %v", k, lo, hi, got, want)
		}
	}
}
