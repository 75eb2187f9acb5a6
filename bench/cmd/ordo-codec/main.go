// Command ordo-codec is benchmark contender (c): the ordo binary (ordo.Main)
// with one extra processor type, bench_reemit, that re-emits every decoded
// event unchanged as a command of its own type. A config whose pipeline is
// only bench_reemit measures ordo's decode + encode + EOS path without CEL
// or enrichment.
package main

import (
	"context"
	"os"

	"github.com/ordo-dev/ordo"
	"github.com/ordo-dev/ordo/processors"
)

type reemitConfig struct {
	Topic string `yaml:"topic"`
}

func main() {
	reg := processors.Builtins()
	err := reg.Register("bench_reemit", func(spec processors.Spec, _ processors.Deps) (processors.Processor, error) {
		var c reemitConfig
		if err := spec.Decode(&c); err != nil {
			return nil, err
		}
		if c.Topic == "" {
			c.Topic = "bench.codec.v1"
		}
		return processors.Func(func(_ context.Context, ev *processors.Event) ([]processors.Command, error) {
			return []processors.Command{{Topic: c.Topic, Type: ev.Type, Key: ev.Key, Value: ev.Value}}, nil
		}), nil
	})
	if err != nil {
		panic(err)
	}
	os.Exit(ordo.Main(os.Args[1:], ordo.WithProcessors(reg)))
}
