package app_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/internal/ops"
	"github.com/ordo-dev/ordo/internal/testkit"
	"github.com/ordo-dev/ordo/processes"
)

// processWorld is a changelog, named as the default config (the example
// saga, examples/orders/ordo.yaml) resolves it for a unique kafka.group,
// holding instances written in transactions, some aborted.
type processWorld struct {
	t         *testing.T
	changelog string
	parts     int
	txn       *kgo.Client
	offsets   map[string][]int64 // committed offsets per key
}

func newProcessWorld(t *testing.T) *processWorld {
	t.Helper()
	if testkit.Kind(t) == testkit.KindKfake {
		t.Skip("needs a real Kafka broker (read_committed over aborted transactions): set KAFKA_BROKERS, e.g. test/kafka/kafka.sh start && eval $(test/kafka/kafka.sh env)")
	}
	brokers := testkit.Brokers(t)
	group := testkit.UniqueName(t, "group")
	w := &processWorld{t: t, changelog: group + ".changelog", parts: 3, offsets: map[string][]int64{}}
	testkit.CreateTopics(t, brokers, int32(w.parts), w.changelog)
	chdirRoot(t)
	t.Setenv("ORDO_KAFKA_BROKERS", strings.Join(brokers, ","))
	t.Setenv("ORDO_KAFKA_GROUP", group)
	var err error
	w.txn, err = kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID(group+"-test"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.txn.Close)
	return w
}

// put writes key=value (nil: a tombstone) for cid in one transaction.
func (w *processWorld) put(cid string, key, value []byte, commit bool) {
	w.t.Helper()
	ctx := context.Background()
	if err := w.txn.BeginTransaction(); err != nil {
		w.t.Fatal(err)
	}
	r := &kgo.Record{Topic: w.changelog, Partition: ops.PartitionOf(cid, w.parts), Key: key, Value: value}
	if err := w.txn.ProduceSync(ctx, r).FirstErr(); err != nil {
		w.t.Fatal(err)
	}
	if err := w.txn.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		w.t.Fatal(err)
	}
	if commit {
		w.offsets[string(key)] = append(w.offsets[string(key)], r.Offset)
	}
}

func (w *processWorld) instance(in processes.Instance, commit bool) {
	w.t.Helper()
	b, err := processes.EncodeInstance(&in)
	if err != nil {
		w.t.Fatal(err)
	}
	w.put(in.CorrelationID, processes.InstanceKey(in.CorrelationID, in.Process), b, commit)
}

func decimal(s string) *big.Rat { r, _ := new(big.Rat).SetString(s); return r }

