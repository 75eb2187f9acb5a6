package ops

import (
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"
)

// FormatValue prints a natural value readably and exactly: decimals as
// decimal numbers (1234.56, never a float), strings quoted, times in RFC
// 3339, maps with sorted keys.
func FormatValue(v any) string {
	var b strings.Builder
	formatValue(&b, v)
	return b.String()
}

func formatValue(b *strings.Builder, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case *big.Rat:
		if x == nil {
			b.WriteString("null")
		} else if n, exact := x.FloatPrec(); exact {
			b.WriteString(x.FloatString(n))
		} else {
			b.WriteString(x.RatString())
		}
	case string:
		b.WriteString(strconv.Quote(x))
	case []byte:
		if utf8.Valid(x) {
			b.WriteString("b" + strconv.Quote(string(x)))
		} else {
			b.WriteString("0x" + hex.EncodeToString(x))
		}
	case time.Time:
		b.WriteString(x.UTC().Format(time.RFC3339Nano))
	case float32:
		b.WriteString(strconv.FormatFloat(float64(x), 'g', -1, 32))
	case float64:
		b.WriteString(strconv.FormatFloat(x, 'g', -1, 64))
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			formatValue(b, e)
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(k + ": ")
			formatValue(b, x[k])
		}
		b.WriteByte('}')
	default:
		fmt.Fprint(b, x)
	}
}

// fmtAge prints d rounded for people: 3s, 4m12s, 2h5m, 3d4h.
func fmtAge(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var s string
	switch {
	case d < time.Minute:
		s = d.Round(time.Millisecond).String()
	case d < time.Hour:
		s = d.Round(time.Second).String()
	case d < 48*time.Hour:
		s = strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	default:
		days := int(d / (24 * time.Hour))
		s = fmt.Sprintf("%dd%dh", days, int((d%(24*time.Hour))/time.Hour))
	}
	if neg {
		return "-" + s
	}
	return s
}

func fmtHistory(h HistoryView) string {
	s := fmt.Sprintf("%s  %-15s  %s", fmtTime(h.At), h.Kind, h.Type)
	if h.ID != "" {
		s += "  id=" + h.ID
	}
	if h.Source != "" {
		s += "  from " + h.Source
	}
	return s
}

func fmtVersion(v InstanceVersion) string {
	switch {
	case v.Deleted:
		return "deleted (tombstone)"
	case v.Problem != "":
		return "not decodable: " + v.Problem
	}
	s := fmt.Sprintf("v%d  %s (%s)  updated %s", v.Version, v.State, v.Status, fmtTime(v.Updated))
	if v.Last != nil {
		s += "  after " + v.Last.Kind + " " + v.Last.Type
	}
	return s
}

func fmtRead(src ChangelogRead) string {
	parts := make([]string, 0, len(src.Read))
	for _, r := range src.Read {
		parts = append(parts, fmt.Sprintf("%d [%d, %d)", r.Partition, r.From, r.To))
	}
	return fmt.Sprintf("changelog %s partition %s, %d committed records", src.Topic, strings.Join(parts, ", "), src.Records)
}

// WriteProcessShow prints what ShowProcess found; ages are relative to now.
func WriteProcessShow(w io.Writer, r *ShowResult, now time.Time) {
	fmt.Fprintf(w, "correlation id %q: %s\n", r.CorrelationID, fmtRead(r.Source))
	for _, in := range r.Instances {
		fmt.Fprintln(w)
		writeInstance(w, &in, now)
	}
	for _, rm := range r.Removed {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "%s: removed at %s/%d@%d (written %s; housekeeping removes a finished instance keep_finished after it ends)\n",
			rm.Process, r.Source.Topic, r.Partition, rm.Offset, fmtTime(rm.Written))
		if rm.Last != nil {
			fmt.Fprintf(w, "  last version %d: %s\n", rm.Last.Offset, fmtVersion(*rm.Last))
		}
	}
	if n := r.BufferedTotal(); n > 0 {
		procs := make([]string, 0, len(r.Buffered))
		for p, c := range r.Buffered {
			procs = append(procs, fmt.Sprintf("%s: %d", p, c))
		}
		slices.Sort(procs)
		fmt.Fprintf(w, "\nearly events waiting for an instance to start: %d (%s)\n", n, strings.Join(procs, ", "))
	}
}

// NoInstance explains a ShowResult without instances.
func (r *ShowResult) NoInstance() string {
	what := "no instance"
	if r.Process != "" {
		what = "no instance of process " + r.Process
	}
	msg := fmt.Sprintf("%s for correlation id %q in changelog %s partition %d (%d committed records read)", what, r.CorrelationID, r.Source.Topic, r.Partition, r.Source.Records)
	if len(r.Removed) > 0 {
		msg += fmt.Sprintf("; %d removed (housekeeping removes a finished instance keep_finished after it ends)", len(r.Removed))
	}
	if n := r.BufferedTotal(); n > 0 {
		msg += fmt.Sprintf("; events for it are buffered: %d early events waiting for the event that starts it", n)
	} else if len(r.Removed) == 0 {
		msg += "; no early events are buffered for it either (is the id right? ids are case-sensitive; `ordo process list` lists instances)"
	}
	return msg
}

