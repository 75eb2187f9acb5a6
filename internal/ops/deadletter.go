package ops

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/producer"
)

// HeaderRedriveOf is set on every record `ordo dlq redrive` republishes:
// "<dead-letter topic>/<partition>@<offset>" of the dead letter it came
// from. When a redriven event fails again its new dead letter keeps the
// header (dead letters keep the input's headers), so the chain is visible.
const HeaderRedriveOf = "ordo-redrive-of"

// dlqHeaderPrefix marks the headers ordo adds to a dead letter; redrive
// strips them so the republished record looks like the original.
const dlqHeaderPrefix = "ordo-dlq-"

// DeadLetter is one dead-letter record with ordo's reason headers parsed.
type DeadLetter struct {
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Timestamp time.Time `json:"timestamp"`

	Processor   string `json:"processor"`
	Error       string `json:"error"`
	ErrorClass  string `json:"error_class,omitempty"`
	Group       string `json:"group,omitempty"`
	Type        string `json:"type,omitempty"` // ordo-type of the original, when it had one
	SourceTopic string `json:"source_topic"`
	// SourcePartition and SourceOffset are -1 when the header is missing
	// or unreadable.
	SourcePartition int32     `json:"source_partition"`
	SourceOffset    int64     `json:"source_offset"`
	DeadLetteredAt  time.Time `json:"dead_lettered_at"` // ordo-dlq-time (zero if absent)
	RedriveOf       string    `json:"redrive_of,omitempty"`

	Key     []byte             `json:"-"`
	Value   []byte             `json:"-"`
	Headers []kgo.RecordHeader `json:"-"`
}

// Coordinates is "<topic>/<partition>@<offset>", the dead letter's identity
// (the value of HeaderRedriveOf and the redrive ledger's key).
func (d *DeadLetter) Coordinates() string {
	return d.Topic + "/" + strconv.Itoa(int(d.Partition)) + "@" + strconv.FormatInt(d.Offset, 10)
}

// Source is "<topic>/<partition>@<offset>" of the original input record.
func (d *DeadLetter) Source() string {
	if d.SourceTopic == "" {
		return "(unknown)"
	}
	return d.SourceTopic + "/" + strconv.Itoa(int(d.SourcePartition)) + "@" + strconv.FormatInt(d.SourceOffset, 10)
}

// Redrivable says why d cannot be republished ("" when it can): redrive
// needs the source topic and partition headers ordo writes.
func (d *DeadLetter) Redrivable() string {
	switch {
	case d.SourceTopic == "":
		return "no " + producer.HeaderDLQSourceTopic + " header (not written by ordo)"
	case d.SourcePartition < 0:
		return "no valid " + producer.HeaderDLQSourcePartition + " header"
	}
	return ""
}

// ParseDeadLetter reads ordo's dead-letter headers from r. Missing headers
// leave fields empty: a record some other tool put on the topic is still
// listed.
func ParseDeadLetter(r *kgo.Record) *DeadLetter {
	d := &DeadLetter{
		Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp,
		SourcePartition: -1, SourceOffset: -1,
		Key: r.Key, Value: r.Value, Headers: r.Headers,
	}
	for _, h := range r.Headers {
		v := string(h.Value)
		switch h.Key {
		case producer.HeaderDLQProcessor:
			d.Processor = v
		case producer.HeaderDLQError:
			d.Error = v
		case producer.HeaderDLQErrorClass:
			d.ErrorClass = v
		case producer.HeaderDLQGroup:
			d.Group = v
		case producer.HeaderDLQSourceTopic:
			d.SourceTopic = v
		case producer.HeaderDLQSourcePartition:
			if p, err := strconv.ParseInt(v, 10, 32); err == nil && p >= 0 {
				d.SourcePartition = int32(p)
			}
		case producer.HeaderDLQSourceOffset:
			if o, err := strconv.ParseInt(v, 10, 64); err == nil {
				d.SourceOffset = o
			}
		case producer.HeaderDLQTime:
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				d.DeadLetteredAt = t
			}
		case producer.HeaderType:
			d.Type = v
		case HeaderRedriveOf:
			d.RedriveOf = v
		}
	}
	if d.Processor == "" {
		d.Processor = "(none)"
	}
	return d
}

