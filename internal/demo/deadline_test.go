package demo

import (
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestLongestTimer(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want time.Duration
	}{
		{"processes:\n  - name: order-fulfilment\n    version: 1\n    timers:\n      payment_timeout: 20s\n", 20 * time.Second},
		{"processes:\n  - name: a\n    timers: {t1: 15m, t2: 1h30m}\n  - name: b\n    timers: {t3: 2h}\n", 2 * time.Hour},
		{"processes:\n  - name: a\n", 0},
		{"processes: {name: a}\n", 0},              // not a list: the engine reports it
		{"processes:\n  - timers: {t: soon}\n", 0}, // not a duration: the engine reports it
		{"other: 1\n", 0},
	} {
		var cfg struct {
			Processes yaml.Node `yaml:"processes"`
		}
		if err := yaml.Unmarshal([]byte(tc.yaml), &cfg); err != nil {
			t.Fatal(err)
		}
		if got := LongestTimer(&cfg.Processes); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.yaml, got, tc.want)
		}
	}
}
