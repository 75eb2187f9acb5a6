package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/ordo-dev/ordo/examples/orders"
	"github.com/ordo-dev/ordo/internal/devenv"
	"github.com/ordo-dev/ordo/schemas"
)

// envelopeField is the envelope every ordo event and command carries, as
// the example's schemas define it (each .avsc file is self-contained).
const envelopeField = `{"name": "envelope", "type": {"type": "record", "name": "Envelope", "namespace": "com.acme.common", "fields": [
    {"name": "id", "type": "string"},
    {"name": "type", "type": "string"},
    {"name": "source", "type": "string"},
    {"name": "time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "correlation_id", "type": "string"},
    {"name": "causation_id", "type": ["null", "string"], "default": null}]}}`

const decimalType = `{"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}`

// A new input event type and a new command type, unknown to the binary.
var (
	returnRequestedAvsc = `{
  "type": "record", "name": "ReturnRequested", "namespace": "com.acme.returns",
  "doc": "A customer asked to return an order (team returns, topic returns.v1).",
  "fields": [
    ` + envelopeField + `,
    {"name": "order_id", "type": "string"},
    {"name": "return_id", "type": "string"},
    {"name": "amount", "type": ` + decimalType + `},
    {"name": "currency", "type": "string"},
    {"name": "reason", "type": "string"}
  ]
}
`
	refundPaymentAvsc = `{
  "type": "record", "name": "RefundPayment", "namespace": "com.acme.ordo.commands",
  "doc": "Ask payments to refund a returned order.",
  "fields": [
    ` + envelopeField + `,
    {"name": "order_id", "type": "string"},
    {"name": "return_id", "type": "string"},
    {"name": "amount", "type": ` + decimalType + `},
    {"name": "currency", "type": "string"}
  ]
}
`
)

const (
	returnsTopic = "returns.v1"
	refundTopic  = "commands.refund-payment.v1"
	returnAvsc   = "schemas/com.acme.returns.ReturnRequested.avsc"
	refundAvsc   = "schemas/com.acme.ordo.commands.RefundPayment.avsc"
)

// copyExample writes the example (ordo.yaml, customer-tiers.csv,
// schemas/*.avsc), as embedded in the binary, into dir.
func copyExample(t *testing.T, dir string) {
	t.Helper()
	if err := os.CopyFS(dir, orders.Files()); err != nil {
		t.Fatal(err)
	}
	// These tests edit the stateless router's routes.
	if err := os.Rename(filepath.Join(dir, "router.yaml"), filepath.Join(dir, "ordo.yaml")); err != nil {
		t.Fatal(err)
	}
}

