package ops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ReplayOptions configure Replay.
type ReplayOptions struct {
	Group string
	// Topics limits the reset to these topics. Empty: the topics the group
	// has committed offsets for, else DefaultTopics.
	Topics        []string
	DefaultTopics []string // the config's inputs
	// Exactly one of ToTime and ToOffset is set.
	ToTime   time.Time
	ToOffset *OffsetSpec
	DryRun   bool
	// Wait polls this long for the group to become empty instead of
	// refusing at once (a stopped static member stays until its session
	// times out).
	Wait time.Duration
	// CreateGroup allows a group that has neither members nor committed
	// offsets (e.g. its offsets expired): its offsets are created.
	CreateGroup bool
}

// ReplayRow is one partition of the before/after table.
type ReplayRow struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Before    int64  `json:"before"` // committed offset before; -1: none
	After     int64  `json:"after"`  // committed offset after; -1: still none
	Start     int64  `json:"log_start"`
	End       int64  `json:"log_end"` // high watermark
	Note      string `json:"note,omitempty"`
}

// LagBefore is the records the group had left before the reset (-1 when it
// had no offset: it would start at the log start).
func (r ReplayRow) LagBefore() int64 {
	if r.Before < 0 {
		return r.End - r.Start
	}
	return max(0, r.End-r.Before)
}

// LagAfter is the records the group has left after the reset.
func (r ReplayRow) LagAfter() int64 {
	if r.After < 0 {
		return r.End - r.Start
	}
	return max(0, r.End-r.After)
}

// ReplayResult is what Replay did (or would do, on a dry run).
type ReplayResult struct {
	Group   string      `json:"group"`
	State   string      `json:"state"`
	DryRun  bool        `json:"dry_run"`
	Applied bool        `json:"applied"`
	Rows    []ReplayRow `json:"partitions"`
}

// Reprocessed is how many records the group will process again (offsets
// moved back) and how many it will skip (moved forward).
func (r *ReplayResult) Reprocessed() (again, skipped int64) {
	for _, row := range r.Rows {
		before, after := row.Before, row.After
		if before < 0 {
			before = row.Start
		}
		if after < 0 {
			after = row.Start
		}
		if d := before - after; d > 0 {
			again += d
		} else {
			skipped -= d
		}
	}
	return again, skipped
}

// Changes reports whether any partition's offset moves.
func (r *ReplayResult) Changes() bool {
	for _, row := range r.Rows {
		if row.After != row.Before {
			return true
		}
	}
	return false
}

// Member is one live member of a group.
type Member struct {
	MemberID   string   `json:"member_id"`
	InstanceID string   `json:"instance_id,omitempty"`
	ClientID   string   `json:"client_id"`
	Host       string   `json:"host"`
	Assigned   []string `json:"assigned"` // topic/partition
}

// ActiveGroupError is returned when the group still has members: offsets
// of a live group cannot be reset (its members would overwrite them with
// their next commit).
type ActiveGroupError struct {
	Group   string
	State   string
	Members []Member
	Waited  time.Duration
}

func (e *ActiveGroupError) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "group %q is %s with %d active member(s)", e.Group, e.State, len(e.Members))
	if e.Waited > 0 {
		fmt.Fprintf(&sb, " after waiting %v", e.Waited)
	}
	sb.WriteString(":")
	static := false
	for _, m := range e.Members {
		id := m.MemberID
		if m.InstanceID != "" {
			id = "instance " + m.InstanceID
			static = true
		}
		fmt.Fprintf(&sb, "\n  %s (client %s on %s) owns %d partition(s)", id, m.ClientID, strings.TrimPrefix(m.Host, "/"), len(m.Assigned))
	}
	sb.WriteString("\nfix: stop every replica of the group first (e.g. scale the deployment to 0), then run replay again")
	if static {
		sb.WriteString(".\nThese are static members (kafka.static_membership, on for explicit replica ids): a stopped replica stays in the group until its\n" +
			"session times out (kafka.session_timeout, default 45s). Wait that long, or pass --wait 2m to poll until the group is empty")
	}
	return sb.String()
}

// UnknownGroupError is returned for a group the cluster knows nothing of.
type UnknownGroupError struct{ Group string }

func (e *UnknownGroupError) Error() string {
	return fmt.Sprintf("group %q does not exist on the cluster (no members, no committed offsets).\n"+
		"fix: check --group (default: kafka.group of --config). If the group is right and its offsets expired\n"+
		"(offsets.retention.minutes), pass --create-group together with --topic to set them anyway", e.Group)
}