func TestProcessCommands(t *testing.T) {
	w := newProcessWorld(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	const saga = "order-fulfilment"
	c1 := processes.Instance{
		Process: saga, Version: 1, CorrelationID: "c-1", State: "awaiting_payment_and_stock", Status: "running",
		Vars:          map[string]any{"total": decimal("19.99"), "fee": decimal("0.10"), "order_id": "c-1", "qty": int64(3)},
		Compensations: []processes.Compensation{{Step: "processes[0].states.awaiting_payment_and_stock.join[0]", Type: "com.acme.ordo.commands.VoidPayment", Topic: "commands.void-payment.v1", Fields: map[string]any{"amount": decimal("19.99")}}},
		Timers:        []processes.TimerSet{{Name: "payment_timeout", Due: now.Add(20 * time.Second)}},
		Started:       now.Add(-2 * time.Hour), Updated: now.Add(-2 * time.Hour),
		History: []processes.HistoryEntry{
			{At: now.Add(-2 * time.Hour), Kind: "event", Type: "com.acme.checkout.OrderPlaced", ID: "placed-c-1", Source: "checkout.orders.v1/2/41"},
			{At: now.Add(-2 * time.Hour), Kind: "timer_set", Type: "payment_timeout", ID: "t-1"},
		},
	}
	w.instance(c1, true)
	done := c1
	done.State, done.Status, done.Timers, done.Updated = "shipped", "completed", nil, now.Add(-time.Hour)
	done.History = append(done.History[:2:2], processes.HistoryEntry{At: done.Updated, Kind: "command", Type: "com.acme.ordo.commands.ShipOrder", ID: "cmd-1"})
	w.instance(done, true)
	aborted := done
	aborted.State, aborted.Status = "cancelled", "cancelled"
	w.instance(aborted, false) // never visible

	w.instance(processes.Instance{Process: saga, Version: 1, CorrelationID: "c-2", State: "awaiting_payment_and_stock", Status: "running",
		Vars: map[string]any{}, Started: now.Add(-3 * time.Hour), Updated: now.Add(-3 * time.Hour)}, true)
	w.instance(processes.Instance{Process: saga, Version: 1, CorrelationID: "c-3", State: "shipped", Status: "completed",
		Vars: map[string]any{}, Started: now.Add(-4 * time.Hour), Updated: now.Add(-4 * time.Hour)}, true)
	w.put("c-3", processes.InstanceKey("c-3", saga), nil, true) // housekept
	w.instance(processes.Instance{Process: "returns", Version: 2, CorrelationID: "c/4%", State: "open", Status: "running",
		Vars: map[string]any{}, Started: now.Add(-10 * time.Minute), Updated: now.Add(-5 * time.Minute)}, true)
	// An early event for c-5 (b/<cid>/<process>/<offset>), none started it.
	bkey := binary.BigEndian.AppendUint64([]byte("b/c-5/"+saga+"/"), 7)
	if k, err := processes.ParseKey(bkey); err != nil || k.Kind != "buffer" || k.CorrelationID != "c-5" {
		t.Fatalf("buffer key %q: %+v %v", bkey, k, err)
	}
	w.put("c-5", bkey, []byte("early"), true)

	t.Run("show text", func(t *testing.T) {
		code, out, errOut := runMain(t, "process", "show", "c-1")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		off := w.offsets[string(processes.InstanceKey("c-1", saga))]
		for _, s := range []string{"order-fulfilment@1", "state    shipped", "status   completed", "total    = 19.99", "fee      = 0.1",
			`order_id = "c-1"`, "qty      = 3", "timers: none pending", "VoidPayment -> commands.void-payment.v1", "{amount: 19.99}",
			"from checkout.orders.v1/2/41", "command          com.acme.ordo.commands.ShipOrder",
			w.changelog + "/" + itoa(int(ops.PartitionOf("c-1", 3))) + "@" + itoa(int(off[1])), "1 earlier version(s) still in the changelog (--versions lists them)"} {
			if !strings.Contains(out, s) {
				t.Errorf("show lacks %q:\n%s", s, out)
			}
		}
		if strings.Contains(out, "cancelled") {
			t.Errorf("show prints the aborted version:\n%s", out)
		}
	})

	t.Run("show json versions", func(t *testing.T) {
		code, out, errOut := runMain(t, "process", "show", "c-1", "--versions", "--process", saga, "-o", "json")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var res struct {
			Partition int32 `json:"partition"`
			Instances []struct {
				Status string         `json:"status"`
				Vars   map[string]any `json:"vars"`
				Origin struct {
					Offset  int64 `json:"offset"`
					Earlier int   `json:"earlier_versions"`
				} `json:"origin"`
				Versions []struct {
					Offset int64  `json:"offset"`
					Status string `json:"status"`
				} `json:"versions"`
			} `json:"instances"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		off := w.offsets[string(processes.InstanceKey("c-1", saga))]
		if len(res.Instances) != 1 || res.Partition != ops.PartitionOf("c-1", 3) {
			t.Fatalf("%s", out)
		}
		in := res.Instances[0]
		if in.Status != "completed" || in.Vars["total"] != "19.99" || in.Vars["fee"] != "0.1" || in.Origin.Offset != off[1] || in.Origin.Earlier != 1 {
			t.Errorf("instance %+v (committed at %v)", in, off)
		}
		if len(in.Versions) != 2 || in.Versions[0].Offset != off[0] || in.Versions[0].Status != "running" || in.Versions[1].Status != "completed" {
			t.Errorf("versions %+v, want the two committed ones at %v", in.Versions, off)
		}
	})

	t.Run("show missing", func(t *testing.T) {
		code, out, errOut := runMain(t, "process", "show", "c-3")
		if code != 1 || !strings.Contains(errOut, `no instance for correlation id "c-3"`) || !strings.Contains(errOut, "1 removed") || !strings.Contains(out, "removed at") {
			t.Errorf("tombstoned: exit %d\n%s\n%s", code, out, errOut)
		}
		code, _, errOut = runMain(t, "process", "show", "c-5")
		if code != 1 || !strings.Contains(errOut, "events for it are buffered: 1 early events waiting") {
			t.Errorf("buffered: exit %d %s", code, errOut)
		}
		code, _, errOut = runMain(t, "process", "show", "c-1", "--process", "returns")
		if code != 1 || !strings.Contains(errOut, "no instance of process returns") {
			t.Errorf("--process: exit %d %s", code, errOut)
		}
		code, _, errOut = runMain(t, "process", "show", "c/4%")
		if code != 0 {
			t.Errorf("escaped id: exit %d %s", code, errOut)
		}
	})

	t.Run("list", func(t *testing.T) {
		code, out, errOut := runMain(t, "process", "list")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		lines := strings.Split(out, "\n")
		if !strings.HasPrefix(lines[1], "c-2 ") || !strings.HasPrefix(lines[2], "c-1 ") || !strings.HasPrefix(lines[3], "c/4% ") {
			t.Errorf("not oldest first:\n%s", out)
		}
		for _, s := range []string{"order-fulfilment@1", "returns@2", "shipped", "completed", "command com.acme.ordo.commands.ShipOrder",
			"3 instance(s) match of 3", "order-fulfilment@1  completed  1", "order-fulfilment@1  running    1", "returns@2           running    1"} {
			if !strings.Contains(out, s) {
				t.Errorf("list lacks %q:\n%s", s, out)
			}
		}
		if strings.Contains(out, "c-3") || strings.Contains(out, "cancelled") {
			t.Errorf("list shows a removed instance or an aborted version:\n%s", out)
		}
		list := func(args ...string) []string {
			t.Helper()
			code, out, errOut := runMain(t, append([]string{"process", "list", "-o", "json"}, args...)...)
			if code != 0 {
				t.Fatalf("%v: exit %d %s", args, code, errOut)
			}
			var res struct {
				Instances []struct {
					CorrelationID string `json:"correlation_id"`
				} `json:"instances"`
			}
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			var ids []string
			for _, e := range res.Instances {
				ids = append(ids, e.CorrelationID)
			}
			return ids
		}
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"--status", "running"}, "c-2 c/4%"},
			{[]string{"--status", "running", "--older-than", "1h"}, "c-2"},
			{[]string{"--newer-than", "1h"}, "c/4%"},
			{[]string{"--older-than", "90m", "--newer-than", "150m"}, "c-1"},
			{[]string{"--process", "returns"}, "c/4%"},
			{[]string{"--state", "shipped"}, "c-1"},
			{[]string{"--limit", "1"}, "c-2"},
			{[]string{"--process", "nothing"}, ""},
		} {
			if got := strings.Join(list(c.args...), " "); got != c.want {
				t.Errorf("list %v: %q, want %q", c.args, got, c.want)
			}
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"process", "list", "--older-than", "2h", "--newer-than", "1h"}, "select nothing"},
			{[]string{"process", "list", "-o", "yaml"}, `--output "yaml": use text or json`},
			{[]string{"process", "show"}, "give one correlation id"},
			{[]string{"process", "list", "-c", "examples/orders/router.yaml"}, "has no state: block"},
			{[]string{"process", "list", "--changelog", "no-such-changelog"}, `changelog "no-such-changelog" does not exist on the cluster`},
		} {
			code, _, errOut := runMain(t, c.args...)
			if code != 1 || !strings.Contains(errOut, c.want) {
				t.Errorf("%v: exit %d, stderr %q, want %q", c.args, code, errOut, c.want)
			}
		}
	})
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }

// TestProcessHelpShowsExamples: both commands document themselves with a
// runnable example, and the root help lists them.
func TestProcessHelpShowsExamples(t *testing.T) {
	for _, c := range []string{"show", "list"} {
		code, out, errOut := runMain(t, "process", c, "--help")
		if code != 0 || !strings.Contains(out, "Examples:") || !strings.Contains(out, "ordo process "+c+" -c ordo.yaml") {
			t.Errorf("process %s --help: exit %d %s\n%s", c, code, errOut, out)
		}
	}
	if code, out, _ := runMain(t, "--help"); code != 0 || !strings.Contains(out, "process ") {
		t.Errorf("root help does not list process:\n%s", out)
	}
}