// edit replaces old by new in the file, once; the test fails if old is not
// there (the example changed: update the test).
func edit(t *testing.T, file, old, new string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s has no %q; update the test's edits", file, old)
	}
	if err := os.WriteFile(file, bytes.Replace(b, []byte(old), []byte(new), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeText(t *testing.T, file, text string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// extendedExample is what a user does to add an event type and a command:
// the example plus two .avsc files and a few YAML lines (an input topic,
// two topics to create, one orchestrate route). It returns the config path.
func extendedExample(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	copyExample(t, dir)
	writeText(t, filepath.Join(dir, returnAvsc), returnRequestedAvsc)
	writeText(t, filepath.Join(dir, refundAvsc), refundPaymentAvsc)
	cfg := filepath.Join(dir, "ordo.yaml")
	edit(t, cfg, "inputs: [checkout.orders.v1, payments.v1, warehouse.v1]", "inputs: [checkout.orders.v1, payments.v1, warehouse.v1, "+returnsTopic+"]")
	edit(t, cfg, "  ordo.dead-letter.v1: {partitions: 3}\n", "  ordo.dead-letter.v1: {partitions: 3}\n  "+returnsTopic+": {partitions: 2}\n  "+refundTopic+": {partitions: 2}\n")
	edit(t, cfg, `                template: '"out_of_stock"'`+"\n", `                template: '"out_of_stock"'
        - on: com.acme.returns.ReturnRequested
          emit:
            - type: com.acme.ordo.commands.RefundPayment
              topic: `+refundTopic+`
              fields:
                order_id: event.order_id
                return_id: event.return_id
                amount: event.amount
                currency: event.currency
`)
	return cfg
}

// lineOf is the 1-based line of the first line of file containing s.
func lineOf(t *testing.T, file, s string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%s has no %q", file, s)
	return 0
}

// TestSchemasFilesNewTypes: a new event type and command are an .avsc file
// each plus YAML; the checks know them, and without the command's schema the
// route is an error that points at the schemas block.
func TestSchemasFilesNewTypes(t *testing.T) {
	cfg := extendedExample(t)
	code, out, errOut := runMain(t, "config", "validate", cfg)
	if code != 0 || !strings.Contains(out, ": ok (4 inputs, 3 processors, 14 schemas") {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}

	// A field the new command does not have is caught against its schema.
	edit(t, cfg, "                return_id: event.return_id\n", "                return_id: event.return_id\n                refund_id: event.return_id\n")
	code, _, errOut = runMain(t, "config", "validate", cfg)
	want := fmt.Sprintf(`%s:%d: pipeline[2].config.routes[5].emit[0].fields.refund_id: com.acme.ordo.commands.RefundPayment has no field "refund_id"`,
		cfg, lineOf(t, cfg, "refund_id:"))
	if code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("exit %d, want %q in:\n%s", code, want, errOut)
	}
	edit(t, cfg, "                refund_id: event.return_id\n", "")

	if err := os.Remove(filepath.Join(filepath.Dir(cfg), refundAvsc)); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runMain(t, "config", "validate", cfg)
	want = fmt.Sprintf(`ordo: %s:%d: pipeline[2].config.routes[5].emit[0].type: unknown command type "com.acme.ordo.commands.RefundPayment" (fix: use the full Avro name (namespace.Name) of a command type, and give ordo its schema: an .avsc file in schemas.files`,
		cfg, lineOf(t, cfg, "type: com.acme.ordo.commands.RefundPayment"))
	if code != 1 || !strings.HasPrefix(errOut, want) {
		t.Fatalf("exit %d, want %q, got:\n%s", code, want, errOut)
	}
}

// TestSchemasConfigErrors: every problem of the schemas block is reported
// with the config's file:line, the key of the list entry, what is wrong
// (the .avsc file and its line for JSON errors) and a fix, next to the
// config's other errors.
func TestSchemasConfigErrors(t *testing.T) {
	cfg := extendedExample(t)
	dir := filepath.Dir(cfg)
	writeText(t, filepath.Join(dir, "schemas", "broken.avsc"), "{\n  \"type\": \"record\"\n  \"name\": \"X\"\n}\n")
	writeText(t, filepath.Join(dir, "extra.avsc"), strings.Replace(refundPaymentAvsc, `"currency", "type": "string"}`, `"currency", "type": "string"}, {"name": "note", "type": "string"}`, 1))
	edit(t, cfg, "  files: [schemas/]", "  files:\n    - schemas/\n    - extra.avsc\n    - returns/\n    - schemas/")
	edit(t, cfg, "  group: ordo-orders", "  group: ordo-orders\n  grup: typo")
	code, _, errOut := runMain(t, "config", "validate", cfg)
	line := func(s string) string { return fmt.Sprintf("%s:%d: ", cfg, lineOf(t, cfg, s)) }
	want := []string{
		"ordo: 5 config errors:",
		"  " + line("grup: typo") + `kafka.grup: unknown key (fix: did you mean "group"?`,
		"  " + line("- schemas/") + "schemas.files[0]: " + filepath.Join("schemas", "broken.avsc") + ":3:3: schema JSON: invalid character '\"' after object key:value pair (fix: correct the schema (Avro specification:",
		"  " + line("- extra.avsc") + "schemas.files[1]: extra.avsc declares com.acme.ordo.commands.RefundPayment, which " + filepath.Join("schemas", "com.acme.ordo.commands.RefundPayment.avsc") + " declares too (fix: keep one schema per type:",
		"  " + line("- returns/") + "schemas.files[2]: returns/: no such file or directory (fix: fix the path or create it; relative paths are relative to the config file's directory (" + dir + "))",
		"  " + fmt.Sprintf("%s:%d: ", cfg, lineOf(t, cfg, "- returns/")+1) + `schemas.files[3]: "schemas/" is listed twice (also schemas.files[0]) (fix: remove one of the two entries)`,
	}
	lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
	if code != 1 || len(lines) != len(want) {
		t.Fatalf("exit %d, want %d lines:\n%s", code, len(want), errOut)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d:\n got %s\nwant %s...", i, lines[i], w)
		}
	}

	// An empty block is a mistake, not a silent fallback to the built-ins.
	cfg = extendedExample(t)
	edit(t, cfg, "schemas:\n  files: [schemas/]", "schemas: {}")
	code, _, errOut = runMain(t, "config", "validate", cfg)
	if want := line("schemas: {}") + "schemas: names no files or subjects (fix: list .avsc files"; code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("exit %d, want %q in:\n%s", code, want, errOut)
	}

	// ORDO_SCHEMAS_FILES overrides the list; its errors name the variable.
	t.Setenv("ORDO_SCHEMAS_FILES", "schemas/,nowhere/")
	code, _, errOut = runMain(t, "config", "validate", extendedExample(t))
	if want := "environment: ORDO_SCHEMAS_FILES (schemas.files[1]): nowhere/: no such file or directory"; code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("exit %d, want %q in:\n%s", code, want, errOut)
	}
}

