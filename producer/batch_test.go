package producer

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/processors"
)

// TestCommandsRecordsAreIndependent: an event's records share one
// allocation (batch1, batch2) or a few (more commands), and still behave
// as separate records: every value and header slice is capped at its
// length, so appending to one (kotel adds headers when producing) leaves
// the others as they were, whether the bytes fit the batch's array or
// outgrew it; and the records keep their contents across GCs.
func TestCommandsRecordsAreIndependent(t *testing.T) {
	in := &kgo.Record{Topic: "in", Partition: 1, Offset: 7, Key: []byte("k"), Value: []byte("input")}
	for _, n := range []int{1, 2, 3} {
		for _, size := range []int{10, 1000} { // within and beyond the batch's byte array
			t.Run(fmt.Sprintf("%d commands of %d bytes", n, size), func(t *testing.T) {
				cmds := make([]processors.Command, n)
				for i := range cmds {
					cmds[i] = processors.Command{Topic: fmt.Sprintf("t%d", i), Type: "com.acme.C", Key: []byte("k"),
						Value:   map[string]any{},
						Headers: []processors.Header{{Key: "own", Value: []byte(fmt.Sprintf("h%d", i))}}}
				}
				o := NewOutput(sizedEncoder{size}, "dlq", "g")
				recs, err := o.Commands(context.Background(), in, cmds)
				if err != nil {
					t.Fatal(err)
				}
				if len(recs) != n {
					t.Fatalf("%d records, want %d", len(recs), n)
				}
				type snap struct {
					value   []byte
					headers []kgo.RecordHeader
				}
				copyOf := func(r *kgo.Record) snap {
					s := snap{value: bytes.Clone(r.Value)}
					for _, h := range r.Headers {
						s.headers = append(s.headers, kgo.RecordHeader{Key: h.Key, Value: bytes.Clone(h.Value)})
					}
					return s
				}
				before := make([]snap, n)
				for i, r := range recs {
					if r.Topic != cmds[i].Topic || len(r.Value) != size {
						t.Fatalf("record %d: topic %s, %d value bytes; want %s, %d", i, r.Topic, len(r.Value), cmds[i].Topic, size)
					}
					if cap(r.Value) != len(r.Value) || cap(r.Headers) != len(r.Headers) {
						t.Fatalf("record %d: value cap %d len %d, headers cap %d len %d: an append would write into a neighbour",
							i, cap(r.Value), len(r.Value), cap(r.Headers), len(r.Headers))
					}
					for _, h := range r.Headers {
						// The command's own headers are its slices, passed through.
						if h.Key != "own" && cap(h.Value) != len(h.Value) {
							t.Fatalf("record %d header %s: cap %d len %d", i, h.Key, cap(h.Value), len(h.Value))
						}
					}
					if v, _ := header(r, "own"); v != fmt.Sprintf("h%d", i) {
						t.Fatalf("record %d: own header %q", i, v)
					}
					before[i] = copyOf(r)
				}
				for i, r := range recs {
					r.Value = append(r.Value, "XXXXXXXX"...)
					r.Headers = append(r.Headers, kgo.RecordHeader{Key: "added", Value: []byte("YYYYYYYY")})
					for j, other := range recs {
						if j == i {
							continue
						}
						if got := copyOf(other); !bytes.Equal(got.value, before[j].value) || fmt.Sprint(got.headers) != fmt.Sprint(before[j].headers) {
							t.Fatalf("appending to record %d changed record %d", i, j)
						}
					}
					r.Value, r.Headers = r.Value[:len(before[i].value)], r.Headers[:len(before[i].headers)]
				}
				runtime.GC()
				runtime.GC()
				for i, r := range recs {
					if got := copyOf(r); !bytes.Equal(got.value, before[i].value) || fmt.Sprint(got.headers) != fmt.Sprint(before[i].headers) {
						t.Fatalf("record %d changed across GCs", i)
					}
				}
			})
		}
	}
}

// appendEncoder appends n zero bytes without allocating (sizedEncoder's
// bytes.Repeat allocates), so the counts below are Commands' own.
type appendEncoder struct{ n int }

func (e appendEncoder) AppendEncoded(_ context.Context, dst []byte, _, _ string, _ any) ([]byte, error) {
	return append(dst, make([]byte, e.n)...), nil
}

// TestCommandsAllocations: one or two commands are encoded with one
// allocation for all their records.
func TestCommandsAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race; the plain run checks them")
	}
	in := &kgo.Record{Topic: "in", Key: []byte("k"), Value: []byte("input")}
	o := NewOutput(appendEncoder{50}, "dlq", "g")
	for _, n := range []int{1, 2} {
		cmds := make([]processors.Command, n)
		for i := range cmds {
			cmds[i] = processors.Command{Topic: "t", Type: "com.acme.C", Key: []byte("k"), Value: map[string]any{}}
		}
		got := testing.AllocsPerRun(200, func() {
			if _, err := o.Commands(context.Background(), in, cmds); err != nil {
				t.Fatal(err)
			}
		})
		if got > 1 {
			t.Errorf("%d commands: %.1f allocations, want 1", n, got)
		}
	}
}
