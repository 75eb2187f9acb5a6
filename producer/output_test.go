package producer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/schemas"
)

// sizedEncoder encodes every command as n bytes.
type sizedEncoder struct{ n int }

func (e sizedEncoder) AppendEncoded(_ context.Context, dst []byte, _, _ string, _ any) ([]byte, error) {
	return append(dst, bytes.Repeat([]byte{'v'}, e.n)...), nil
}

func fixedLimit(n int) func(context.Context, string) int {
	return func(context.Context, string) int { return n }
}

func header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// encodedBatchBytes is the size of a v2 record batch holding only r, as
// kmsg encodes it (what the broker measures against max.message.bytes).
func encodedBatchBytes(r *kgo.Record) int {
	rec := kmsg.Record{Key: r.Key, Value: r.Value}
	for _, h := range r.Headers {
		rec.Headers = append(rec.Headers, kmsg.Header{Key: h.Key, Value: h.Value})
	}
	rec.Length = int32(len(rec.AppendTo(nil)) - 1) // everything after the length varint (0 takes 1 byte)
	body := rec.AppendTo(nil)
	b := kmsg.RecordBatch{Magic: 2, NumRecords: 1, Records: body, FirstTimestamp: time.Now().UnixMilli(), MaxTimestamp: time.Now().UnixMilli()}
	return len(b.AppendTo(nil))
}

// TestRecordBytesIsAnUpperBound: the estimate is never below the encoded
// batch, and not far above it.
func TestRecordBytesIsAnUpperBound(t *testing.T) {
	big := bytes.Repeat([]byte{'x'}, 1<<20)
	cases := []*kgo.Record{
		{},
		{Value: []byte{0}},
		{Key: []byte("k"), Value: big[:300]},
		{Key: big[:20000], Value: big[:70000], Headers: []kgo.RecordHeader{{Key: "a", Value: big[:200]}, {Key: strings.Repeat("h", 300), Value: nil}}},
		{Value: big},
	}
	for i, r := range cases {
		got, real := RecordBytes(r), encodedBatchBytes(r)
		if got < real {
			t.Errorf("case %d: estimate %d below the encoded batch %d", i, got, real)
		}
		if slack := got - real; slack > 4+recordOverhead+headerOverhead*len(r.Headers) {
			t.Errorf("case %d: estimate %d is %d above the encoded batch %d", i, got, slack, real)
		}
	}
}

// TestCommandTooLargeIsPermanent: a command over its topic's limit fails
// the event permanently (no records, reason record_too_large, the command
// type and size in the message); one at the limit passes.
func TestCommandTooLargeIsPermanent(t *testing.T) {
	in := &kgo.Record{Topic: "in", Partition: 2, Offset: 41, Key: []byte("key-1"), Value: []byte("input")}
	const limit = 4000
	cmd := func() []processors.Command {
		return []processors.Command{
			{Topic: "small", Type: "com.acme.Small", Key: []byte("key-1"), Value: map[string]any{}},
			{Topic: "big", Type: "com.acme.Big", Key: []byte("key-1"), Value: map[string]any{}},
		}
	}
	// Find the value size that puts the "big" command exactly at the limit.
	probe := NewOutput(sizedEncoder{0}, "dlq", "g")
	recs, err := probe.Commands(context.Background(), in, cmd())
	if err != nil {
		t.Fatal(err)
	}
	atLimit := limit - RecordBytes(recs[1])

	o := NewOutput(sizedEncoder{atLimit}, "dlq", "g", WithMaxRecordBytes(fixedLimit(limit)))
	recs, err = o.Commands(context.Background(), in, cmd())
	if err != nil || len(recs) != 2 || RecordBytes(recs[1]) != limit {
		t.Fatalf("a command at the limit must pass: %d records, %v", len(recs), err)
	}

	o = NewOutput(sizedEncoder{atLimit + 1}, "dlq", "g", WithMaxRecordBytes(fixedLimit(limit)))
	recs, err = o.Commands(context.Background(), in, cmd())
	if err == nil || recs != nil {
		t.Fatalf("one byte over the limit: %d records, err %v", len(recs), err)
	}
	if processors.IsTransient(err) {
		t.Fatalf("too large must be permanent: %v", err)
	}
	var tl *RecordTooLargeError
	if !errors.As(err, &tl) || tl.Topic != "small" && tl.Topic != "big" || tl.Bytes != limit+1 || tl.Limit != limit {
		t.Fatalf("want *RecordTooLargeError of %d > %d bytes, got %T %v", limit+1, limit, err, err)
	}
	for _, want := range []string{"record_too_large", "com.acme.", strconv.Itoa(limit + 1), strconv.Itoa(limit)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q should name %q", err, want)
		}
	}
	dead := o.DeadLetterContext(context.Background(), in, err)
	if r, _ := header(dead, HeaderDLQReason); r != ReasonRecordTooLarge {
		t.Fatalf("dead letter reason %q, want %q", r, ReasonRecordTooLarge)
	}
	if p, _ := header(dead, HeaderDLQProcessor); p != "encode" {
		t.Fatalf("dead letter processor %q, want encode", p)
	}
	if !bytes.Equal(dead.Value, in.Value) {
		t.Fatal("the input fits: its dead letter must keep the value")
	}

	// Without an option the default limit (franz-go's max batch bytes) holds.
	o = NewOutput(sizedEncoder{DefaultMaxRecordBytes}, "dlq", "g")
	if _, err := o.Commands(context.Background(), in, cmd()[:1]); !errors.As(err, &tl) || tl.Limit != DefaultMaxRecordBytes {
		t.Fatalf("default limit: %v", err)
	}
}