// TestSchemasSubjects: a type known only from a registry subject
// (schemas.subjects) is published with that subject's schema; a subject
// the registry does not have is a config error at its entry; validate does
// not connect and says so.
func TestSchemasSubjects(t *testing.T) {
	kafka, reg := embedded(t)
	if err := kafka.CreateTopic(returnsTopic, 1, nil); err != nil {
		t.Fatal(err)
	}
	srcl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	subj, err := srcl.CreateSchema(ctx, returnsTopic+"-value", sr.Schema{Schema: returnRequestedAvsc})
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	copyExample(t, dir)
	cfg := filepath.Join(dir, "ordo.yaml")
	edit(t, cfg, "  files: [schemas/]", "  files: [schemas/]\n  subjects: ["+returnsTopic+"-value]")
	code, out, errOut := runMain(t, "config", "validate", cfg)
	if code != 0 || !strings.Contains(out, "12 schemas") || !strings.Contains(out, "note: the 1 registry subject(s) of schemas.subjects were not fetched") {
		t.Fatalf("validate: exit %d: %s %s", code, out, errOut)
	}

	in := strings.NewReader(`{"order_id":"o-9","return_id":"r-1","amount":"5.25","currency":"EUR","reason":"too small"}` + "\n")
	code, out, errOut = runMainStdin(t, in, "produce", "--config", cfg, "--topic", returnsTopic, "--type", "com.acme.returns.ReturnRequested", "--key-field", "order_id")
	if code != 0 || !strings.Contains(errOut, "published 1 events") {
		t.Fatalf("produce: exit %d: %s %s", code, out, errOut)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafka.ListenAddrs()...), kgo.ConsumeTopics(returnsTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := pollRecords(ctx, t, cl, 1)
	id, _, err := schemas.ParseHeader(recs[0].Value)
	if err != nil || id != subj.ID {
		t.Fatalf("published with schema id %d (err %v), want the subject's id %d", id, err, subj.ID)
	}

	edit(t, cfg, "  subjects: ["+returnsTopic+"-value]", "  subjects: ["+returnsTopic+"-value, payments.v2-value]")
	code, _, errOut = runMainStdin(t, strings.NewReader(""), "produce", "--config", cfg, "--topic", returnsTopic, "--type", "com.acme.returns.ReturnRequested")
	want := fmt.Sprintf(`ordo: %s:%d: schemas.subjects[1]: the registry has no subject "payments.v2-value"`, cfg, lineOf(t, cfg, "  subjects: ["))
	if code != 1 || !strings.HasPrefix(errOut, want) || !strings.Contains(errOut, "(fix: register the subject first, or fix its name") {
		t.Fatalf("exit %d, want %q, got:\n%s", code, want, errOut)
	}
}

func runMainStdin(t *testing.T, in io.Reader, args ...string) (int, string, string) {
	t.Helper()
	old := os.Stdin
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(w, in); w.Close() }()
	os.Stdin = r
	defer func() { os.Stdin = old; r.Close() }()
	return runMain(t, args...)
}

