package ops_test

import (
	"bytes"
	"context"
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

// TestProcessShowAndList writes a changelog the way the stateful stage
// does (transactions, several versions of a key, a tombstone, an aborted
// transaction) and checks what show and list read back: only committed
// values, the newest version, exact decimals, the right partition.
func TestProcessShowAndList(t *testing.T) {
	brokers := testkit.Brokers(t)
	changelog := testkit.UniqueName(t, "changelog")
	processLog := testkit.UniqueName(t, "process-log")
	testkit.CreateTopicsWithConfig(t, brokers, 4, map[string]*string{"cleanup.policy": ptr("compact")}, changelog)
	testkit.CreateTopics(t, brokers, 4, processLog)

	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	inst := func(cid, state, status string, updated time.Time) []byte {
		in := &processes.Instance{Process: "order-fulfilment", Version: 1, CorrelationID: cid, State: state, Status: status,
			Vars:    map[string]any{"total": big.NewRat(13950, 100), "order_id": cid},
			Started: t0, Updated: updated,
			History: []processes.HistoryEntry{{At: t0, Kind: "event", Type: "com.acme.checkout.OrderPlaced", ID: "evt-" + cid, Source: "checkout.orders.v1/0/7"}}}
		b, err := processes.EncodeInstance(in)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rec := func(cid string, v []byte) *kgo.Record {
		return &kgo.Record{Topic: changelog, Partition: ops.PartitionOf(cid, 4), Key: processes.InstanceKey(cid, "order-fulfilment"), Value: v}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID(testkit.UniqueName(t, "txn")), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	txn := func(commit bool, rs ...*kgo.Record) {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	txn(true, rec("ord-1", inst("ord-1", "awaiting_payment_and_stock", "running", t0)), rec("ord-2", inst("ord-2", "awaiting_payment_and_stock", "running", t0)),
		rec("ord-3", inst("ord-3", "awaiting_payment_and_stock", "running", t0)))
	txn(true, rec("ord-1", inst("ord-1", "shipped", "completed", t0.Add(time.Minute))))
	txn(false, rec("ord-2", inst("ord-2", "cancelled", "cancelled", t0.Add(2*time.Minute)))) // aborted: never shown
	txn(true, rec("ord-3", nil))                                                             // tombstone: gone

	q := ops.ProcessQuery{Changelog: changelog, ProcessLog: processLog, CorrelationID: "ord-1", Versions: true, Now: t0.Add(time.Hour)}
	conn := []kgo.Opt{kgo.SeedBrokers(brokers...)}
	res, err := ops.ReadProcesses(ctx, conn, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Instances) != 1 || len(res.Partitions) != 1 || res.Partitions[0] != ops.PartitionOf("ord-1", 4) {
		t.Fatalf("show ord-1: %d instances from partitions %v", len(res.Instances), res.Partitions)
	}
	in := res.Instances[0]
	if in.State != "shipped" || in.VersionCount != 2 || len(in.Versions) != 2 || in.Versions[0].State != "awaiting_payment_and_stock" {
		t.Errorf("show ord-1: state %s, %d versions %+v; want shipped with 2 versions", in.State, in.VersionCount, in.Versions)
	}
	var text bytes.Buffer
	ops.WriteProcessShow(&text, res, q)
	for _, want := range []string{"order-fulfilment@1  ord-1", "shipped (completed)", `total = "139.5"`, "from checkout.orders.v1/0/7", "2 committed version(s)"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("show text lacks %q:\n%s", want, text.String())
		}
	}
	js, _ := json.Marshal(res)
	if !strings.Contains(string(js), `"total":"139.5"`) {
		t.Errorf("show json: decimal not exact: %s", js)
	}

	q = ops.ProcessQuery{Changelog: changelog, ProcessLog: processLog, Now: t0.Add(time.Hour)}
	res, err = ops.ReadProcesses(ctx, conn, q)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, in := range res.Instances {
		got[in.CorrelationID] = in.State
	}
	if len(got) != 2 || got["ord-1"] != "shipped" || got["ord-2"] != "awaiting_payment_and_stock" {
		t.Errorf("list: %v; want ord-1 shipped, ord-2 still awaiting (its cancel aborted), ord-3 tombstoned", got)
	}
	q.Status = "running"
	res, _ = ops.ReadProcesses(ctx, conn, q)
	if len(res.Instances) != 1 || res.Instances[0].CorrelationID != "ord-2" {
		t.Errorf("list --status running: %+v", res.Instances)
	}
	q.Status, q.NewerThan = "", 30*time.Minute // every update is an hour old
	res, _ = ops.ReadProcesses(ctx, conn, q)
	if len(res.Instances) != 0 {
		t.Errorf("list --newer-than 30m: %d instances, want 0", len(res.Instances))
	}
	q.CorrelationID, q.NewerThan = "ord-404", 0
	res, _ = ops.ReadProcesses(ctx, conn, q)
	text.Reset()
	ops.WriteProcessShow(&text, res, q)
	if len(res.Instances) != 0 || !strings.Contains(text.String(), `no instance of correlation id "ord-404"`) {
		t.Errorf("show of an unknown id: %s", text.String())
	}
}

func ptr[T any](v T) *T { return &v }