func writeInstance(w io.Writer, in *InstanceView, now time.Time) {
	fmt.Fprintf(w, "%s@%d\n", in.Process, in.Version)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "  %s\t%s\n", k, v) }
	if in.Problem != "" {
		row("problem", in.Problem+" (written by a newer ordo? show it with that version)")
	} else {
		row("state", in.State)
		row("status", in.Status)
		row("started", fmt.Sprintf("%s (age %s)", fmtTime(in.Started), fmtAge(now.Sub(in.Started))))
		row("updated", fmt.Sprintf("%s (idle %s)", fmtTime(in.Updated), fmtAge(now.Sub(in.Updated))))
		if len(in.Joined) > 0 {
			row("joined", strings.Join(in.Joined, ", "))
		}
		if in.Waiting > 0 {
			row("waiting", fmt.Sprintf("%d early events buffered at the last change", in.Waiting))
		}
	}
	o := in.Origin
	earlier := "no earlier version left in the changelog"
	if o.Earlier > 0 {
		earlier = fmt.Sprintf("%d earlier version(s) still in the changelog", o.Earlier)
		if in.Versions == nil {
			earlier += " (--versions lists them)"
		}
	}
	row("from", fmt.Sprintf("%s, written %s; %s", o.Coordinates(), fmtTime(o.Written), earlier))
	_ = tw.Flush()
	if in.Problem != "" {
		return
	}
	keys := make([]string, 0, len(in.Vars))
	for k := range in.Vars {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fmt.Fprintf(w, "  vars (%d):\n", len(keys))
	tw = tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	for _, k := range keys {
		fmt.Fprintf(tw, "    %s\t= %s\n", k, FormatValue(in.Vars[k]))
	}
	_ = tw.Flush()
	if len(in.Timers) == 0 {
		fmt.Fprintln(w, "  timers: none pending")
	} else {
		fmt.Fprintf(w, "  timers (%d pending):\n", len(in.Timers))
		for _, t := range in.Timers {
			when := "due in " + fmtAge(t.Due.Sub(now))
			if !t.Due.After(now) {
				when = "overdue by " + fmtAge(now.Sub(t.Due)) + " (fires once a replica owns the partition)"
			}
			fmt.Fprintf(w, "    %s  due %s  %s\n", t.Name, fmtTime(t.Due), when)
		}
	}
	if len(in.Compensations) == 0 {
		fmt.Fprintln(w, "  compensations: none recorded")
	} else {
		fmt.Fprintf(w, "  compensations (%d recorded, emitted if the process compensates):\n", len(in.Compensations))
		for _, c := range in.Compensations {
			fmt.Fprintf(w, "    %s -> %s (step %s) %s\n", c.Type, c.Topic, c.Step, FormatValue(c.Fields))
		}
	}
	fmt.Fprintf(w, "  history (%d, oldest first):\n", len(in.History))
	for _, h := range in.History {
		fmt.Fprintf(w, "    %s\n", fmtHistory(h))
	}
	if in.Versions != nil {
		fmt.Fprintf(w, "  versions in the changelog (%d, oldest first; compaction keeps recent ones):\n", len(in.Versions))
		for _, v := range in.Versions {
			fmt.Fprintf(w, "    @%d  %s  %s\n", v.Offset, fmtTime(v.Written), fmtVersion(v))
		}
	}
}

// WriteProcessList prints one line per instance (at most limit; 0: all)
// and the totals.
func WriteProcessList(w io.Writer, r *ListResult, limit int) {
	shown := r.Instances
	if limit > 0 && len(shown) > limit {
		shown = shown[:limit]
	}
	if len(shown) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CORRELATION ID\tPROCESS\tSTATE\tSTATUS\tAGE\tIDLE\tLAST")
		for _, e := range shown {
			last := "-"
			if e.Last != nil {
				last = e.Last.Kind + " " + e.Last.Type
			}
			fmt.Fprintf(tw, "%s\t%s@%d\t%s\t%s\t%s\t%s\t%s\n", e.CorrelationID, e.Process, e.Version, e.State, e.Status,
				fmtAge(r.Now.Sub(e.Started)), fmtAge(r.Now.Sub(e.Updated)), last)
		}
		_ = tw.Flush()
		if len(shown) < len(r.Instances) {
			fmt.Fprintf(w, "... %d more (--limit %d; --limit 0 shows all)\n", len(r.Instances)-len(shown), limit)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%d instance(s) match of %d in %s\n", len(r.Instances), r.Scanned, fmtReadAll(r.Source))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, t := range r.Totals {
		fmt.Fprintf(tw, "  %s@%d\t%s\t%d\n", t.Process, t.Version, t.Status, t.Count)
	}
	_ = tw.Flush()
	for _, u := range r.Undecodable {
		fmt.Fprintf(w, "not decodable: %s at partition %d offset %d: %s\n", u.Key, u.Partition, u.Offset, u.Problem)
	}
}

func fmtReadAll(src ChangelogRead) string {
	return fmt.Sprintf("changelog %s (%d partitions, %d committed records)", src.Topic, src.Partitions, src.Records)
}
