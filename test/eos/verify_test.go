package eos

// The verifier. It knows only ordo's wire contract: the topics, the
// Confluent-framed Avro commands (decoded here with plain goavro and schema
// lookups by id over the registry's REST API, not with ordo's resolution),
// the ordo-input / ordo-causation-id / ordo-id / ordo-type headers on
// commands and the ordo-dlq-* headers on dead letters.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	settlepkg "github.com/ordo-dev/ordo/internal/settle"
)

// result is what the verifier found.
type result struct {
	events, valid, poison, aborted, foreign int
	commands, abortedOutput                 int

	lost, duplicated, abortedRead, orderViolations int
	deadLetters, wantDeadLetters                   int
	problems                                       []string
}

func (r *result) problem(format string, args ...any) {
	if len(r.problems) < 20 {
		r.problems = append(r.problems, fmt.Sprintf(format, args...))
	} else if len(r.problems) == 20 {
		r.problems = append(r.problems, "... (more problems not shown)")
	}
}

func (r *result) details() string {
	return fmt.Sprintf("valid=%d poison=%d foreign=%d aborted_upstream=%d commands=%d aborted_output_records=%d problems=%d",
		r.valid, r.poison, r.foreign, r.aborted, r.commands, r.abortedOutput, len(r.problems))
}

