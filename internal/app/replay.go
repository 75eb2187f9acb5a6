package app

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ordo-dev/ordo/internal/config"
	"github.com/ordo-dev/ordo/internal/ops"
)

func newReplayCmd(o *options) *cobra.Command {
	var (
		cfgPath     string
		group       string
		topics      []string
		toTime      string
		toOffset    []string
		dryRun      bool
		wait        time.Duration
		createGroup bool
		output      string
	)
	cmd := &cobra.Command{
		Use:   "replay (--to-time T | --to-offset O) [--group G] [--topic T]... [--dry-run]",
		Short: "Rewind a stopped group's committed offsets so ordo processes events again",
		Long: `Resets the committed input offsets of an ordo consumer group, so that its
replicas process the events from there again when they start. It refuses
while the group has members: stop every replica first. Replicas are static
members by default (kafka.static_membership), so a stopped replica stays in
the group until kafka.session_timeout passes; --wait polls until it is empty.

Where to:
  --to-time 2026-03-01T14:00:00Z   the first record written at or after that
  --to-time -1h                     (RFC 3339, or a negative duration = ago)
                                    A time only rewinds: a partition whose
                                    committed offset is before it is kept.
  --to-offset earliest|latest|N     every selected partition
  --to-offset TOPIC:PARTITION=N     one partition (repeatable; others keep theirs)

The topics are --topic, else those the group has committed offsets for, else
the config's inputs. The table shows every partition before and after, with
the lag (records left to process) on either side.

What a replay means: ordo emits the commands of every replayed event again.
orchestrate derives command ids (the ordo-id header, envelope.id) from the
event id, route and emit index, so the re-emitted commands carry the same
ids as the first time and downstream consumers must deduplicate on them.
Dead letters of replayed events are written again too. See
docs/operations.md.

Examples:
  # what would replaying the last hour do? (prints the table, changes nothing)
  ordo replay -c ordo.yaml --to-time -1h --dry-run

  # stop the replicas, then rewind checkout orders to 14:00 UTC
  kubectl scale statefulset/ordo --replicas=0
  ordo replay -c ordo.yaml --topic checkout.orders.v1 --to-time 2026-03-01T14:00:00Z --wait 2m

  # one partition back to an exact offset
  ordo replay -c ordo.yaml --group ordo-orders --to-offset checkout.orders.v1:3=1200`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: use text or json", output)
			}
			cfg, err := config.Load(cfgPath, os.Environ())
			if err != nil {
				return err
			}
			if group == "" {
				group = cfg.Kafka.Group
			}
			ro := ops.ReplayOptions{Group: group, Topics: topics, DefaultTopics: cfg.Inputs, DryRun: dryRun, Wait: wait, CreateGroup: createGroup}
			switch {
			case toTime != "" && len(toOffset) > 0:
				return fmt.Errorf("--to-time and --to-offset: use one of them")
			case toTime != "":
				if ro.ToTime, err = ops.ParseTime(toTime, time.Now()); err != nil {
					return fmt.Errorf("--to-time: %w", err)
				}
			case len(toOffset) > 0:
				spec, err := ops.ParseOffsetSpec(toOffset)
				if err != nil {
					return err
				}
				ro.ToOffset = &spec
			default:
				return fmt.Errorf("say where to replay from: --to-time (e.g. -1h or 2026-03-01T14:00:00Z) or --to-offset (earliest, latest, N or topic:partition=N)")
			}
			if createGroup && len(topics) == 0 {
				return fmt.Errorf("--create-group needs --topic: name the topics whose offsets to create")
			}
			conn, err := clientOpts(cfg)
			if err != nil {
				return err
			}
			res, err := ops.Replay(cmd.Context(), conn, ro)
			if res != nil {
				if output == "json" {
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					_ = enc.Encode(res)
				} else {
					ops.WriteReplayTable(cmd.OutOrStdout(), res)
				}
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&cfgPath, "config", "c", config.DefaultPath, "YAML config file (brokers, kafka.group, inputs); ORDO_* environment variables override its keys")
	fl.StringVarP(&group, "group", "g", "", "consumer group to rewind (default: kafka.group of the config)")
	fl.StringSliceVarP(&topics, "topic", "t", nil, "only these topics (repeatable; default: the group's committed topics, else the config's inputs)")
	fl.StringVar(&toTime, "to-time", "", "rewind to the first record at or after this time: RFC 3339 or a negative duration (-1h)")
	fl.StringSliceVar(&toOffset, "to-offset", nil, "earliest, latest, an offset N, or topic:partition=N (repeatable)")
	fl.BoolVar(&dryRun, "dry-run", false, "print the before/after table without committing anything")
	fl.DurationVar(&wait, "wait", 0, "poll this long for the group to become empty instead of refusing at once (stopped static members leave after kafka.session_timeout)")
	fl.BoolVar(&createGroup, "create-group", false, "allow a group with no members and no committed offsets (e.g. its offsets expired); needs --topic")
	fl.StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}