// pollRecords reads n records from cl or fails the test when ctx ends.
func pollRecords(ctx context.Context, t *testing.T, cl *kgo.Client, n int) []*kgo.Record {
	t.Helper()
	var out []*kgo.Record
	for len(out) < n {
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records: %v", len(out), n, ctx.Err())
		}
		fs := cl.PollFetches(ctx)
		fs.EachError(func(topic string, p int32, err error) {
			if ctx.Err() == nil {
				t.Logf("fetch %s/%d: %v", topic, p, err)
			}
		})
		out = append(out, fs.Records()...)
	}
	return out
}

// TestNewEventAndCommandWithReleasedBinary is the check: with the
// released binary (built here, unchanged), a config that adds an input
// event type and a command type (two .avsc files and YAML) runs under
// `ordo dev`; an event of the new type published with `ordo produce` comes
// out as the new command, framed with the new command schema.
func TestNewEventAndCommandWithReleasedBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the ordo binary; skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH to build the binary:", err)
	}
	bin := filepath.Join(t.TempDir(), "ordo")
	if out, err := exec.Command(goBin, "build", "-o", bin, "github.com/ordo-dev/ordo/cmd/ordo").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfg := extendedExample(t)
	dir := filepath.Dir(cfg)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	if out, err := exec.CommandContext(ctx, bin, "config", "validate", cfg).CombinedOutput(); err != nil || !strings.Contains(string(out), "14 schemas") {
		t.Fatalf("ordo config validate: %v\n%s", err, out)
	}

	dev := exec.CommandContext(ctx, bin, "dev", "--config", cfg, "--demo=false", "--kafka-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0",
		"--admin-addr", "", "--data-dir", filepath.Join(dir, ".ordo"), "--log-level", "debug")
	dev.Dir = dir
	var devOut bytes.Buffer
	dev.Stdout = &devOut
	devErr, err := dev.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	// The first stderr line names the addresses; the rest is kept for
	// failure messages. Wait runs once stderr is drained.
	devDone := make(chan error, 1)
	firstLine := make(chan string, 1)
	var stderrRest syncBuffer
	go func() {
		sc := bufio.NewScanner(devErr)
		for n := 0; sc.Scan(); n++ {
			if n == 0 {
				firstLine <- sc.Text()
				continue
			}
			stderrRest.WriteString(sc.Text() + "\n")
		}
		close(firstLine)
		devDone <- dev.Wait()
	}()
	exited := false
	defer func() {
		if !exited {
			_ = dev.Process.Kill()
			<-devDone
		}
	}()
	first, ok := <-firstLine
	if !ok {
		t.Fatalf("ordo dev printed nothing: %s", stderrRest.String())
	}
	m := regexp.MustCompile(`kafka (\S+) · schema registry (\S+) ·`).FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("no addresses in %q", first)
	}
	brokers, registry := m[1], m[2]
	logs := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, ".ordo", "ordo.log"))
		return fmt.Sprintf("stderr: %s\n%s\nlog:\n%s", first, stderrRest.String(), b)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(refundTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// ordo dev creates the config's topics before it runs the pipeline.
	adm := kadm.NewClient(cl)
	for {
		td, err := adm.ListTopics(ctx, returnsTopic, refundTopic)
		if err == nil && td.Has(returnsTopic) && td.Has(refundTopic) && td.Error() == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("topics not created: %v\n%s", err, logs())
		}
		time.Sleep(100 * time.Millisecond)
	}

	produce := exec.CommandContext(ctx, bin, "produce", "--config", cfg, "--topic", returnsTopic, "--type", "com.acme.returns.ReturnRequested", "--key-field", "order_id")
	produce.Env = append(os.Environ(), "ORDO_KAFKA_BROKERS="+brokers, "ORDO_REGISTRY_URL="+registry)
	produce.Stdin = strings.NewReader(`{"order_id":"o-42","return_id":"r-7","amount":"19.99","currency":"EUR","reason":"wrong size"}` + "\n")
	if out, err := produce.CombinedOutput(); err != nil {
		t.Fatalf("ordo produce: %v\n%s", err, out)
	}

	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	var recs []*kgo.Record
	func() {
		defer func() {
			if t.Failed() {
				t.Log(logs())
			}
		}()
		recs = pollRecords(rctx, t, cl, 1)
	}()
	if len(recs) != 1 {
		t.Fatalf("%d refund commands, want 1", len(recs))
	}
	r := recs[0]
	if string(r.Key) != "o-42" {
		t.Errorf("command key %q, want the correlation id o-42", r.Key)
	}
	id, body, err := schemas.ParseHeader(r.Value)
	if err != nil {
		t.Fatal(err)
	}
	srcl, err := sr.NewClient(sr.URLs(registry))
	if err != nil {
		t.Fatal(err)
	}
	ss, err := srcl.SchemaByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	// The command is framed with the schema from the new .avsc file,
	// registered under the command topic's subject.
	if !jsonEqual(t, ss.Schema, refundPaymentAvsc) {
		t.Fatalf("command schema id %d is not RefundPayment.avsc:\n%s", id, ss.Schema)
	}
	// The example registers with subject_strategy topic_record_name.
	subject := refundTopic + "-com.acme.ordo.commands.RefundPayment"
	latest, err := srcl.SchemaByVersion(ctx, subject, -1)
	if err != nil || latest.ID != id {
		t.Fatalf("subject %s: id %d (err %v), want %d", subject, latest.ID, err, id)
	}
	w, err := schemas.ParseSchema(id, ss.Schema)
	if err != nil {
		t.Fatal(err)
	}
	d, err := schemas.NewSerde(schemas.NewRegistry(srcl), map[string]*schemas.Schema{w.FullName: w}, schemas.WithAutoRegister(false)).Decode(ctx, refundTopic, r.Value)
	if err != nil {
		t.Fatalf("decode %x: %v", body, err)
	}
	v := d.Value
	env := v["envelope"].(map[string]any)
	if d.Type != "com.acme.ordo.commands.RefundPayment" || v["order_id"] != "o-42" || v["return_id"] != "r-7" || v["currency"] != "EUR" ||
		v["amount"].(*big.Rat).Cmp(big.NewRat(1999, 100)) != 0 || env["type"] != d.Type || env["correlation_id"] != "o-42" || env["causation_id"] == nil {
		t.Fatalf("command %s: %v", d.Type, v)
	}

	if err := dev.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-devDone:
		exited = true
		if err != nil {
			t.Fatalf("ordo dev: %v\n%s", err, logs())
		}
	case <-ctx.Done():
		t.Fatalf("ordo dev did not stop on SIGINT\n%s", logs())
	}
	if !strings.Contains(devOut.String(), "events in 1 · commands out 1 · dead-lettered 0") {
		t.Errorf("summary: %s", devOut.String())
	}
	t.Logf("validate, dev, produce, command out and stop in %v (after the build)", time.Since(start).Round(time.Millisecond))
}