// verify stops nothing: call it once every replica is stopped (or at least
// once waitProcessed returned).
func (sc *scenario) verify(g *generator) *result {
	sc.t.Helper()
	if err := g.Err(); err != nil {
		sc.t.Fatalf("publishing failed: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := verify(ctx, sc.brokers, sc.regURL, sc.tp, sc.group, g)
	if err != nil {
		sc.t.Fatalf("verify: %v", err)
	}
	return res
}

func verify(ctx context.Context, brokers []string, regURL string, tp *topics, group string, g *generator) (*result, error) {
	evs := g.snapshot()
	res := &result{}
	byRef := make(map[inRef]*event, len(evs))
	for i := range evs {
		e := &evs[i]
		byRef[e.ref] = e
		switch e.kind {
		case kindValid:
			res.valid++
		case kindPoison:
			res.poison++
		case kindAborted:
			res.aborted++
		case kindForeign:
			res.foreign++
		}
	}
	res.events = res.valid + res.poison + res.foreign
	res.wantDeadLetters = res.poison

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	// 1. Every transaction on the outputs has ended (LSO == high watermark).
	ends, err := settle(ctx, adm, tp.outputs(), 90*time.Second)
	if err != nil {
		return nil, err
	}
	// 2. The whole log, aborted records included, to know which offsets
	//    belong to aborted transactions (from the markers, per producer id).
	uncommitted, err := readAll(ctx, brokers, ends, false)
	if err != nil {
		return nil, fmt.Errorf("read_uncommitted: %w", err)
	}
	abortedSet := map[inRef]bool{}
	committedSet := map[inRef]bool{}
	for tpk, recs := range uncommitted {
		open := map[int64][]int64{} // producer id → offsets of its open transaction
		for _, r := range recs {
			if r.Attrs.IsControl() {
				if len(r.Key) < 4 {
					continue
				}
				abort := binary.BigEndian.Uint16(r.Key[2:4]) == 0
				for _, o := range open[r.ProducerID] {
					ref := inRef{tpk.topic, tpk.partition, o}
					if abort {
						abortedSet[ref] = true
					} else {
						committedSet[ref] = true
					}
				}
				delete(open, r.ProducerID)
				continue
			}
			if r.Attrs.IsTransactional() {
				open[r.ProducerID] = append(open[r.ProducerID], r.Offset)
			} else {
				committedSet[inRef{tpk.topic, tpk.partition, r.Offset}] = true
			}
		}
		for pid, offs := range open {
			res.problem("%s/%d: producer %d has %d records without a marker after settling", short(tpk.topic), tpk.partition, pid, len(offs))
		}
	}
	res.abortedOutput = len(abortedSet)

	// 3. What a read_committed consumer sees.
	committed, err := readAll(ctx, brokers, ends, true)
	if err != nil {
		return nil, fmt.Errorf("read_committed: %w", err)
	}
	dec := newDecoder(regURL)
	type refType struct {
		ref inRef
		typ string
	}
	type causeType struct{ cause, typ string }
	type orderKey struct {
		out  tpKey
		key  string
		from tpKey
	}
	got := map[refType]int{}
	byCause := map[causeType]int{}
	ids := map[string]int{}
	lastIn := map[orderKey]int64{}
	dlq := map[inRef]int{}
	visible := 0
	offs, err := adm.FetchOffsets(kadm.RequireStable(ctx), group)
	if err != nil {
		return nil, fmt.Errorf("committed offsets of %s: %w", group, err)
	}
	for tpk, recs := range committed {
		for _, r := range recs {
			if r.Attrs.IsControl() {
				continue
			}
			visible++
			at := inRef{tpk.topic, tpk.partition, r.Offset}
			if abortedSet[at] {
				res.abortedRead++
				res.problem("read_committed returned %s, which belongs to an aborted transaction", at)
			} else if !committedSet[at] {
				res.problem("read_committed returned %s, which read_uncommitted did not show as committed", at)
			}
			h := headerMap(r)
			if tpk.topic == tp.dlq {
				res.deadLetters++
				src, ok := dlqSource(h)
				if !ok {
					res.problem("dead letter %s lacks ordo-dlq-source-* headers: %v", at, h)
					continue
				}
				dlq[src]++
				e := byRef[src]
				switch {
				case e == nil:
					res.problem("dead letter %s names unknown input %s", at, src)
					continue
				case e.kind == kindAborted:
					res.abortedRead++
					res.problem("dead letter %s comes from aborted upstream input %s", at, src)
					continue
				case e.kind != kindPoison:
					res.problem("valid input %s (%s) was dead-lettered: %s", src, g.eventID(e), h["ordo-dlq-error"])
					continue
				}
				if h["ordo-dlq-reason"] == "record_too_large" {
					// A bounded dead letter (the original did not fit the
					// topic): a prefix of the value, its full size named.
					if e.ext.why != "oversize" {
						res.problem("dead letter %s of %s (%s) was bounded although the input fits", at, src, e.ext.why)
					}
					if !bytes.HasPrefix(e.ext.value, r.Value) || len(r.Value) >= len(e.ext.value) ||
						h["ordo-dlq-value-size"] != strconv.Itoa(len(e.ext.value)) || h["ordo-dlq-original-reason"] == "" {
						res.problem("bounded dead letter %s of %s: value %d bytes (a prefix of the %d-byte input?), headers %v", at, src, len(r.Value), len(e.ext.value), h)
					}
				} else if !bytes.Equal(r.Value, e.ext.value) || string(r.Key) != e.ext.key {
					res.problem("dead letter %s of %s (%s) is not byte-equal to the input", at, src, e.ext.why)
				} else if e.ext.why == "oversize" {
					res.problem("dead letter %s of %s is the whole oversize input: it cannot fit the dead-letter topic", at, src)
				}
				if h["ordo-dlq-error"] == "" || h["ordo-dlq-error-class"] != "permanent" || h["ordo-dlq-processor"] == "" {
					res.problem("dead letter %s of %s (%s) lacks its reason headers: %v", at, src, e.ext.why, h)
				}
				continue
			}
			res.commands++
			in, ok := parseRef(h["ordo-input"])
			if !ok {
				res.duplicated++
				res.problem("command %s has no valid ordo-input header (%q)", at, h["ordo-input"])
				continue
			}
			cmd, err := dec.command(ctx, r.Value)
			if err != nil {
				res.problem("command %s: %v", at, err)
				continue
			}
			if want := tp.commandType[tpk.topic]; cmd.typ != want || h["ordo-type"] != want {
				res.problem("command %s has type %s (header %s), want %s", at, cmd.typ, h["ordo-type"], want)
			}
			if h["ordo-causation-id"] != cmd.causation || string(r.Key) != cmd.correlation || cmd.orderID != cmd.correlation {
				res.problem("command %s: headers and envelope disagree: causation %q/%q key %q correlation %q order %q",
					at, h["ordo-causation-id"], cmd.causation, r.Key, cmd.correlation, cmd.orderID)
			}
			if o, ok := offs.Lookup(in.topic, in.partition); !ok || in.offset >= o.At {
				res.problem("command %s comes from input %s at or past the group's committed offset", at, in)
			}
			e := byRef[in]
			switch {
			case e == nil:
				res.duplicated++
				res.problem("command %s comes from unknown input %s", at, in)
				continue
			case e.kind == kindAborted:
				res.abortedRead++
				res.problem("command %s was caused by %s (%s), an aborted upstream event", at, in, g.eventID(e))
				continue
			case e.kind == kindPoison:
				res.duplicated++
				res.problem("command %s was caused by poison input %s (%s)", at, in, e.ext.why)
				continue
			}
			if cmd.causation != g.eventID(e) || cmd.correlation != g.eventKey(e) {
				res.problem("command %s: causation %q key %q, input %s is %q key %q", at, cmd.causation, cmd.correlation, in, g.eventID(e), g.eventKey(e))
			}
			got[refType{in, cmd.typ}]++
			byCause[causeType{cmd.causation, cmd.typ}]++
			ids[cmd.id]++
			// per key, the commands of one input partition keep its order
			ok2 := orderKey{tpk, string(r.Key), tpKey{in.topic, in.partition}}
			if last, seen := lastIn[ok2]; seen && in.offset < last {
				res.orderViolations++
				res.problem("order: %s/%d key %s: command of input %s after one of offset %d", short(tpk.topic), tpk.partition, r.Key, in, last)
			}
			lastIn[ok2] = max(lastIn[ok2], in.offset)
		}
	}
	if n := len(committedSet); n != visible {
		res.problem("read_committed showed %d records, read_uncommitted minus aborted %d", visible, n)
	}

	// 4. Every event got exactly its commands; every poison exactly one dead letter.
	dupRef, dupCause, dupID := 0, 0, 0
	for k, n := range got {
		if n > 1 {
			dupRef += n - 1
			res.problem("input %s produced %s %d times", k.ref, short(k.typ), n)
		}
	}
	for _, n := range byCause {
		dupCause += max(n-1, 0)
	}
	for _, n := range ids {
		dupID += max(n-1, 0)
	}
	res.duplicated += max(dupRef, dupCause, dupID)
	for i := range evs {
		e := &evs[i]
		switch e.kind {
		case kindValid, kindForeign:
			want := expectedCommands[eventTypes[e.typ]]
			for _, ct := range want {
				if got[refType{e.ref, ct}] == 0 {
					res.lost++
					res.problem("input %s (%s, %s) has no %s", e.ref, g.eventID(e), eventTypes[e.typ], short(ct))
				}
			}
			if dlq[e.ref] > 0 {
				res.lost++ // its commands are missing too, but count the diversion
			}
		case kindPoison:
			switch n := dlq[e.ref]; {
			case n == 0:
				res.lost++
				res.problem("poison %s (%s) is not in the dead-letter topic", e.ref, e.ext.why)
			case n > 1:
				res.duplicated += n - 1
				res.problem("poison %s (%s) dead-lettered %d times", e.ref, e.ext.why, n)
			}
		}
	}
	// every produced command is of an expected type for its input
	for k := range got {
		e := byRef[k.ref]
		if !slices.Contains(expectedCommands[eventTypes[e.typ]], k.typ) {
			res.duplicated++
			res.problem("input %s (%s) produced unexpected %s", k.ref, eventTypes[e.typ], short(k.typ))
		}
	}

	// 5. The group's committed offsets are exactly the end of the input.
	inEnds, err := adm.ListEndOffsets(ctx, tp.inputs()...)
	if err != nil {
		return nil, err
	}
	want := g.lastVisible()
	inEnds.Each(func(o kadm.ListedOffset) {
		c, ok := offs.Lookup(o.Topic, o.Partition)
		at := int64(-1)
		if ok && c.Err == nil {
			at = c.At
		}
		lv := want[tpKey{o.Topic, o.Partition}]
		if lv == 0 && at < 0 {
			return // nothing visible was ever published here
		}
		if at < lv || at > o.Offset {
			res.problem("group offset of %s/%d is %d; want between the last visible input %d and the end %d", short(o.Topic), o.Partition, at, lv, o.Offset)
		}
	})
	return res, nil
}

func headerMap(r *kgo.Record) map[string]string {
	m := make(map[string]string, len(r.Headers))
	for _, h := range r.Headers {
		m[h.Key] = string(h.Value)
	}
	return m
}

// parseRef parses "topic/partition/offset" (the topic may contain '/').
func parseRef(s string) (inRef, bool) {
	j := strings.LastIndexByte(s, '/')
	if j < 0 {
		return inRef{}, false
	}
	i := strings.LastIndexByte(s[:j], '/')
	if i < 0 {
		return inRef{}, false
	}
	p, err1 := strconv.Atoi(s[i+1 : j])
	o, err2 := strconv.ParseInt(s[j+1:], 10, 64)
	if err1 != nil || err2 != nil {
		return inRef{}, false
	}
	return inRef{s[:i], int32(p), o}, true
}

func dlqSource(h map[string]string) (inRef, bool) {
	p, err1 := strconv.Atoi(h["ordo-dlq-source-partition"])
	o, err2 := strconv.ParseInt(h["ordo-dlq-source-offset"], 10, 64)
	if err1 != nil || err2 != nil || h["ordo-dlq-source-topic"] == "" {
		return inRef{}, false
	}
	return inRef{h["ordo-dlq-source-topic"], int32(p), o}, true
}

// settle waits until no transaction is open on topics (package settle) and
// returns their ends.
func settle(ctx context.Context, adm *kadm.Client, topics []string, timeout time.Duration) (map[tpKey]int64, error) {
	hw, err := settlepkg.Wait(ctx, adm, timeout, topics...)
	if err != nil {
		return nil, err
	}
	ends := map[tpKey]int64{}
	hw.Each(func(o kadm.ListedOffset) { ends[tpKey{o.Topic, o.Partition}] = o.Offset })
	return ends, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// readAll reads [0, end) of every partition in ends, keeping control
// records (they occupy offsets: the last offset of a transactional log is a
// marker), read_committed or read_uncommitted.
func readAll(ctx context.Context, brokers []string, ends map[tpKey]int64, readCommitted bool) (map[tpKey][]*kgo.Record, error) {
	return readRange(ctx, brokers, nil, ends, readCommitted)
}

// readRange reads [starts, ends) (a missing start is 0).
func readRange(ctx context.Context, brokers []string, starts, ends map[tpKey]int64, readCommitted bool) (map[tpKey][]*kgo.Record, error) {
	assign := map[string]map[int32]kgo.Offset{}
	left := map[tpKey]bool{}
	for k, end := range ends {
		if end <= starts[k] {
			continue
		}
		if assign[k.topic] == nil {
			assign[k.topic] = map[int32]kgo.Offset{}
		}
		assign[k.topic][k.partition] = kgo.NewOffset().At(starts[k])
		left[k] = true
	}
	out := map[tpKey][]*kgo.Record{}
	if len(left) == 0 {
		return out, nil
	}
	iso := kgo.ReadUncommitted()
	if readCommitted {
		iso = kgo.ReadCommitted()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(assign), kgo.FetchIsolationLevel(iso),
		kgo.KeepControlRecords(), kgo.FetchMaxPartitionBytes(4<<20))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("reading timed out with %d partitions unfinished", len(left))
		}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			k := tpKey{p.Topic, p.Partition}
			if !left[k] {
				return
			}
			end := ends[k]
			for _, r := range p.Records {
				if r.Offset >= end {
					continue
				}
				out[k] = append(out[k], r)
				if r.Offset >= end-1 {
					delete(left, k)
				}
			}
		})
	}
	return out, nil
}

