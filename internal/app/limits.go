package app

import (
	"context"
	"log/slog"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ordo-dev/ordo/internal/config"
	"github.com/ordo-dev/ordo/producer"
)

// outputLimits returns the record size limits of ordo's output topics (for
// producer.WithMaxRecordBytes(limits.For)) and the close of the admin
// client that reads them, to call when the replica stops. It connects to
// nothing: a topic's max.message.bytes is read on its first use, or for
// all of knownOutputTopics(cfg) at once by describeOutputLimits. The limit is
// capped by producer.DefaultMaxRecordBytes, franz-go's default
// ProducerBatchMaxBytes, which the pipeline's client keeps.
func outputLimits(cfg *config.Config, log *slog.Logger) (*producer.TopicLimits, func(), error) {
	cl, err := newClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	return producer.NewTopicLimits(kadm.NewClient(cl), producer.DefaultMaxRecordBytes, log), cl.Close, nil
}

// describeOutputLimits reads the limits of the known output topics at
// start, so the first events do not wait for the lookups. Failures are
// logged by TopicLimits and fall back to the producer's limit; they never
// stop ordo.
func describeOutputLimits(ctx context.Context, cfg *config.Config, limits *producer.TopicLimits) {
	_ = limits.Describe(ctx, knownOutputTopics(cfg)...)
}

// knownOutputTopics are the topics ordo is known to write to before it
// runs: the dead-letter topic, the orchestrate processors' command topics
// (outputTopics, shared with the preflight) and the configured topics that
// are not inputs (topics only custom processors name are looked up on
// first use).
func knownOutputTopics(cfg *config.Config) []string {
	rest := outputTopics(cfg)
	for t := range cfg.Topics {
		if t != cfg.DeadLetter && !slices.Contains(cfg.Inputs, t) && !slices.Contains(rest, t) {
			rest = append(rest, t)
		}
	}
	slices.Sort(rest)
	return append([]string{cfg.DeadLetter}, rest...)
}
