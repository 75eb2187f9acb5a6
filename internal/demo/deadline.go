package demo

import (
	"time"

	"gopkg.in/yaml.v3"
)

// LongestTimer is the longest timer of the process definitions in a
// config's raw `processes:` block (the orders saga: its payment deadline),
// 0 when there is none or the block does not read as a list of definitions
// with `timers: {name: duration}`. `ordo dev` waits this long after the
// last OrderPlaced before it verifies, and VerifySaga takes it as the
// deadline. The engine validates the block; this only reads it.
func LongestTimer(processes *yaml.Node) time.Duration {
	if processes == nil || processes.Kind == 0 {
		return 0
	}
	var defs []struct {
		Timers map[string]string `yaml:"timers"`
	}
	if err := processes.Decode(&defs); err != nil {
		return 0
	}
	var longest time.Duration
	for _, d := range defs {
		for _, v := range d.Timers {
			if t, err := time.ParseDuration(v); err == nil && t > longest {
				longest = t
			}
		}
	}
	return longest
}
