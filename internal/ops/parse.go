package ops

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ParseTime reads a point in time as an operator writes it: RFC 3339
// ("2026-03-01T14:00:00Z", fractions and offsets allowed) or a negative Go
// duration relative to now ("-1h", "-90m", "-2h30m").
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, fmt.Errorf("empty time (write RFC 3339, e.g. 2026-03-01T14:00:00Z, or a negative duration such as -1h)")
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d > 0 {
			return time.Time{}, fmt.Errorf("%q is in the future: a duration means \"this long ago\" and needs a minus sign, e.g. -%s", s, s)
		}
		return now.Add(d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither RFC 3339 (2026-03-01T14:00:00Z) nor a negative duration (-1h, -30m)", s)
}

// TargetKind says how a replay target is given.
type TargetKind int

// Target kinds.
const (
	TargetExact    TargetKind = iota // a given offset
	TargetEarliest                   // the log start offset
	TargetLatest                     // the high watermark (skip everything)
)

// Target is where one partition's committed offset goes.
type Target struct {
	Kind   TargetKind
	Offset int64 // TargetExact only
}

func (t Target) String() string {
	switch t.Kind {
	case TargetEarliest:
		return "earliest"
	case TargetLatest:
		return "latest"
	}
	return strconv.FormatInt(t.Offset, 10)
}

// OffsetSpec is the parsed --to-offset flag: a target for every selected
// partition (All), and/or targets for single partitions (Per), which win.
type OffsetSpec struct {
	All *Target
	Per map[TopicPartition]Target
}

// TopicPartition names one partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

func (tp TopicPartition) String() string { return tp.Topic + "/" + strconv.Itoa(int(tp.Partition)) }

// ParseOffsetSpec parses --to-offset values: "earliest", "latest" or N for
// every selected partition, and "topic:partition=earliest|latest|N" for one
// partition. Values may be repeated or comma-separated.
func ParseOffsetSpec(values []string) (OffsetSpec, error) {
	var spec OffsetSpec
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			if eq := strings.LastIndexByte(item, '='); eq >= 0 {
				left, right := item[:eq], item[eq+1:]
				colon := strings.LastIndexByte(left, ':')
				if colon <= 0 {
					return spec, fmt.Errorf("--to-offset %q: write topic:partition=offset, e.g. checkout.orders.v1:3=1200", item)
				}
				p, err := strconv.ParseInt(left[colon+1:], 10, 32)
				if err != nil || p < 0 {
					return spec, fmt.Errorf("--to-offset %q: partition %q is not a partition number", item, left[colon+1:])
				}
				t, err := parseTarget(right)
				if err != nil {
					return spec, fmt.Errorf("--to-offset %q: %w", item, err)
				}
				if spec.Per == nil {
					spec.Per = map[TopicPartition]Target{}
				}
				tp := TopicPartition{left[:colon], int32(p)}
				if _, dup := spec.Per[tp]; dup {
					return spec, fmt.Errorf("--to-offset names %s twice", tp)
				}
				spec.Per[tp] = t
				continue
			}
			t, err := parseTarget(item)
			if err != nil {
				return spec, fmt.Errorf("--to-offset %q: %w", item, err)
			}
			if spec.All != nil {
				return spec, fmt.Errorf("--to-offset gives two targets for every partition (%s and %s): keep one", spec.All, t)
			}
			spec.All = &t
		}
	}
	if spec.All == nil && len(spec.Per) == 0 {
		return spec, fmt.Errorf("--to-offset is empty: use earliest, latest, an offset N or topic:partition=N")
	}
	return spec, nil
}

func parseTarget(s string) (Target, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "earliest", "start", "beginning":
		return Target{Kind: TargetEarliest}, nil
	case "latest", "end":
		return Target{Kind: TargetLatest}, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return Target{}, fmt.Errorf("%q is not earliest, latest or an offset ≥ 0", s)
	}
	return Target{Kind: TargetExact, Offset: n}, nil
}

// WhereKeys are the fields --where can test.
var WhereKeys = []string{"processor", "reason", "source-topic", "group", "type"}

// Filter selects dead letters. Within one key the values are alternatives
// (processor=a --where processor=b: either); different keys must all hold.
// reason matches a case-insensitive substring of the error message, the
// others match exactly. Since/Until bound the dead-letter record's timestamp
// (when ordo wrote it); zero means unbounded.
type Filter struct {
	Where map[string][]string
	Since time.Time
	Until time.Time
}

// ParseWhere parses --where key=value items (repeatable, comma-separated).
func ParseWhere(values []string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			k, val, ok := strings.Cut(item, "=")
			k = strings.ToLower(strings.TrimSpace(k))
			val = strings.TrimSpace(val)
			if !ok || val == "" {
				return nil, fmt.Errorf("--where %q: write key=value, keys: %s", item, strings.Join(WhereKeys, ", "))
			}
			if k == "source_topic" || k == "topic" {
				k = "source-topic"
			}
			if !slices.Contains(WhereKeys, k) {
				return nil, fmt.Errorf("--where %q: unknown key %q, use one of %s", item, k, strings.Join(WhereKeys, ", "))
			}
			out[k] = append(out[k], val)
		}
	}
	return out, nil
}

// Empty reports whether the filter selects every dead letter.
func (f Filter) Empty() bool { return len(f.Where) == 0 && f.Since.IsZero() && f.Until.IsZero() }

// Match reports whether d passes the filter.
func (f Filter) Match(d *DeadLetter) bool {
	if !f.Since.IsZero() && d.Timestamp.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && d.Timestamp.After(f.Until) {
		return false
	}
	for k, vals := range f.Where {
		var field string
		switch k {
		case "processor":
			field = d.Processor
		case "reason":
			field = d.Error
		case "source-topic":
			field = d.SourceTopic
		case "group":
			field = d.Group
		case "type":
			field = d.Type
		}
		ok := false
		for _, v := range vals {
			if k == "reason" {
				ok = strings.Contains(strings.ToLower(field), strings.ToLower(v))
			} else {
				ok = field == v
			}
			if ok {
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// String renders the filter for messages ("processor=a,b reason=x since ...").
func (f Filter) String() string {
	keys := make([]string, 0, len(f.Where))
	for k := range f.Where {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+strings.Join(f.Where[k], "|"))
	}
	if !f.Since.IsZero() {
		parts = append(parts, "since "+f.Since.UTC().Format(time.RFC3339))
	}
	if !f.Until.IsZero() {
		parts = append(parts, "until "+f.Until.UTC().Format(time.RFC3339))
	}
	if len(parts) == 0 {
		return "(all)"
	}
	return strings.Join(parts, " ")
}
