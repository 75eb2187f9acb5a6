package consumer_test

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// diagnose prints where the records of lost events are (read_uncommitted):
// their input offsets and any output copies with the producer id and epoch
// that wrote them. Set ORDO_DEBUG_LOG_DIR to also get each replica's
// franz-go log.
func (e *env) diagnose(lost map[string]bool) {
	cl, _ := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(e.input, e.output), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadUncommitted()))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if (h.Key == "ordo-id" && r.Topic == e.input && lost[string(h.Value)]) || (h.Key == "ordo-causation-id" && lost[string(h.Value)]) {
					fmt.Printf("DIAG %s p%d @%d %s=%s pid=%d epoch=%d\n", r.Topic, r.Partition, r.Offset, h.Key, h.Value, r.ProducerID, r.ProducerEpoch)
				}
			}
		})
	}
}
