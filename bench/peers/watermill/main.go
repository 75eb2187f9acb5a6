// Command watermill-peer is benchmark contender (d): what a Go team might
// build instead of ordo with Watermill and watermill-kafka (IBM Sarama). It
// does the same work as examples/orders/ordo.yaml: decode the Confluent-
// framed Avro event (goavro, writer schema fetched by id from the registry),
// check the two order rules, look the customer tier up in the CSV table,
// route to the command topics and encode the commands with goavro and
// registered schema ids. Delivery is at-least-once: the subscriber marks an
// offset after the handler acked the message and Sarama auto-commits marked
// offsets every 100 ms; the publisher is Watermill's sync publisher.
//
// Environment: BENCH_BROKERS, BENCH_GROUP, BENCH_INPUTS, BENCH_REGISTRY,
// BENCH_SCHEMA_DIR (examples/orders/schemas), BENCH_TIERS (customer-tiers.csv).
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/linkedin/goavro/v2"
)

const deadLetterTopic = "ordo.dead-letter.v1"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "watermill-peer:", err)
		os.Exit(1)
	}
}

// registry is a tiny Confluent registry client with a codec cache by id.
type registry struct {
	url string
	hc  *http.Client
	mu  sync.RWMutex
	ids map[int]*writer
}

type writer struct {
	codec    *goavro.Codec
	fullName string
}

