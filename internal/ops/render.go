package ops

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"
)

const timeLayout = "2006-01-02T15:04:05.000Z07:00"

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(timeLayout)
}

func fmtOffset(o int64) string {
	if o < 0 {
		return "-"
	}
	return fmt.Sprint(o)
}

// WriteReplayTable prints the before/after table of a replay.
func WriteReplayTable(w io.Writer, r *ReplayResult) {
	state := r.State
	if state == "" {
		state = "unknown"
	}
	fmt.Fprintf(w, "group %s (%s)\n", r.Group, state)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tBEFORE\tAFTER\tLOG-START\tLOG-END\tLAG-BEFORE\tLAG-AFTER\tNOTE")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", row.Topic, row.Partition, fmtOffset(row.Before), fmtOffset(row.After),
			row.Start, row.End, row.LagBefore(), row.LagAfter(), row.Note)
	}
	_ = tw.Flush()
	again, skipped := r.Reprocessed()
	fmt.Fprintf(w, "%d record(s) will be processed again", again)
	if skipped > 0 {
		fmt.Fprintf(w, ", %d skipped", skipped)
	}
	fmt.Fprintln(w)
	switch {
	case r.DryRun:
		fmt.Fprintln(w, "dry run: no offsets changed (run again without --dry-run to commit them)")
	case r.Applied:
		fmt.Fprintf(w, "committed: the next replica of %s to start resumes from AFTER\n", r.Group)
	default:
		fmt.Fprintln(w, "nothing to change: every offset is already there")
	}
}

// WriteSummaryTable prints `ordo dlq list`'s grouped view.
func WriteSummaryTable(w io.Writer, topic string, total int, sums []Summary) {
	var first, last time.Time
	for _, s := range sums {
		if first.IsZero() || s.First.Before(first) {
			first = s.First
		}
		if s.Last.After(last) {
			last = s.Last
		}
	}
	fmt.Fprintf(w, "%s: %d dead letter(s) from %s to %s\n", topic, total, fmtTime(first), fmtTime(last))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "COUNT\tREDRIVEN\tPROCESSOR\tSOURCE TOPICS\tFIRST\tLAST\tREASON")
	for _, s := range sums {
		reason := s.Reason
		if s.RedriveAgain > 0 {
			reason += fmt.Sprintf(" [%d failed again after a redrive]", s.RedriveAgain)
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\n", s.Count, s.Redriven, s.Processor, strings.Join(s.SourceTopics, ","),
			fmtTime(s.First), fmtTime(s.Last), reason)
	}
	_ = tw.Flush()
}

// WriteRecordsTable prints one line per dead letter.
func WriteRecordsTable(w io.Writer, dls []*DeadLetter, redriven map[string]LedgerEntry) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEAD LETTER\tWRITTEN\tPROCESSOR\tSOURCE\tREDRIVEN TO\tERROR")
	for _, d := range dls {
		to := "-"
		if e, ok := redriven[d.Coordinates()]; ok {
			to = e.To
		}
		fmt.Fprintf(tw, "%d@%d\t%s\t%s\t%s\t%s\t%s\n", d.Partition, d.Offset, fmtTime(d.Timestamp), d.Processor, d.Source(), to, clip(d.Error, 120))
	}
	_ = tw.Flush()
}

func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-3]) + "..."
}

// Payload is how `ordo dlq show` presents a dead letter's value.
type Payload struct {
	Type     string         `json:"type,omitempty"`
	SchemaID int            `json:"schema_id,omitempty"`
	Value    map[string]any `json:"value,omitempty"` // natural form; nil when not decoded
	// Problem says why the value is not (fully) decoded: malformed,
	// unknown schema, registry unreachable, not Avro.
	Problem string `json:"problem,omitempty"`
	Note    string `json:"note,omitempty"`
}

// DeadLetterView is `ordo dlq show --output json`'s object.
type DeadLetterView struct {
	*DeadLetter
	Key       string            `json:"key"`
	Headers   map[string]string `json:"headers"`
	Payload   Payload           `json:"payload"`
	ValueHex  string            `json:"value_hex,omitempty"` // when not decoded
	ValueSize int               `json:"value_bytes"`
	Redriven  *LedgerEntry      `json:"redriven,omitempty"`
}

// NewDeadLetterView assembles the JSON view.
func NewDeadLetterView(d *DeadLetter, p Payload, redriven *LedgerEntry) DeadLetterView {
	v := DeadLetterView{DeadLetter: d, Key: string(d.Key), Headers: map[string]string{}, Payload: p, ValueSize: len(d.Value), Redriven: redriven}
	for _, h := range d.Headers {
		v.Headers[h.Key] = string(h.Value)
	}
	if p.Value == nil {
		v.ValueHex = hex.EncodeToString(d.Value)
	} else {
		v.Payload.Value = Jsonable(p.Value).(map[string]any)
	}
	return v
}

// WriteDeadLetter prints one dead letter in full.
func WriteDeadLetter(w io.Writer, d *DeadLetter, p Payload, redriven *LedgerEntry) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("dead letter", d.Coordinates())
	row("written", fmtTime(d.Timestamp))
	row("processor", d.Processor)
	row("error", d.Error)
	if d.ErrorClass != "" {
		row("class", d.ErrorClass)
	}
	if d.Group != "" {
		row("group", d.Group)
	}
	row("source", d.Source())
	if d.RedriveOf != "" {
		row("redrive of", d.RedriveOf+" (this event failed again after a redrive)")
	}
	if redriven != nil {
		row("redriven", fmt.Sprintf("to %s at %s", redriven.To, fmtTime(redriven.RedrivenAt)))
	} else {
		row("redriven", "no")
	}
	row("key", printable(d.Key))
	_ = tw.Flush()
	fmt.Fprintln(w, "headers:")
	for _, h := range d.Headers {
		fmt.Fprintf(w, "  %s: %s\n", h.Key, printable(h.Value))
	}
	switch {
	case p.Value != nil:
		fmt.Fprintf(w, "payload: %s (schema id %d), %d bytes", p.Type, p.SchemaID, len(d.Value))
		if p.Note != "" {
			fmt.Fprintf(w, "; %s", p.Note)
		}
		fmt.Fprintln(w)
		b, _ := json.MarshalIndent(Jsonable(p.Value), "  ", "  ")
		fmt.Fprintf(w, "  %s\n", b)
	default:
		fmt.Fprintf(w, "payload: not decoded: %s; %d bytes\n", p.Problem, len(d.Value))
		const max = 512
		v := d.Value
		if len(v) > max {
			v = v[:max]
		}
		for _, line := range strings.Split(strings.TrimRight(hex.Dump(v), "\n"), "\n") {
			fmt.Fprintf(w, "  %s\n", line)
		}
		if len(d.Value) > max {
			fmt.Fprintf(w, "  ... %d more bytes\n", len(d.Value)-max)
		}
	}
}

func printable(b []byte) string {
	if b == nil {
		return "(null)"
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return "0x" + hex.EncodeToString(b)
}

// Jsonable converts an Avro natural value to what encoding/json prints
// faithfully: decimals (*big.Rat) as exact decimal strings, timestamps as
// RFC 3339, bytes as text when UTF-8 else base64.
func Jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = Jsonable(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = Jsonable(e)
		}
		return out
	case *big.Rat:
		if x == nil {
			return nil
		}
		if n, exact := x.FloatPrec(); exact {
			return x.FloatString(n)
		}
		return x.RatString()
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case []byte:
		if utf8.Valid(x) {
			return string(x)
		}
		return base64.StdEncoding.EncodeToString(x)
	}
	return v
}