// Replay resets the committed offsets of a stopped group. It refuses while
// the group has members (*ActiveGroupError) and for a group the cluster
// does not know (*UnknownGroupError, unless CreateGroup). The result holds
// the before/after table whether or not offsets were committed.
func Replay(ctx context.Context, conn []kgo.Opt, opts ReplayOptions) (*ReplayResult, error) {
	if opts.Group == "" {
		return nil, errors.New("no group: pass --group or set kafka.group in the config")
	}
	if (opts.ToOffset == nil) == opts.ToTime.IsZero() {
		return nil, errors.New("say where to replay from: exactly one of --to-time or --to-offset")
	}
	cl, err := kgo.NewClient(conn...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	state, err := waitEmpty(ctx, adm, opts.Group, opts.Wait)
	if err != nil {
		return nil, err
	}
	// RequireStable: an OffsetFetch blocks (the broker answers
	// UNSTABLE_OFFSET_COMMIT, retried) while a transaction of the group's
	// last replica still holds uncommitted offsets; committing over them
	// would be undone when that transaction commits.
	fctx, cancel := context.WithTimeout(kadm.RequireStable(ctx), 30*time.Second)
	committed, err := adm.FetchOffsets(fctx, opts.Group)
	cancel()
	if errors.Is(err, kerr.GroupIDNotFound) { // some brokers say so for a group without offsets
		committed, err = kadm.OffsetResponses{}, nil
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kerr.UnstableOffsetCommit) {
			return nil, fmt.Errorf("group %q: a transaction of its last replica is still open (offsets not stable after 30s); it ends within kafka.transaction_timeout, run replay again then: %w", opts.Group, err)
		}
		return nil, fmt.Errorf("fetch committed offsets of %q: %w", opts.Group, err)
	}
	if err := committed.Error(); err != nil {
		return nil, fmt.Errorf("fetch committed offsets of %q: %w", opts.Group, err)
	}
	hasOffsets := false
	committed.Each(func(o kadm.OffsetResponse) {
		if o.At >= 0 {
			hasOffsets = true
		}
	})
	if !hasOffsets && (state == "Dead" || state == "") && !opts.CreateGroup {
		return nil, &UnknownGroupError{Group: opts.Group}
	}

	topics := opts.Topics
	if len(topics) == 0 {
		committed.Each(func(o kadm.OffsetResponse) {
			if o.At >= 0 && !slices.Contains(topics, o.Topic) {
				topics = append(topics, o.Topic)
			}
		})
		if len(topics) == 0 {
			topics = opts.DefaultTopics
		}
	}
	if len(topics) == 0 {
		return nil, fmt.Errorf("group %q has no committed offsets and no topic was given: pass --topic", opts.Group)
	}
	slices.Sort(topics)
	topics = slices.Compact(topics)
	for _, t := range topics {
		if _, err := partitionsOf(ctx, adm, t, "topic", "check --topic and the config's inputs"); err != nil {
			return nil, err
		}
	}
	if opts.ToOffset != nil {
		for tp := range opts.ToOffset.Per {
			if !slices.Contains(topics, tp.Topic) {
				return nil, fmt.Errorf("--to-offset %s: topic %s is not replayed (topics: %s); add --topic %s", tp, tp.Topic, strings.Join(topics, ", "), tp.Topic)
			}
		}
	}

	starts, err := listed(adm.ListStartOffsets(ctx, topics...))
	if err != nil {
		return nil, fmt.Errorf("list start offsets: %w", err)
	}
	ends, err := listed(adm.ListEndOffsets(ctx, topics...))
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	var atTime kadm.ListedOffsets
	if !opts.ToTime.IsZero() {
		if atTime, err = listed(adm.ListOffsetsAfterMilli(ctx, opts.ToTime.UnixMilli(), topics...)); err != nil {
			return nil, fmt.Errorf("list offsets after %s: %w", opts.ToTime.Format(time.RFC3339), err)
		}
	}

	res := &ReplayResult{Group: opts.Group, State: state, DryRun: opts.DryRun}
	seen := map[TopicPartition]bool{}
	ends.Each(func(e kadm.ListedOffset) {
		tp := TopicPartition{e.Topic, e.Partition}
		row := ReplayRow{Topic: e.Topic, Partition: e.Partition, Before: -1, End: e.Offset}
		if s, ok := starts.Lookup(e.Topic, e.Partition); ok {
			row.Start = s.Offset
		}
		if c, ok := committed.Lookup(e.Topic, e.Partition); ok && c.At >= 0 {
			row.Before = c.At
		}
		var target *Target
		switch {
		case opts.ToOffset != nil:
			if t, ok := opts.ToOffset.Per[tp]; ok {
				target = &t
				seen[tp] = true
			} else {
				target = opts.ToOffset.All
			}
		default:
			// A time only ever rewinds: a group that has not yet reached
			// the time keeps its offset instead of skipping records.
			at := row.End // no record at or after the time
			if a, ok := atTime.Lookup(e.Topic, e.Partition); ok && a.Offset >= 0 {
				at = a.Offset
			}
			if row.Before < 0 {
				// Without a committed offset ordo starts at the log start,
				// which already includes the time: nothing to commit.
				row.After, row.Note = -1, "no committed offset: starts at the log start"
				res.Rows = append(res.Rows, row)
				return
			}
			if at > row.Before {
				target = &Target{Kind: TargetExact, Offset: row.Before}
				row.Note = "not yet at the time: kept"
			} else {
				target = &Target{Kind: TargetExact, Offset: at}
			}
		}
		if target == nil { // only per-partition targets, not this one
			if row.Before < 0 {
				return
			}
			row.After = row.Before
			row.Note = "unchanged"
		} else {
			switch target.Kind {
			case TargetEarliest:
				row.After = row.Start
			case TargetLatest:
				row.After = row.End
			default:
				row.After = target.Offset
				if row.After < row.Start {
					row.After, row.Note = row.Start, fmt.Sprintf("%d is below the log start: clamped", target.Offset)
				} else if row.After > row.End {
					row.After, row.Note = row.End, fmt.Sprintf("%d is past the log end: clamped", target.Offset)
				}
			}
			if row.Before >= 0 && row.After > row.Before && row.Note == "" {
				row.Note = fmt.Sprintf("moves forward: skips %d records", row.After-row.Before)
			}
		}
		res.Rows = append(res.Rows, row)
	})
	if opts.ToOffset != nil {
		for tp := range opts.ToOffset.Per {
			if !seen[tp] {
				return nil, fmt.Errorf("--to-offset %s: topic %s has no partition %d", tp, tp.Topic, tp.Partition)
			}
		}
	}
	slices.SortFunc(res.Rows, func(a, b ReplayRow) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return int(a.Partition - b.Partition)
	})
	if opts.DryRun {
		return res, nil
	}
	if !res.Changes() {
		return res, nil // nothing to commit: not an error
	}

	var os kadm.Offsets
	for _, r := range res.Rows {
		if r.After < 0 || r.After == r.Before {
			continue
		}
		os.Add(kadm.Offset{Topic: r.Topic, Partition: r.Partition, At: r.After, LeaderEpoch: -1})
	}
	// The broker accepts an admin commit only while the group is empty, so
	// a replica that started since the check above makes this fail rather
	// than be overwritten.
	resp, err := adm.CommitOffsets(ctx, opts.Group, os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		if errors.Is(err, kerr.UnknownMemberID) || errors.Is(err, kerr.IllegalGeneration) || errors.Is(err, kerr.RebalanceInProgress) {
			return res, fmt.Errorf("commit offsets of %q: %w: a member joined the group after the check; stop every replica and run replay again", opts.Group, err)
		}
		return res, fmt.Errorf("commit offsets of %q: %w", opts.Group, err)
	}
	res.Applied = true
	return res, nil
}