func (r *registry) byID(id int) (*writer, error) {
	r.mu.RLock()
	w := r.ids[id]
	r.mu.RUnlock()
	if w != nil {
		return w, nil
	}
	resp, err := r.hc.Get(fmt.Sprintf("%s/schemas/ids/%d", r.url, id))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("schema id %d: %s", id, resp.Status)
	}
	var body struct {
		Schema string `json:"schema"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	codec, err := goavro.NewCodec(body.Schema)
	if err != nil {
		return nil, err
	}
	var head struct{ Name, Namespace string }
	_ = json.Unmarshal([]byte(body.Schema), &head)
	w = &writer{codec: codec, fullName: head.Namespace + "." + head.Name}
	r.mu.Lock()
	r.ids[id] = w
	r.mu.Unlock()
	return w, nil
}

func (r *registry) register(subject, schema string) (int, error) {
	b, _ := json.Marshal(map[string]string{"schema": schema})
	resp, err := r.hc.Post(fmt.Sprintf("%s/subjects/%s/versions", r.url, subject), "application/vnd.schemaregistry.v1+json", bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		msg, _ := io.ReadAll(resp.Body)
		return 0, fmt.Errorf("register %s: %s %s", subject, resp.Status, msg)
	}
	var out struct {
		ID int `json:"id"`
	}
	return out.ID, json.NewDecoder(resp.Body).Decode(&out)
}

// command is one output: codec + registered id per command type and topic.
type cmdType struct {
	codec *goavro.Codec
	id    int
}

type emit struct {
	topic, typ string
	fields     func(ev map[string]any, tier string) map[string]any
}

func str(v any) string { s, _ := v.(string); return s }

func unionStr(v any) any {
	if m, ok := v.(map[string]any); ok {
		return m["string"]
	}
	return v
}

// routes mirror examples/orders/ordo.yaml.
var routes = map[string][]emit{
	"com.acme.checkout.OrderPlaced": {
		{"commands.reserve-inventory.v1", "com.acme.ordo.commands.ReserveInventory", func(ev map[string]any, tier string) map[string]any {
			items := ev["items"].([]any)
			out := make([]any, len(items))
			for i, it := range items {
				m := it.(map[string]any)
				out[i] = map[string]any{"sku": m["sku"], "qty": m["qty"]}
			}
			prio := "standard"
			if tier == "gold" {
				prio = "express"
			}
			return map[string]any{"order_id": ev["order_id"], "items": out, "priority": prio}
		}},
		{"commands.notify-customer.v1", "com.acme.ordo.commands.NotifyCustomer", func(ev map[string]any, _ string) map[string]any {
			var detail any
			if s := unionStr(ev["note"]); s != nil {
				detail = goavro.Union("string", s)
			}
			return map[string]any{"order_id": ev["order_id"], "template": "order_received", "detail": detail}
		}},
	},
	"com.acme.payments.PaymentAuthorized": {
		{"commands.capture-payment.v1", "com.acme.ordo.commands.CapturePayment", func(ev map[string]any, _ string) map[string]any {
			return map[string]any{"order_id": ev["order_id"], "payment_id": ev["payment_id"], "amount": ev["amount"], "currency": ev["currency"]}
		}},
	},
	"com.acme.payments.PaymentDeclined": {
		{"commands.cancel-order.v1", "com.acme.ordo.commands.CancelOrder", func(ev map[string]any, _ string) map[string]any {
			return map[string]any{"order_id": ev["order_id"], "reason": "payment declined: " + str(ev["reason"])}
		}},
		{"commands.notify-customer.v1", "com.acme.ordo.commands.NotifyCustomer", func(ev map[string]any, _ string) map[string]any {
			return map[string]any{"order_id": ev["order_id"], "template": "payment_declined", "detail": goavro.Union("string", ev["reason"])}
		}},
	},
	"com.acme.warehouse.InventoryReserved": {
		{"commands.ship-order.v1", "com.acme.ordo.commands.ShipOrder", func(ev map[string]any, _ string) map[string]any {
			return map[string]any{"order_id": ev["order_id"], "reservation_id": ev["reservation_id"], "warehouse": ev["warehouse"]}
		}},
	},
	"com.acme.warehouse.InventoryShortage": {
		{"commands.cancel-order.v1", "com.acme.ordo.commands.CancelOrder", func(ev map[string]any, _ string) map[string]any {
			n := len(ev["missing_skus"].([]any))
			return map[string]any{"order_id": ev["order_id"], "reason": "out of stock: " + strconv.Itoa(n) + " SKU(s) missing"}
		}},
		{"commands.notify-customer.v1", "com.acme.ordo.commands.NotifyCustomer", func(ev map[string]any, _ string) map[string]any {
			return map[string]any{"order_id": ev["order_id"], "template": "out_of_stock", "detail": nil}
		}},
	},
}

// validate applies the two order rules of the demo config.
func validate(typ string, ev map[string]any) error {
	if typ != "com.acme.checkout.OrderPlaced" {
		return nil
	}
	total, _ := ev["total"].(*big.Rat)
	items, _ := ev["items"].([]any)
	if total == nil || total.Sign() <= 0 || len(items) == 0 {
		return errors.New("positive_total: an order needs a positive total and at least one item")
	}
	for _, it := range items {
		if q, _ := it.(map[string]any)["qty"].(int32); q <= 0 {
			return errors.New("positive_quantities: every line item needs a positive quantity")
		}
	}
	return nil
}

func commandID(eventID string, ri, ei int) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("watermill\x00%s\x00%d\x00%d", eventID, ri, ei)))
	return hex.EncodeToString(h[:16])
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	brokers := strings.Split(os.Getenv("BENCH_BROKERS"), ",")
	reg := &registry{url: os.Getenv("BENCH_REGISTRY"), hc: &http.Client{Timeout: 5 * time.Second}, ids: map[int]*writer{}}

	// Tier table.
	tiers := map[string]string{}
	f, err := os.Open(os.Getenv("BENCH_TIERS"))
	if err != nil {
		return err
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		return err
	}
	for _, r := range rows[1:] {
		tiers[r[0]] = r[1]
	}

	// Command codecs and ids (registered under <topic>-value).
	cmds := map[[2]string]cmdType{}
	for _, es := range routes {
		for _, e := range es {
			k := [2]string{e.topic, e.typ}
			if _, ok := cmds[k]; ok {
				continue
			}
			text, err := os.ReadFile(filepath.Join(os.Getenv("BENCH_SCHEMA_DIR"), e.typ+".avsc"))
			if err != nil {
				return err
			}
			codec, err := goavro.NewCodec(string(text))
			if err != nil {
				return err
			}
			id, err := reg.register(e.topic+"-value", string(text))
			if err != nil {
				return err
			}
			cmds[k] = cmdType{codec: codec, id: id}
		}
	}

	logger := watermill.NopLogger{}
	subCfg := kafka.DefaultSaramaSubscriberConfig()
	subCfg.Version = sarama.V3_0_0_0
	subCfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	subCfg.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond
	sub, err := kafka.NewSubscriber(kafka.SubscriberConfig{
		Brokers: brokers, Unmarshaler: kafka.DefaultMarshaler{}, OverwriteSaramaConfig: subCfg,
		ConsumerGroup: os.Getenv("BENCH_GROUP"),
	}, logger)
	if err != nil {
		return err
	}
	pubCfg := kafka.DefaultSaramaSyncPublisherConfig()
	pubCfg.Version = sarama.V3_0_0_0
	pub, err := kafka.NewPublisher(kafka.PublisherConfig{
		Brokers: brokers, OverwriteSaramaConfig: pubCfg,
		Marshaler: kafka.NewWithPartitioningMarshaler(func(_ string, m *message.Message) (string, error) { return m.Metadata.Get("key"), nil }),
	}, logger)
	if err != nil {
		return err
	}
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	if err != nil {
		return err
	}
	handle := func(msg *message.Message) error {
		v := msg.Payload
		if len(v) < 5 || v[0] != 0 {
			return pub.Publish(deadLetterTopic, msg)
		}
		w, err := reg.byID(int(binary.BigEndian.Uint32(v[1:5])))
		if err != nil {
			return err // transient: nack, redelivered
		}
		native, _, err := w.codec.NativeFromBinary(v[5:])
		if err != nil {
			return pub.Publish(deadLetterTopic, msg)
		}
		ev := native.(map[string]any)
		if err := validate(w.fullName, ev); err != nil {
			dl := msg.Copy()
			dl.Metadata.Set("ordo-dlq-error", err.Error())
			return pub.Publish(deadLetterTopic, dl)
		}
		tier := "standard"
		if w.fullName == "com.acme.checkout.OrderPlaced" {
			if t, ok := tiers[str(ev["customer_id"])]; ok {
				tier = t
			}
		}
		env := ev["envelope"].(map[string]any)
		eventID, corr := str(env["id"]), str(env["correlation_id"])
		for ei, e := range routes[w.fullName] {
			val := e.fields(ev, tier)
			val["envelope"] = map[string]any{
				"id": commandID(eventID, 0, ei), "type": e.typ, "source": "watermill", "time": env["time"],
				"correlation_id": corr, "causation_id": goavro.Union("string", eventID),
			}
			ct := cmds[[2]string{e.topic, e.typ}]
			buf := make([]byte, 5, 256)
			binary.BigEndian.PutUint32(buf[1:], uint32(ct.id))
			buf, err := ct.codec.BinaryFromNative(buf, val)
			if err != nil {
				dl := msg.Copy()
				dl.Metadata.Set("ordo-dlq-error", err.Error())
				return pub.Publish(deadLetterTopic, dl)
			}
			out := message.NewMessage(watermill.NewUUID(), buf)
			out.Metadata.Set("key", corr)
			out.Metadata.Set("ordo-causation-id", eventID)
			out.Metadata.Set("ordo-type", e.typ)
			if err := pub.Publish(e.topic, out); err != nil {
				return err
			}
		}
		return nil
	}
	for _, t := range strings.Split(os.Getenv("BENCH_INPUTS"), ",") {
		router.AddConsumerHandler("orders-"+t, t, sub, handle)
	}
	err = router.Run(ctx)
	_ = pub.Close()
	return err
}
