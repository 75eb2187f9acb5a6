package ops_test

import (
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/internal/ops"
	"github.com/ordo-dev/ordo/producer"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-03-01T10:30:00Z":          time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC),
		"2026-03-01T10:30:00.250+01:00": time.Date(2026, 3, 1, 9, 30, 0, 250e6, time.UTC),
		"-1h":                           now.Add(-time.Hour),
		"-2h30m":                        now.Add(-150 * time.Minute),
	} {
		got, err := ops.ParseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{"1h": "needs a minus sign", "yesterday": "neither RFC 3339", "": "empty time", "2026-03-01": "neither"} {
		if _, err := ops.ParseTime(in, now); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseTime(%q): %v, want an error containing %q", in, err, want)
		}
	}
}

func TestParseOffsetSpec(t *testing.T) {
	s, err := ops.ParseOffsetSpec([]string{"earliest", "a.b:2=17,x:y:0=latest"})
	if err != nil {
		t.Fatal(err)
	}
	if s.All == nil || s.All.Kind != ops.TargetEarliest {
		t.Errorf("All = %+v", s.All)
	}
	if got := s.Per[ops.TopicPartition{Topic: "a.b", Partition: 2}]; got.Kind != ops.TargetExact || got.Offset != 17 {
		t.Errorf("a.b:2 = %+v", got)
	}
	if got := s.Per[ops.TopicPartition{Topic: "x:y", Partition: 0}]; got.Kind != ops.TargetLatest {
		t.Errorf("x:y:0 = %+v", got)
	}
	for in, want := range map[string]string{
		"":             "empty",
		"-5":           "offset ≥ 0",
		"soon":         "not earliest, latest",
		"t=5":          "topic:partition=offset",
		"t:x=5":        "not a partition number",
		"1,2":          "two targets",
		"t:0=1,t:0=2":  "twice",
		"t:0=earliest": "",
	} {
		_, err := ops.ParseOffsetSpec([]string{in})
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseOffsetSpec(%q): %v, want %q", in, err, want)
		}
	}
}

func TestWhereAndFilter(t *testing.T) {
	w, err := ops.ParseWhere([]string{"processor=gate,processor=decode", "reason=BELOW", "source_topic=in"})
	if err != nil {
		t.Fatal(err)
	}
	f := ops.Filter{Where: w, Since: time.Unix(100, 0), Until: time.Unix(200, 0)}
	d := &ops.DeadLetter{Processor: "decode", Error: "total is below the minimum", SourceTopic: "in", Timestamp: time.Unix(150, 0)}
	if !f.Match(d) {
		t.Errorf("%s does not match %+v", f, d)
	}
	for _, mut := range []func(*ops.DeadLetter){
		func(d *ops.DeadLetter) { d.Processor = "routes" },
		func(d *ops.DeadLetter) { d.Error = "other" },
		func(d *ops.DeadLetter) { d.SourceTopic = "in2" },
		func(d *ops.DeadLetter) { d.Timestamp = time.Unix(99, 0) },
		func(d *ops.DeadLetter) { d.Timestamp = time.Unix(201, 0) },
	} {
		c := *d
		mut(&c)
		if f.Match(&c) {
			t.Errorf("%s matches %+v", f, c)
		}
	}
	for in, want := range map[string]string{"processor": "key=value", "colour=red": "unknown key", "reason=": "key=value"} {
		if _, err := ops.ParseWhere([]string{in}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseWhere(%q): %v, want %q", in, err, want)
		}
	}
}

func TestReasonKey(t *testing.T) {
	same := [][2]string{
		{`processor enrich: no table row for key "cust-9"`, `processor enrich: no table row for key "cust-12"`},
		{"avro: schema id 7 (com.acme.X): truncated body at offset 17", "avro: schema id 9 (com.acme.X): truncated body at offset 40"},
		{"avro: malformed frame: unknown magic byte 0x6e (want 0x00)", "avro: malformed frame: unknown magic byte 0x7b (want 0x00)"},
	}
	for _, p := range same {
		if a, b := ops.ReasonKey(p[0]), ops.ReasonKey(p[1]); a != b {
			t.Errorf("%q and %q group apart: %q vs %q", p[0], p[1], a, b)
		}
	}
	if ops.ReasonKey("processor a: x") == ops.ReasonKey("processor b: x") {
		t.Error("different processors' messages share a key")
	}
}

func TestRedriveRecordHeaders(t *testing.T) {
	r := &kgo.Record{Topic: "dlq", Partition: 1, Offset: 42, Key: []byte("k"), Value: []byte("v"), Headers: []kgo.RecordHeader{
		{Key: producer.HeaderID, Value: []byte("evt-1")},
		{Key: ops.HeaderRedriveOf, Value: []byte("dlq/0@3")},
		{Key: producer.HeaderDLQProcessor, Value: []byte("gate")},
		{Key: producer.HeaderDLQSourceTopic, Value: []byte("in")},
		{Key: producer.HeaderDLQSourcePartition, Value: []byte("2")},
		{Key: producer.HeaderDLQSourceOffset, Value: []byte("9")},
		{Key: "traceparent", Value: []byte("00-x")},
	}}
	d := ops.ParseDeadLetter(r)
	if d.Source() != "in/2@9" || d.RedriveOf != "dlq/0@3" || d.Processor != "gate" || d.Redrivable() != "" {
		t.Fatalf("parsed %+v", d)
	}
	out := ops.RedriveRecord(d)
	if out.Topic != "in" || out.Partition != 2 || string(out.Key) != "k" || string(out.Value) != "v" {
		t.Fatalf("record %+v", out)
	}
	var keys []string
	for _, h := range out.Headers {
		keys = append(keys, h.Key+"="+string(h.Value))
	}
	if got := strings.Join(keys, " "); got != "ordo-id=evt-1 traceparent=00-x ordo-redrive-of=dlq/1@42" {
		t.Errorf("headers %s", got)
	}
	if why := ops.ParseDeadLetter(&kgo.Record{Topic: "dlq"}).Redrivable(); !strings.Contains(why, "not written by ordo") {
		t.Errorf("a foreign record is redrivable: %q", why)
	}
}

func TestParseCoordinates(t *testing.T) {
	topic, p, o, err := ops.ParseCoordinates("ordo.dead-letter.v1/2@17")
	if err != nil || topic != "ordo.dead-letter.v1" || p != 2 || o != 17 {
		t.Errorf("got %q %d %d %v", topic, p, o, err)
	}
	if _, _, _, err := ops.ParseCoordinates("2:17"); err == nil || !strings.Contains(err.Error(), "PARTITION@OFFSET") {
		t.Errorf("bad coordinates: %v", err)
	}
}

func TestJsonable(t *testing.T) {
	v := ops.Jsonable(map[string]any{"d": big.NewRat(1234, 100), "third": big.NewRat(1, 3), "t": time.UnixMilli(0), "b": []byte{0xff}, "l": []any{big.NewRat(5, 1)}}).(map[string]any)
	if v["d"] != "12.34" || v["third"] != "1/3" || v["t"] != "1970-01-01T00:00:00Z" || v["b"] != "/w==" || v["l"].([]any)[0] != "5" {
		t.Errorf("%v", v)
	}
}
