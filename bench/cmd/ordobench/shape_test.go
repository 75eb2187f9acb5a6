package main

import (
	"context"
	"encoding/gob"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ordo-dev/ordo/producer"
)

// The shaped pass-through's templates are the pipeline's own output for
// the same events, minus the ordo-input header it adds per input. (The
// generator draws ids at random, so a second fixture's events have other
// ids: records are compared by topic, sizes and header keys.)
func TestWriteShapeKeepsThePipelinesRecords(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shape.gob")
	const n = 200
	st, err := writeShape(ctx, filepath.Join("..", "..", ".."), path, n)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var evs []shapeEvent
	if err := gob.NewDecoder(f).Decode(&evs); err != nil {
		t.Fatal(err)
	}
	if len(evs) != n || st.Events != n {
		t.Fatalf("%d templates (stats %d), want %d", len(evs), st.Events, n)
	}
	fx := newPipelineFixture(t, n)
	records := 0
	for i, r := range fx.recs {
		want, err := fx.commands(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		got := evs[i].Records
		if len(got) != len(want) {
			t.Fatalf("event %d: %d records, pipeline made %d", i, len(got), len(want))
		}
		for j, w := range want {
			g := got[j]
			if g.Topic != w.Topic || len(g.Value) != len(w.Value) {
				t.Errorf("event %d record %d: %s %d B, pipeline: %s %d B", i, j, g.Topic, len(g.Value), w.Topic, len(w.Value))
			}
			if !slices.Contains(commandTopics, g.Topic) {
				t.Errorf("event %d: topic %s is not a command topic", i, g.Topic)
			}
			var keys []string
			for _, h := range w.Headers {
				if h.Key != producer.HeaderInput {
					keys = append(keys, h.Key)
				}
			}
			var gotKeys []string
			for _, h := range g.Headers {
				gotKeys = append(gotKeys, h.Key)
			}
			if !slices.Equal(gotKeys, keys) {
				t.Errorf("event %d record %d: headers %v, want the pipeline's %v without ordo-input", i, j, gotKeys, keys)
			}
			for _, h := range g.Headers {
				if h.Key == producer.HeaderInput {
					t.Errorf("event %d record %d keeps ordo-input (the pass-through writes its own)", i, j)
				}
			}
		}
		records += len(got)
	}
	if records <= n || st.Records != records || st.Headers <= st.Records || st.Topics < 3 {
		t.Errorf("stats %+v for %d records of %d events: want more than one record per event (the mix), every record's headers counted, several topics", st, records, n)
	}
}