// RedriveRecord is the record redrive republishes for d: the original key,
// value and headers (without ordo's dead-letter headers and without an
// older ordo-redrive-of), plus ordo-redrive-of naming d, to the original
// topic and partition. The same partition keeps the key's events on the
// partition their producer chose, whatever partitioner it used.
func RedriveRecord(d *DeadLetter) *kgo.Record {
	hs := make([]kgo.RecordHeader, 0, len(d.Headers)+1)
	for _, h := range d.Headers {
		if strings.HasPrefix(h.Key, dlqHeaderPrefix) || h.Key == HeaderRedriveOf {
			continue
		}
		hs = append(hs, h)
	}
	hs = append(hs, kgo.RecordHeader{Key: HeaderRedriveOf, Value: []byte(d.Coordinates())})
	return &kgo.Record{Topic: d.SourceTopic, Partition: d.SourcePartition, Key: d.Key, Value: d.Value, Headers: hs}
}

var (
	reQuoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'[^']*'`)
	reHex    = regexp.MustCompile(`\b0x[0-9a-fA-F]+\b`)
	reNumber = regexp.MustCompile(`\d+(?:\.\d+)?`)
)

// ReasonKey groups error messages that differ only in the event they name:
// quoted strings become "…", numbers N. "no table row for key \"cust-9\""
// and "... \"cust-12\"" share one group; so do "truncated body at offset
// 17" and "... 40".
func ReasonKey(msg string) string {
	k := reQuoted.ReplaceAllString(msg, `"…"`)
	k = reHex.ReplaceAllString(k, "\x00")
	k = reNumber.ReplaceAllString(k, "N")
	k = strings.ReplaceAll(k, "\x00", "0xN") // after the numbers: its 0 stays
	if utf8.RuneCountInString(k) > 160 {
		k = string([]rune(k)[:157]) + "..."
	}
	if k == "" {
		k = "(no error header)"
	}
	return k
}

// Summary is one row of `ordo dlq list`: the dead letters of one processor
// with one reason.
type Summary struct {
	Processor    string    `json:"processor"`
	Reason       string    `json:"reason"` // ReasonKey of the errors
	Example      string    `json:"example"`
	Count        int       `json:"count"`
	Redriven     int       `json:"redriven"`      // already republished (redrive ledger)
	RedriveAgain int       `json:"failed_again"`  // dead letters of events that were redriven before
	SourceTopics []string  `json:"source_topics"` // sorted
	First        time.Time `json:"first"`
	Last         time.Time `json:"last"`
}

// Summarize groups dead letters by processor and reason, largest group
// first. redriven is the set of coordinates the redrive ledger holds.
func Summarize(dls []*DeadLetter, redriven map[string]LedgerEntry) []Summary {
	idx := map[[2]string]*Summary{}
	var order []*Summary
	topics := map[*Summary]map[string]bool{}
	for _, d := range dls {
		k := [2]string{d.Processor, ReasonKey(d.Error)}
		s := idx[k]
		if s == nil {
			s = &Summary{Processor: k[0], Reason: k[1], Example: d.Error, First: d.Timestamp, Last: d.Timestamp}
			idx[k] = s
			order = append(order, s)
			topics[s] = map[string]bool{}
		}
		s.Count++
		if _, ok := redriven[d.Coordinates()]; ok {
			s.Redriven++
		}
		if d.RedriveOf != "" {
			s.RedriveAgain++
		}
		if d.Timestamp.Before(s.First) {
			s.First = d.Timestamp
		}
		if d.Timestamp.After(s.Last) {
			s.Last = d.Timestamp
		}
		if d.SourceTopic != "" {
			topics[s][d.SourceTopic] = true
		}
	}
	out := make([]Summary, 0, len(order))
	for _, s := range order {
		for t := range topics[s] {
			s.SourceTopics = append(s.SourceTopics, t)
		}
		slices.Sort(s.SourceTopics)
		out = append(out, *s)
	}
	sortSummaries(out)
	return out
}

func sortSummaries(s []Summary) {
	slices.SortStableFunc(s, func(a, b Summary) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		if c := strings.Compare(a.Processor, b.Processor); c != 0 {
			return c
		}
		return strings.Compare(a.Reason, b.Reason)
	})
}

// ParseCoordinates reads "P@O" or "topic/P@O".
func ParseCoordinates(s string) (topic string, partition int32, offset int64, err error) {
	rest := s
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		topic, rest = s[:i], s[i+1:]
	}
	ps, os, ok := strings.Cut(rest, "@")
	p, err1 := strconv.ParseInt(ps, 10, 32)
	o, err2 := strconv.ParseInt(os, 10, 64)
	if !ok || err1 != nil || err2 != nil || p < 0 || o < 0 {
		return "", 0, 0, fmt.Errorf("%q: write PARTITION@OFFSET (e.g. 0@42), as `ordo dlq list --records` prints it", s)
	}
	return topic, int32(p), o, nil
}