// listed returns l, or its first partition error.
func listed(l kadm.ListedOffsets, err error) (kadm.ListedOffsets, error) {
	if err != nil {
		return nil, err
	}
	if err := l.Error(); err != nil {
		return nil, err
	}
	return l, nil
}

// waitEmpty returns the group's state once it has no members, polling for
// up to wait; then it returns an *ActiveGroupError.
func waitEmpty(ctx context.Context, adm *kadm.Client, group string, wait time.Duration) (string, error) {
	start := time.Now()
	for {
		g, err := describe(ctx, adm, group)
		if err != nil {
			return "", err
		}
		if len(g.Members) == 0 && (g.State == "Empty" || g.State == "Dead" || g.State == "") {
			return g.State, nil
		}
		if time.Since(start) >= wait {
			ae := &ActiveGroupError{Group: group, State: g.State}
			if wait > 0 {
				ae.Waited = wait
			}
			for _, m := range g.Members {
				mm := Member{MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost}
				if m.InstanceID != nil {
					mm.InstanceID = *m.InstanceID
				}
				if c, ok := m.Assigned.AsConsumer(); ok {
					for _, t := range c.Topics {
						for _, p := range t.Partitions {
							mm.Assigned = append(mm.Assigned, fmt.Sprintf("%s/%d", t.Topic, p))
						}
					}
				}
				ae.Members = append(ae.Members, mm)
			}
			return "", ae
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(min(time.Second, wait)):
		}
	}
}

// describe describes one classic group; a group the broker does not know
// comes back as state "Dead".
func describe(ctx context.Context, adm *kadm.Client, group string) (kadm.DescribedGroup, error) {
	gs, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return kadm.DescribedGroup{}, fmt.Errorf("describe group %q: %w", group, err)
	}
	g, ok := gs[group]
	if !ok {
		return kadm.DescribedGroup{Group: group, State: "Dead"}, nil
	}
	if g.Err != nil {
		if errors.Is(g.Err, kerr.GroupIDNotFound) {
			return kadm.DescribedGroup{Group: group, State: "Dead"}, nil
		}
		return g, fmt.Errorf("describe group %q: %w %s", group, g.Err, g.ErrMessage)
	}
	return g, nil
}
