// Package foreign drives Kafka clients nobody on the ordo team wrote: Python
// confluent-kafka with the schema-registry AvroSerializer and Node kafkajs with
// @confluentinc/schemaregistry. Its test proves that their OrderPlaced events
// decode in ordo to the right values (one of them writes a newer schema
// version, so reader/writer resolution is exercised across languages), that
// ordo routes each of them to its commands exactly once, and that a foreign
// consumer can read ordo's commands.
//
// Other suites use it through Produce, Ready and Expected:
//
//	if ok, why := foreign.Ready("python"); !ok { t.Skip(why) }
//	err := foreign.Produce(ctx, "python", brokers, registryURL, topic, 1000, "p1")
//	want := foreign.Expected("p1", 7) // what ordo should decode for seq 7
//
// The clients are installed by test/foreign/setup.sh into
// ${ORDO_CACHE_DIR:-$HOME/.cache/ordo}/foreign from the lock files here.
package foreign

import (
	"bytes"
	"context"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Languages are the foreign producers produce.sh knows.
var Languages = []string{"python", "node"}

// Dir is this directory (test/foreign) in the source tree.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// CacheDir is where setup.sh installs the clients.
func CacheDir() string {
	base := os.Getenv("ORDO_CACHE_DIR")
	if base == "" {
		home, _ := os.UserHomeDir()
		base = filepath.Join(home, ".cache", "ordo")
	}
	return filepath.Join(base, "foreign")
}

// Ready says whether setup.sh has installed lang's client, and if not why.
func Ready(lang string) (bool, string) {
	var need string
	switch lang {
	case "python":
		need = filepath.Join(CacheDir(), "venv", "bin", "python")
	case "node":
		need = filepath.Join(CacheDir(), "node", "node_modules", "kafkajs", "package.json")
		if _, err := exec.LookPath("node"); err != nil {
			return false, "node is not on PATH (run test/foreign/setup.sh)"
		}
	default:
		return false, fmt.Sprintf("unknown foreign language %q", lang)
	}
	if _, err := os.Stat(need); err != nil {
		return false, fmt.Sprintf("%s client not installed: %s is missing (run test/foreign/setup.sh)", lang, need)
	}
	// setup.sh writes the stamp last, after a complete install.
	stamp := filepath.Join(CacheDir(), map[string]string{"python": "venv", "node": "node"}[lang], ".ordo-lock")
	if _, err := os.Stat(stamp); err != nil {
		return false, fmt.Sprintf("%s client install is incomplete: %s is missing (run test/foreign/setup.sh)", lang, stamp)
	}
	return true, ""
}

// Produce runs test/foreign/produce.sh lang and checks it printed
// "produced <count>". Its output is returned in the error when it fails.
func Produce(ctx context.Context, lang string, brokers []string, registry, topic string, count int, prefix string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(Dir(), "produce.sh"), lang,
		"--brokers", strings.Join(brokers, ","), "--registry", registry,
		"--topic", topic, "--count", fmt.Sprint(count), "--prefix", prefix)
	cmd.Env = append(os.Environ(), "KAFKAJS_NO_PARTITIONER_WARNING=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("produce.sh %s: %w\nstdout: %s\nstderr: %s", lang, err, out.String(), errb.String())
	}
	if got, want := strings.TrimSpace(out.String()), fmt.Sprintf("produced %d", count); got != want {
		return fmt.Errorf("produce.sh %s printed %q, want %q (stderr: %s)", lang, got, want, errb.String())
	}
	return nil
}

// BaseTime is envelope.time of seq 0; seq n is BaseTime + n ms.
var BaseTime = time.UnixMilli(1767225600000).UTC() // 2026-01-01T00:00:00Z

// Source is envelope.source of lang's events.
func Source(lang string) string { return "foreign-" + lang }

// OrderID is the order id (= key = correlation id) of event seq.
func OrderID(prefix string, seq int) string { return fmt.Sprintf("%s-ord-%d", prefix, seq%50) }

// EventID is envelope.id of event seq.
func EventID(prefix string, seq int) string { return fmt.Sprintf("%s-%d", prefix, seq) }

func cents(n int64) *big.Rat { return big.NewRat(n, 100) }

// Expected is OrderPlaced seq as ordo should decode it with its own reader
// schema (natural form: *big.Rat decimals, time.Time, int32, bare unions),
// except envelope.source, which is Source(lang). It mirrors event() in
// python/produce.py and node/produce.js; the node producer's extra v2 fields
// (channel, referrer) are absent because ordo's reader schema drops them.
func Expected(prefix string, seq int, lang string) map[string]any {
	order := OrderID(prefix, seq)
	var items []any
	var total int64
	if seq%10 == 9 {
		items = []any{map[string]any{"sku": fmt.Sprintf("SKU-%d", seq%5), "qty": int32(1), "unit_price": cents(999999999999)}}
		total = 999999999999
	} else {
		qty, unit := int64(1+seq%3), int64(1999+37*seq)
		items = []any{
			map[string]any{"sku": fmt.Sprintf("SKU-%d", seq%5), "qty": int32(qty), "unit_price": cents(unit)},
			map[string]any{"sku": "SKU-GIFT", "qty": int32(1), "unit_price": cents(128)},
		}
		total = qty*unit + 128
	}
	var note any
	if seq%2 == 1 {
		note = fmt.Sprintf("gift %d: ünïcødé ✓", seq)
	}
	return map[string]any{
		"envelope": map[string]any{
			"id":             EventID(prefix, seq),
			"type":           "com.acme.checkout.OrderPlaced",
			"source":         Source(lang),
			"time":           BaseTime.Add(time.Duration(seq) * time.Millisecond),
			"correlation_id": order,
			"causation_id":   nil,
		},
		"order_id":         order,
		"customer_id":      fmt.Sprintf("cust-%d", seq%13),
		"total":            cents(total),
		"currency":         []string{"EUR", "USD", "GBP"}[seq%3],
		"items":            items,
		"shipping_country": []string{"DE", "US", "GB"}[seq%3],
		"note":             note,
	}
}

// Canonical renders a natural value as a deterministic string: maps with
// sorted keys, decimals exactly ("1.28", or a fraction if not finite),
// times as RFC 3339 with milliseconds in UTC, and Go types named, so two
// values are equal exactly when their renderings are.
func Canonical(v any) string {
	var b strings.Builder
	canon(&b, v)
	return b.String()
}

func canon(b *strings.Builder, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.WriteString("{")
		for i, k := range keys {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(b, "%q:", k)
			canon(b, x[k])
		}
		b.WriteString("}")
	case []any:
		b.WriteString("[")
		for i, e := range x {
			if i > 0 {
				b.WriteString(",")
			}
			canon(b, e)
		}
		b.WriteString("]")
	case *big.Rat:
		b.WriteString("decimal(" + decimalString(x) + ")")
	case time.Time:
		fmt.Fprintf(b, "time(%s)", x.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	case string:
		fmt.Fprintf(b, "%q", x)
	default:
		fmt.Fprintf(b, "%T(%v)", x, x)
	}
}

// decimalString is r in decimal notation with the fewest digits that are
// exact (up to 18), else as a fraction.
func decimalString(r *big.Rat) string {
	for scale := 0; scale <= 18; scale++ {
		s := r.FloatString(scale)
		if back, ok := new(big.Rat).SetString(s); ok && back.Cmp(r) == 0 {
			return s
		}
	}
	return r.RatString()
}
