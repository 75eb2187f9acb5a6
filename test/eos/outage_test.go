package eos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/schemas"
)

// registerPaymentV2 registers a new writer version of PaymentAuthorized
// (one more optional field) under its subject on the payments topic (the
// topic_record_name subject newSerde uses, so the registry checks it
// against PaymentAuthorized v1: BACKWARD compatible) and returns
// it with its id.
func (g *generator) registerPaymentV2(ctx context.Context) (*schemas.Schema, error) {
	readers, err := schemas.Demo()
	if err != nil {
		return nil, err
	}
	var s map[string]any
	if err := json.Unmarshal([]byte(readers[tPaymentAuthorized].Text), &s); err != nil {
		return nil, err
	}
	s["fields"] = append(s["fields"].([]any), map[string]any{"name": "risk_score", "type": []any{"null", "double"}, "default": nil})
	text, _ := json.Marshal(s)
	body, _ := json.Marshal(map[string]string{"schema": string(text)})
	url := fmt.Sprintf("%s/subjects/%s/versions", g.sc.regURL, schemas.TopicRecordName.Subject(g.sc.tp.payments, tPaymentAuthorized, false))
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		ID int `json:"id"`
	}
	if resp.StatusCode != 200 {
		msg, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("register v2: HTTP %d: %s", resp.StatusCode, msg)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	return schemas.ParseSchema(out.ID, string(text))
}

// buildOutageTraffic pre-encodes m events (so that nothing needs the
// registry while it is down): every other one a PaymentAuthorized written
// with v2, the rest ordinary events with ids the SDK has cached.
func (g *generator) buildOutageTraffic(ctx context.Context, v2 *schemas.Schema, m int) ([]*kgo.Record, []event, []bool, error) {
	recs := make([]*kgo.Record, 0, m)
	evs := make([]event, 0, m)
	isV2 := make([]bool, 0, m)
	for i := 0; i < m; i++ {
		if i%2 == 1 {
			r, ev, err := g.build(ctx)
			if err != nil {
				return nil, nil, nil, err
			}
			recs, evs, isV2 = append(recs, r), append(evs, ev), append(isV2, false)
			continue
		}
		g.mu.Lock()
		g.next++
		seq := g.next
		rng := rand.New(rand.NewPCG(uint64(seq), g.rng.Uint64()))
		g.mu.Unlock()
		k := int32(rng.IntN(g.opts.keys))
		key := g.key(k)
		v := map[string]any{
			"envelope": map[string]any{
				"id": g.id(seq), "type": tPaymentAuthorized, "source": "eos-v2", "time": time.Now().UTC().Truncate(time.Millisecond),
				"correlation_id": key, "causation_id": nil,
			},
			"order_id": key, "payment_id": fmt.Sprintf("pay-%d", seq), "amount": big.NewRat(int64(1000+rng.IntN(90000)), 100),
			"currency": "EUR", "risk_score": 0.25,
		}
		b, err := v2.AppendNatural(schemas.AppendHeader(nil, v2.ID), v)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("encode v2: %w", err)
		}
		recs = append(recs, &kgo.Record{Topic: g.sc.tp.payments, Key: []byte(key), Value: b})
		evs = append(evs, event{kind: kindValid, typ: typeIndex(tPaymentAuthorized), seq: seq, key: k})
		isV2 = append(isV2, true)
	}
	return recs, evs, isV2, nil
}

// produceBuilt produces pre-built records and returns where the v2 ones landed.
func (g *generator) produceBuilt(ctx context.Context, recs []*kgo.Record, evs []event, isV2 []bool) ([]inRef, error) {
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		v2s []inRef
	)
	for i, r := range recs {
		ev, v2 := evs[i], isV2[i]
		wg.Add(1)
		g.cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				g.setErr(err)
				return
			}
			ev.ref = inRef{r.Topic, r.Partition, r.Offset}
			g.record(ev)
			if v2 {
				mu.Lock()
				v2s = append(v2s, ev.ref)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return v2s, g.Err()
}

// uncommitted counts refs at or past the group's committed offsets.
func (sc *scenario) uncommitted(refs []inRef) int {
	sc.t.Helper()
	adm, done := sc.admin()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := adm.FetchOffsets(kadm.RequireStable(ctx), sc.group)
	if err != nil {
		sc.t.Fatalf("committed offsets: %v", err)
	}
	n := 0
	for _, r := range refs {
		if o, ok := offs.Lookup(r.topic, r.partition); !ok || r.offset >= o.At {
			n++
		}
	}
	return n
}
