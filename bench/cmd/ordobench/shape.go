package main

import (
	"context"
	"encoding/gob"
	"fmt"
	"os"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/producer"
)

// The shaped pass-through (contender (a'), bench/cmd/passthrough with
// BENCH_SHAPE) copies no input: for every input record it produces the
// records ordo's pipeline makes of one of the benchmark's events (the
// same command topics, values, and envelope and trace headers; key and
// ordo-input header from its own input). It does the Kafka work of (b)
// without (b)'s decode, chain and encode, so its throughput bounds what
// any ordo pipeline could reach with ordo's output, and (a')/(a) is the
// price of that output against a plain copy.
//
// shapeEvent and shapeRecord are the file's gob types; bench/cmd/passthrough
// declares the same (gob matches fields by name).
type shapeEvent struct{ Records []shapeRecord }

type shapeRecord struct {
	Topic   string
	Value   []byte
	Headers []kgo.RecordHeader // without ordo-input: the pass-through adds its own
}

// shapeStats describes the templates: what ordo produces per event.
type shapeStats struct {
	Events, Records         int
	ValueBytes, HeaderBytes int64 // sums over all records (header keys + values, ordo-input included)
	Headers                 int
	Topics                  int // distinct output topics
}

func (s shapeStats) perEvent() float64 { return float64(s.Records) / float64(max(s.Events, 1)) }

// writeShape runs n of the benchmark's events through ordo's pipeline in
// memory (the (b) config) and writes their output records to path.
func writeShape(ctx context.Context, root, path string, n int) (shapeStats, error) {
	var st shapeStats
	f, err := newPipeline(ctx, root, n)
	if err != nil {
		return st, err
	}
	defer f.close()
	events := make([]shapeEvent, 0, n)
	topics := map[string]bool{}
	for _, r := range f.recs {
		out, err := f.commands(ctx, r)
		if err != nil {
			return st, fmt.Errorf("event %s/%d: %w", r.Topic, r.Offset, err)
		}
		var ev shapeEvent
		for _, o := range out {
			sr := shapeRecord{Topic: o.Topic, Value: append([]byte(nil), o.Value...)}
			for _, h := range o.Headers {
				st.Headers++
				st.HeaderBytes += int64(len(h.Key) + len(h.Value))
				if h.Key == producer.HeaderInput {
					continue
				}
				sr.Headers = append(sr.Headers, kgo.RecordHeader{Key: h.Key, Value: append([]byte(nil), h.Value...)})
			}
			st.Records++
			st.ValueBytes += int64(len(sr.Value))
			topics[sr.Topic] = true
			ev.Records = append(ev.Records, sr)
		}
		events = append(events, ev)
	}
	st.Events, st.Topics = len(events), len(topics)
	file, err := os.Create(path)
	if err != nil {
		return st, err
	}
	if err := gob.NewEncoder(file).Encode(events); err != nil {
		file.Close()
		return st, fmt.Errorf("write %s: %w", path, err)
	}
	return st, file.Close()
}