// TestOversizeDeadLetterIsBounded: a 1.1 MiB input dead-lettered to a topic
// at the default limit gives a dead letter that fits, with the value cut to
// its documented prefix and the original coordinates and sizes in headers.
func TestOversizeDeadLetterIsBounded(t *testing.T) {
	value := bytes.Repeat([]byte{0, 0, 0, 0, 7, 'x'}, 1153434/6) // ~1.1 MiB
	in := &kgo.Record{Topic: "orders", Partition: 3, Offset: 12345, Key: []byte("order-9"), Value: value,
		Headers: []kgo.RecordHeader{{Key: "ordo-type", Value: []byte("com.acme.OrderPlaced")}, {Key: HeaderTraceparent, Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")}}}
	cause := &processors.ProcessorError{Processor: "order-rules", Err: errors.New("expected total > 0")}
	o := NewOutput(sizedEncoder{}, "dlq", "grp")
	o.now = func() time.Time { return time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC) }
	full := RecordBytes(&kgo.Record{Key: in.Key, Value: in.Value, Headers: in.Headers})
	if full <= DefaultMaxRecordBytes {
		t.Fatalf("test input too small: %d", full)
	}

	dead := o.DeadLetterContext(context.Background(), in, cause)
	if n := RecordBytes(dead); n > DefaultMaxRecordBytes {
		t.Fatalf("bounded dead letter is %d bytes, over %d", n, DefaultMaxRecordBytes)
	}
	if !bytes.Equal(dead.Value, value[:DeadLetterPrefixBytes]) || !bytes.Equal(dead.Key, in.Key) || dead.Topic != "dlq" {
		t.Fatalf("value must be the first %d bytes and the key kept: value %d bytes, key %q", DeadLetterPrefixBytes, len(dead.Value), dead.Key)
	}
	want := map[string]string{
		HeaderDLQReason:          ReasonRecordTooLarge,
		HeaderDLQOriginalReason:  ReasonProcessorError,
		HeaderDLQTruncated:       "value",
		HeaderDLQValueSize:       strconv.Itoa(len(value)),
		HeaderDLQKeySize:         "7",
		HeaderDLQSourceTopic:     "orders",
		HeaderDLQSourcePartition: "3",
		HeaderDLQSourceOffset:    "12345",
		HeaderDLQProcessor:       "order-rules",
		HeaderDLQError:           cause.Error(),
		HeaderDLQGroup:           "grp",
		HeaderDLQErrorClass:      "permanent",
		"ordo-type":              "com.acme.OrderPlaced",
		HeaderTraceparent:        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	}
	for k, v := range want {
		if got, ok := header(dead, k); !ok || got != v {
			t.Errorf("header %s = %q (present %v), want %q", k, got, ok, v)
		}
	}
	if got, _ := header(dead, HeaderDLQRecordSize); got == "" {
		t.Error("no record size header")
	} else if n, _ := strconv.Atoi(got); n <= DefaultMaxRecordBytes {
		t.Errorf("record size header %s should be the full size, over the limit", got)
	}

	// A dead letter that fits is the original, untouched.
	small := &kgo.Record{Topic: "orders", Key: []byte("k"), Value: []byte("v")}
	d := o.DeadLetterContext(context.Background(), small, cause)
	if _, cut := header(d, HeaderDLQTruncated); cut || string(d.Value) != "v" {
		t.Fatalf("small dead letter changed: %v", d)
	}
	if r, _ := header(d, HeaderDLQReason); r != ReasonProcessorError {
		t.Fatalf("small dead letter reason %q", r)
	}
}

// TestOversizeDeadLetterSteps: huge original headers are dropped (trace
// headers kept); a tiny limit omits value and key and cuts the error.
func TestOversizeDeadLetterSteps(t *testing.T) {
	tp := []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	in := &kgo.Record{Topic: "t", Key: bytes.Repeat([]byte{'k'}, 3000), Value: bytes.Repeat([]byte{'v'}, 500),
		Headers: []kgo.RecordHeader{{Key: "blob", Value: bytes.Repeat([]byte{'h'}, 50000)}, {Key: HeaderTraceparent, Value: tp}}}
	cause := fmt.Errorf("bad: %s", strings.Repeat("e", 3000))

	o := NewOutput(sizedEncoder{}, "dlq", "g", WithMaxRecordBytes(fixedLimit(10000)))
	d := o.DeadLetterContext(context.Background(), in, cause)
	if n := RecordBytes(d); n > 10000 {
		t.Fatalf("step 2: %d bytes over 10000", n)
	}
	if _, ok := header(d, "blob"); ok {
		t.Fatal("step 2: the huge original header must be dropped")
	}
	if got, _ := header(d, HeaderTraceparent); got != string(tp) {
		t.Fatal("step 2: the trace header must be kept")
	}
	if cut, _ := header(d, HeaderDLQTruncated); cut != "key,headers" {
		t.Fatalf("step 2: truncated %q, want key,headers", cut)
	}
	if len(d.Key) != DeadLetterPrefixBytes || string(d.Value) != string(in.Value) {
		t.Fatalf("step 2: key %d bytes, value %d bytes", len(d.Key), len(d.Value))
	}

	o = NewOutput(sizedEncoder{}, "dlq", "g", WithMaxRecordBytes(fixedLimit(1200)))
	d = o.DeadLetterContext(context.Background(), in, cause)
	if n := RecordBytes(d); n > 1200 {
		t.Fatalf("step 3: %d bytes over 1200", n)
	}
	if d.Value == nil || len(d.Value) != 0 || d.Key != nil {
		t.Fatalf("step 3: want an empty (not null) value and no key, got value %v key %d bytes", d.Value, len(d.Key))
	}
	if e, _ := header(d, HeaderDLQError); len(e) != 256 || !strings.HasPrefix(e, "bad: eee") {
		t.Fatalf("step 3: error header %d bytes", len(e))
	}
	if cut, _ := header(d, HeaderDLQTruncated); cut != "value,key,headers,error" {
		t.Fatalf("step 3: truncated %q", cut)
	}
}

// TestDeadLetterReasons: reasons come from the error chain.
func TestDeadLetterReasons(t *testing.T) {
	o := NewOutput(sizedEncoder{}, "dlq", "g")
	ctx := context.Background()
	_, _, tombErr := schemas.ParseHeader(nil)
	_, _, emptyErr := schemas.ParseHeader([]byte{})
	cases := []struct {
		in     *kgo.Record
		err    error
		reason string
		says   string
	}{
		{&kgo.Record{Topic: "t"}, tombErr, schemas.ReasonTombstone, "tombstone (null value)"},
		{&kgo.Record{Topic: "t", Value: []byte{}}, emptyErr, schemas.ReasonEmptyPayload, "empty payload"},
		{&kgo.Record{Topic: "t", Value: []byte{9}}, &schemas.UnknownSchemaError{ID: 9, Err: errors.New("Schema 9 not found")}, schemas.ReasonUnknownSchema, "schema id 9"},
		{&kgo.Record{Topic: "t", Value: []byte{9}}, &processors.ProcessorError{Processor: "rules", Err: errors.New("no")}, ReasonProcessorError, "processor rules"},
		{&kgo.Record{Topic: "t", Value: []byte{9}}, errors.New("reader incompatible"), ReasonDecodeError, "reader incompatible"},
	}
	for _, c := range cases {
		d := o.DeadLetterContext(ctx, c.in, c.err)
		if r, _ := header(d, HeaderDLQReason); r != c.reason {
			t.Errorf("%v: reason %q, want %q", c.err, r, c.reason)
		}
		if e, _ := header(d, HeaderDLQError); !strings.Contains(e, c.says) {
			t.Errorf("error header %q should say %q", e, c.says)
		}
	}
	if strings.Contains(tombErr.Error(), "empty payload") {
		t.Errorf("a tombstone must not be reported as an empty payload: %v", tombErr)
	}
}
