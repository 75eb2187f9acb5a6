package settle_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/internal/settle"
	"github.com/ordo-dev/ordo/internal/testkit"
)

// An open transaction keeps Wait waiting (and its error names the
// partition); once it ends, Wait returns the high watermarks, marker
// included.
func TestWaitWaitsForOpenTransactions(t *testing.T) {
	brokers := testkit.Brokers(t)
	topic := testkit.UniqueName(t, "settle")
	testkit.CreateTopics(t, brokers, 2, topic)
	adm := testkit.NewAdmin(t, brokers)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID(testkit.UniqueName(t, "tx")), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Partition: 0, Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	_, err = settle.Wait(ctx, adm, 2*time.Second, topic)
	if err == nil || !strings.Contains(err.Error(), topic+"/0") {
		t.Fatalf("Wait with a transaction open on %s/0: %v, want an error naming it", topic, err)
	}

	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	ends, err := settle.Wait(ctx, adm, 30*time.Second, topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := ends.Lookup(topic, 0); !ok || o.Offset != 2 { // the record and its commit marker
		t.Errorf("end of %s/0 = %+v, want 2", topic, o)
	}
}