func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal([]byte(a), &va); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(b), &vb); err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return bytes.Equal(ja, jb)
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) WriteString(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b.WriteString(s)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestRunWaitsForRegistrySubjects: `ordo run` with a schemas.subjects
// entry and a registry that fails at start does not crash-loop: it logs
// each retry, serves /livez (ok) and /readyz (not ready) meanwhile, and
// starts once the registry answers, with the subject's schema among its
// schemas; SIGTERM then stops it cleanly.
func TestRunWaitsForRegistrySubjects(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the ordo binary; skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH to build the binary:", err)
	}
	bin := filepath.Join(t.TempDir(), "ordo")
	if out, err := exec.Command(goBin, "build", "-o", bin, "github.com/ordo-dev/ordo/cmd/ordo").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	kafka, err := devenv.Kafka("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	defer kafka.Close()
	fake := srfake.New()
	defer fake.Close()
	fake.SeedSchema(returnsTopic+"-value", 1, 41, sr.Schema{Schema: returnRequestedAvsc})
	var failing atomic.Bool
	failing.Store(true)
	fake.Intercept(func(w http.ResponseWriter, _ *http.Request) bool {
		if !failing.Load() {
			return false
		}
		w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error_code": 50003, "message": "overloaded"}`))
		return true
	})

	cfg := extendedExample(t)
	if err := os.Remove(filepath.Join(filepath.Dir(cfg), returnAvsc)); err != nil {
		t.Fatal(err)
	}
	edit(t, cfg, "  files: [schemas/]", "  files: [schemas/]\n  subjects: ["+returnsTopic+"-value]")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := exec.CommandContext(ctx, bin, "run", "--config", cfg, "--create-topics")
	run.Env = append(os.Environ(), "ORDO_KAFKA_BROKERS="+kafka.ListenAddrs()[0], "ORDO_REGISTRY_URL="+fake.URL(),
		"ORDO_ADMIN_LISTEN=127.0.0.1:0", "ORDO_REPLICA_ID=subjects", "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_TRACES_EXPORTER=none")
	stderr, err := run.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	logs := make(chan map[string]any, 1000)
	var all syncBuffer
	done := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				logs <- m
			}
		}
		close(logs)
		done <- run.Wait()
	}()
	exited := false
	defer func() {
		if !exited {
			_ = run.Process.Kill()
			<-done
		}
	}()
	// waitLog returns the next log line with msg (after skipping others).
	waitLog := func(msg string) map[string]any {
		t.Helper()
		for {
			select {
			case m, ok := <-logs:
				if !ok {
					t.Fatalf("ordo run exited before logging %q:\n%s", msg, all.String())
				}
				if m["msg"] == msg {
					return m
				}
			case <-ctx.Done():
				t.Fatalf("no %q log:\n%s", msg, all.String())
			}
		}
	}
	admin := waitLog("admin server listening")["addr"].(string)
	warn := waitLog("cannot fetch a reader schema from the registry; retrying (ordo starts once it has every subject of schemas.subjects)")
	if warn["level"] != "WARN" || warn["subject"] != returnsTopic+"-value" || !strings.Contains(fmt.Sprint(warn["err"]), "503") {
		t.Errorf("retry log: %v", warn)
	}
	status := func(path string) int {
		resp, err := http.Get("http://" + admin + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if live, ready := status("/livez"), status("/readyz"); live != http.StatusOK || ready == http.StatusOK {
		t.Errorf("while waiting for the registry: /livez %d (want 200), /readyz %d (want not ready)", live, ready)
	}
	waitLog("cannot fetch a reader schema from the registry; retrying (ordo starts once it has every subject of schemas.subjects)") // a second attempt: it keeps trying

	failing.Store(false)
	loaded := waitLog("reader schemas loaded")
	if loaded["types"] != float64(14) || loaded["source"] != "schemas.files and schemas.subjects" {
		t.Errorf("loaded: %v", loaded)
	}
	waitLog("ordo running")
	if err := run.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range logs {
	}
	err = <-done
	exited = true
	if err != nil {
		t.Fatalf("ordo run after SIGTERM: %v\n%s", err, all.String())
	}
}
