// Package settle waits until no transaction is open on Kafka topics.
//
// Kafka answers EndTxn once the coordinator has logged the outcome and
// writes the markers to the partitions after that, so right after a
// transaction ends a partition's last stable offset (what read_committed
// readers see) can still be below its high watermark. Readers that must see
// a final state (a redrive ledger, a verifier, a test) wait here first.
package settle

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Wait polls until every partition of topics has its last stable offset at
// its high watermark, and returns the high watermarks then. After timeout
// (or when ctx ends) it returns an error naming what was still open.
func Wait(ctx context.Context, adm *kadm.Client, timeout time.Duration, topics ...string) (kadm.ListedOffsets, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		hwm, err := adm.ListEndOffsets(ctx, topics...)
		if err == nil {
			err = hwm.Error()
		}
		var lso kadm.ListedOffsets
		if err == nil {
			lso, err = adm.ListCommittedOffsets(ctx, topics...)
		}
		if err == nil {
			err = lso.Error()
		}
		if err != nil {
			// A request cut off by the deadline says less than what the
			// last answered one found still open.
			if ctx.Err() == nil || last == "" {
				last = err.Error()
			}
		} else {
			var open []string
			hwm.Each(func(h kadm.ListedOffset) {
				if l, ok := lso.Lookup(h.Topic, h.Partition); !ok || l.Offset != h.Offset {
					open = append(open, fmt.Sprintf("%s/%d: last stable offset %d < high watermark %d", h.Topic, h.Partition, l.Offset, h.Offset))
				}
			})
			if len(open) == 0 {
				return hwm, nil
			}
			last = strings.Join(open, ", ")
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("transactions on %s did not settle within %v: %s", strings.Join(topics, ", "), timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