// decoder decodes Confluent-framed Avro with plain goavro, fetching writer
// schemas by id from the registry's REST API.
type decoder struct {
	url    string
	mu     sync.Mutex
	codecs map[uint32]*goavro.Codec
}

func newDecoder(url string) *decoder { return &decoder{url: url, codecs: map[uint32]*goavro.Codec{}} }

func (d *decoder) codec(ctx context.Context, id uint32) (*goavro.Codec, error) {
	d.mu.Lock()
	c := d.codecs[id]
	d.mu.Unlock()
	if c != nil {
		return c, nil
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/schemas/ids/%d", d.url, id), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Schema string `json:"schema"`
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("registry: schema id %d: HTTP %d", id, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	c, err = goavro.NewCodec(body.Schema)
	if err != nil {
		return nil, fmt.Errorf("schema id %d: %w", id, err)
	}
	d.mu.Lock()
	d.codecs[id] = c
	d.mu.Unlock()
	return c, nil
}

// decode returns the top-level record of a framed value.
func (d *decoder) decode(ctx context.Context, v []byte) (map[string]any, error) {
	if len(v) < 5 || v[0] != 0 {
		return nil, fmt.Errorf("not Confluent-framed")
	}
	c, err := d.codec(ctx, binary.BigEndian.Uint32(v[1:5]))
	if err != nil {
		return nil, err
	}
	native, rest, err := c.NativeFromBinary(v[5:])
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(rest))
	}
	m, ok := native.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not a record")
	}
	return m, nil
}

type command struct{ id, typ, correlation, causation, orderID string }

func (d *decoder) command(ctx context.Context, v []byte) (command, error) {
	m, err := d.decode(ctx, v)
	if err != nil {
		return command{}, err
	}
	env, _ := m["envelope"].(map[string]any)
	c := command{}
	c.id, _ = env["id"].(string)
	c.typ, _ = env["type"].(string)
	c.correlation, _ = env["correlation_id"].(string)
	switch cz := env["causation_id"].(type) {
	case map[string]any:
		c.causation, _ = cz["string"].(string)
	case string:
		c.causation = cz
	}
	c.orderID, _ = m["order_id"].(string)
	return c, nil
}
