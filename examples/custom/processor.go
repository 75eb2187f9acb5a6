// Command custom is an ordo binary with a user-defined processor, compiled by
// the user. It shows how to extend ordo without forking it: write a
// processors.Factory, register it under a type name, and start ordo's CLI with
// the extended registry. The pipeline config can then use the new type:
//
//	pipeline:
//	  - type: fraud_score
//	    config:
//	      high_total: 1000     # orders above this score 50 points (default 1000)
//	      risky_countries: [XX]
//	  - type: orchestrate
//	    config:
//	      routes:
//	        - on: com.acme.checkout.OrderPlaced
//	          when: attrs.fraud_score < 80
//	          emit: [...]
//
// Processors must be deterministic and side-effect free (ordo re-runs them
// after a transaction abort); fraud_score is a pure function of the event.
package main

import (
	"context"
	"fmt"
	"math/big"

	"github.com/ordo-dev/ordo/processors"
)

// Register adds the example's processor types to r.
func Register(r *processors.Registry) error {
	return r.Register("fraud_score", newFraudScore)
}

type fraudScoreConfig struct {
	HighTotal      float64  `yaml:"high_total"`
	RiskyCountries []string `yaml:"risky_countries"`
}

type fraudScore struct {
	highTotal *big.Rat
	risky     map[string]bool
}

func newFraudScore(spec processors.Spec, _ processors.Deps) (processors.Processor, error) {
	cfg := fraudScoreConfig{HighTotal: 1000}
	if err := spec.Decode(&cfg); err != nil {
		return nil, err
	}
	if cfg.HighTotal <= 0 {
		return nil, spec.Errorf(&spec.Config, "high_total must be positive, got %v", cfg.HighTotal)
	}
	p := &fraudScore{highTotal: new(big.Rat).SetFloat64(cfg.HighTotal), risky: map[string]bool{}}
	for _, c := range cfg.RiskyCountries {
		p.risky[c] = true
	}
	return p, nil
}

// ReadsRecords: Process reads the event with ev.Get and processors.Field,
// which work on the decoder's records as well as on maps, so ordo does not
// build a map of the event for it (see processors.RecordReader). A
// processor that reads ev.Value directly leaves this method out.
func (p *fraudScore) ReadsRecords() bool { return true }

// Process sets attrs.fraud_score (int64, 0..100) for OrderPlaced events:
// +50 for a total above high_total, +30 for a risky shipping country, +20 for
// more than 10 units in total. Other event types pass through untouched.
func (p *fraudScore) Process(_ context.Context, ev *processors.Event) ([]processors.Command, error) {
	if ev.Type != "com.acme.checkout.OrderPlaced" {
		return nil, nil
	}
	var score int64
	if total, ok := processors.As[*big.Rat](ev.Get("total")); ok && total.Cmp(p.highTotal) > 0 {
		score += 50
	}
	if c, _ := processors.As[string](ev.Get("shipping_country")); p.risky[c] {
		score += 30
	}
	items, _ := processors.As[[]any](ev.Get("items"))
	var units int64
	for _, it := range items {
		q, ok := processors.Field(it, "qty")
		if !ok {
			return nil, processors.Permanent(fmt.Errorf("fraud_score: item is %T without qty, want a record", it))
		}
		n, _ := q.(int32)
		units += int64(n)
	}
	if units > 10 {
		score += 20
	}
	if ev.Attrs == nil {
		ev.Attrs = map[string]any{}
	}
	ev.Attrs["fraud_score"] = score
	return nil, nil
}
