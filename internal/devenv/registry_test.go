package devenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/ordo-dev/ordo/schemas"
)

func startReg(t *testing.T, file string) *Registry {
	t.Helper()
	r, err := StartRegistry("127.0.0.1:0", file, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

type answer struct {
	status int
	body   map[string]any
	raw    string
}

func (a answer) code() int {
	n, _ := a.body["error_code"].(float64)
	return int(n)
}

func (a answer) msg() string { s, _ := a.body["message"].(string); return s }

func do(t *testing.T, method, url string, body any) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

func register(t *testing.T, r *Registry, subject, schema string, refs ...sr.SchemaReference) answer {
	t.Helper()
	body := map[string]any{"schema": schema}
	if len(refs) > 0 {
		body["references"] = refs
	}
	return do(t, http.MethodPost, r.URL()+"/subjects/"+subject+"/versions", body)
}

func mustRegister(t *testing.T, r *Registry, subject, schema string, refs ...sr.SchemaReference) int {
	t.Helper()
	a := register(t, r, subject, schema, refs...)
	if a.status != http.StatusOK {
		t.Fatalf("register under %s: HTTP %d %s", subject, a.status, a.raw)
	}
	return int(a.body["id"].(float64))
}

func rec(name string, fields ...string) string {
	return `{"type":"record","name":"` + name + `","namespace":"com.acme","fields":[` + strings.Join(fields, ",") + `]}`
}

var (
	v1         = rec("Payment", `{"name":"id","type":"string"}`)
	v2Optional = rec("Payment", `{"name":"id","type":"string"}`, `{"name":"channel","type":["null","string"],"default":null}`)
	v2Required = rec("Payment", `{"name":"id","type":"string"}`, `{"name":"channel","type":"string"}`)
)

// TestRegisterRefusesIncompatible is the case: the registry says
// BACKWARD, so a version 2 whose new field has no default is refused with
// Confluent's 409 answer, and a compatible one is accepted.
func TestRegisterRefusesIncompatible(t *testing.T) {
	r := startReg(t, "")
	id1 := mustRegister(t, r, "payments-value", v1)
	a := register(t, r, "payments-value", v2Required)
	if a.status != http.StatusConflict || a.code() != 409 {
		t.Fatalf("incompatible v2: HTTP %d %s", a.status, a.raw)
	}
	for _, want := range []string{
		`Schema being registered is incompatible with an earlier schema for subject "payments-value", details: [`,
		"{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE'", "field 'channel'", "additionalInfo:'channel'",
		"{oldSchemaVersion: 1}", "{oldSchema: '" + v1 + "'}", "{compatibility: 'BACKWARD'}", `fix: add a default`,
	} {
		if !strings.Contains(a.msg(), want) {
			t.Errorf("409 message lacks %q:\n%s", want, a.msg())
		}
	}
	// Nothing was stored.
	if vs := do(t, http.MethodGet, r.URL()+"/subjects/payments-value/versions", nil); vs.raw != "[1]\n" {
		t.Errorf("versions after the refusal: %s", vs.raw)
	}
	id2 := mustRegister(t, r, "payments-value", v2Optional)
	if id2 == id1 {
		t.Errorf("v2 got v1's id %d", id1)
	}
	// Re-registering an existing version returns its id without a check,
	// as Confluent does.
	if got := mustRegister(t, r, "payments-value", v1); got != id1 {
		t.Errorf("re-registering v1 gave id %d, want %d", got, id1)
	}
}

// TestTwoTypesInOneSubject: what `ordo dev` used to do (PaymentAuthorized
// and PaymentDeclined as versions of payments.v1-value) is refused.
func TestTwoTypesInOneSubject(t *testing.T) {
	r := startReg(t, "")
	demo, err := schemas.Demo()
	if err != nil {
		t.Fatal(err)
	}
	mustRegister(t, r, "payments.v1-value", demo["com.acme.payments.PaymentAuthorized"].Text)
	a := register(t, r, "payments.v1-value", demo["com.acme.payments.PaymentDeclined"].Text)
	if a.status != http.StatusConflict || !strings.Contains(a.msg(), "NAME_MISMATCH") {
		t.Fatalf("second type in one subject: HTTP %d %s", a.status, a.raw)
	}
	// One type per subject (topic_record_name) is fine.
	for _, typ := range []string{"com.acme.payments.PaymentAuthorized", "com.acme.payments.PaymentDeclined"} {
		mustRegister(t, r, schemas.TopicRecordName.Subject("payments.v1", typ, false), demo[typ].Text)
	}
}

// TestEveryLevel registers a backward-only and a forward-only change under
// every level, globally and per subject.
func TestEveryLevel(t *testing.T) {
	// from base: n int→long (new reads old, old cannot read new), a new
	// field m without a default (old reads new, new cannot read old).
	backwardOnly := rec("Payment", `{"name":"id","type":"string"}`, `{"name":"n","type":"long"}`)
	forwardOnly := rec("Payment", `{"name":"id","type":"string"}`, `{"name":"n","type":"int"}`, `{"name":"m","type":"string"}`)
	base := rec("Payment", `{"name":"id","type":"string"}`, `{"name":"n","type":"int"}`)
	for _, lv := range []sr.CompatibilityLevel{sr.CompatNone, sr.CompatBackward, sr.CompatBackwardTransitive,
		sr.CompatForward, sr.CompatForwardTransitive, sr.CompatFull, sr.CompatFullTransitive} {
		for _, perSubject := range []bool{false, true} {
			r := startReg(t, "")
			cfg := r.URL() + "/config"
			if perSubject {
				cfg += "/s"
				// a global level that would refuse everything tested here
				if a := do(t, http.MethodPut, r.URL()+"/config", map[string]string{"compatibility": "FULL"}); a.status != 200 {
					t.Fatal(a.raw)
				}
			}
			if a := do(t, http.MethodPut, cfg, map[string]string{"compatibility": lv.String()}); a.status != 200 || a.body["compatibility"] != lv.String() {
				t.Fatalf("PUT %s: %d %s", cfg, a.status, a.raw)
			}
			b, f, _ := schemas.LevelChecks(lv)
			for _, c := range []struct {
				name   string
				schema string
				ok     bool
			}{{"backward-only change", backwardOnly, !f}, {"forward-only change", forwardOnly, !b}} {
				mustRegister(t, r, "s", base)
				a := register(t, r, "s", c.schema)
				if (a.status == 200) != c.ok {
					t.Errorf("%s (per subject %v): %s: HTTP %d, want ok=%v: %s", lv, perSubject, c.name, a.status, c.ok, a.raw)
				}
				if !c.ok && !strings.Contains(a.msg(), "{compatibility: '"+lv.String()+"'}") {
					t.Errorf("%s: 409 does not name the level: %s", lv, a.msg())
				}
				// back to base for the next case (delete the new version if stored)
				if a.status == 200 {
					do(t, http.MethodDelete, r.URL()+"/subjects/s/versions/latest", nil)
					do(t, http.MethodDelete, r.URL()+"/subjects/s?permanent=true", nil)
				}
			}
		}
	}
}

func TestTransitiveRegistration(t *testing.T) {
	r := startReg(t, "")
	do(t, http.MethodPut, r.URL()+"/config/s", map[string]string{"compatibility": "BACKWARD_TRANSITIVE"})
	mustRegister(t, r, "s", rec("T", `{"name":"a","type":"string"}`))
	mustRegister(t, r, "s", rec("T", `{"name":"a","type":"string"}`, `{"name":"b","type":"int","default":0}`))
	a := register(t, r, "s", rec("T", `{"name":"a","type":"string"}`, `{"name":"b","type":"int"}`))
	if a.status != http.StatusConflict || !strings.Contains(a.msg(), "{oldSchemaVersion: 1}") || !strings.Contains(a.msg(), "version 1") {
		t.Fatalf("BACKWARD_TRANSITIVE: HTTP %d %s", a.status, a.raw)
	}
	do(t, http.MethodPut, r.URL()+"/config/s", map[string]string{"compatibility": "BACKWARD"})
	mustRegister(t, r, "s", rec("T", `{"name":"a","type":"string"}`, `{"name":"b","type":"int"}`))
}

func TestConfigEndpoints(t *testing.T) {
	r := startReg(t, "")
	u := r.URL()
	check := func(a answer, status int, key, want string) {
		t.Helper()
		if a.status != status || (key != "" && a.body[key] != want) {
			t.Errorf("HTTP %d %s, want %d %s=%s", a.status, a.raw, status, key, want)
		}
	}
	check(do(t, http.MethodGet, u+"/config", nil), 200, "compatibilityLevel", "BACKWARD")
	check(do(t, http.MethodPut, u+"/config", map[string]any{"compatibility": "full", "normalize": true}), 200, "compatibility", "FULL")
	check(do(t, http.MethodGet, u+"/config", nil), 200, "compatibilityLevel", "FULL")
	a := do(t, http.MethodGet, u+"/config/orders-value", nil)
	if a.status != 404 || a.code() != 40408 || !strings.Contains(a.msg(), "does not have subject-level compatibility configured") {
		t.Errorf("unset subject level: %d %s", a.status, a.raw)
	}
	check(do(t, http.MethodGet, u+"/config/orders-value?defaultToGlobal=true", nil), 200, "compatibilityLevel", "FULL")
	check(do(t, http.MethodPut, u+"/config/orders-value", map[string]any{"compatibility": "NONE"}), 200, "compatibility", "NONE")
	check(do(t, http.MethodGet, u+"/config/orders-value", nil), 200, "compatibilityLevel", "NONE")
	a = do(t, http.MethodPut, u+"/config", map[string]any{"compatibility": "SIDEWAYS"})
	if a.status != 422 || a.code() != 42203 || !strings.Contains(a.msg(), "full_transitive") {
		t.Errorf("bad level: %d %s", a.status, a.raw)
	}
	check(do(t, http.MethodDelete, u+"/config/orders-value", nil), 200, "compatibilityLevel", "NONE")
	check(do(t, http.MethodGet, u+"/config/orders-value", nil), 404, "", "")
	check(do(t, http.MethodDelete, u+"/config", nil), 200, "compatibilityLevel", "FULL")
	check(do(t, http.MethodGet, u+"/config", nil), 200, "compatibilityLevel", "BACKWARD")

	// franz-go's client sees the same.
	cl, err := sr.NewClient(sr.URLs(u))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if res := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatForwardTransitive}, "x"); res[0].Err != nil || res[0].Level != sr.CompatForwardTransitive {
		t.Errorf("SetCompatibility: %+v", res[0])
	}
	if res := cl.Compatibility(ctx, "x"); res[0].Err != nil || res[0].Level != sr.CompatForwardTransitive {
		t.Errorf("Compatibility: %+v", res[0])
	}
	if got := r.Compatibility("x"); got != sr.CompatForwardTransitive {
		t.Errorf("Registry.Compatibility = %v", got)
	}
}

func TestCompatibilityEndpoint(t *testing.T) {
	r := startReg(t, "")
	mustRegister(t, r, "s", v1)
	u := r.URL() + "/compatibility/subjects/s/versions"
	a := do(t, http.MethodPost, u+"/latest?verbose=true", map[string]string{"schema": v2Required})
	msgs, _ := a.body["messages"].([]any)
	if a.status != 200 || a.body["is_compatible"] != false || len(msgs) != 4 || !strings.Contains(msgs[0].(string), "READER_FIELD_MISSING_DEFAULT_VALUE") {
		t.Errorf("incompatible: %d %s", a.status, a.raw)
	}
	if a := do(t, http.MethodPost, u+"/latest", map[string]string{"schema": v2Required}); a.body["is_compatible"] != false || a.body["messages"] != nil {
		t.Errorf("not verbose: %s", a.raw)
	}
	for _, p := range []string{"/latest", "/1", ""} {
		if a := do(t, http.MethodPost, u+p+"?verbose=true", map[string]string{"schema": v2Optional}); a.status != 200 || a.body["is_compatible"] != true {
			t.Errorf("compatible via %q: %d %s", p, a.status, a.raw)
		}
	}
	if a := do(t, http.MethodPost, r.URL()+"/compatibility/subjects/new/versions/latest", map[string]string{"schema": v2Required}); a.body["is_compatible"] != true {
		t.Errorf("a new subject: %s", a.raw)
	}
	if a := do(t, http.MethodPost, r.URL()+"/compatibility/subjects/new/versions/1", map[string]string{"schema": v2Required}); a.status != 404 || a.code() != 40401 {
		t.Errorf("unknown subject: %d %s", a.status, a.raw)
	}
	if a := do(t, http.MethodPost, u+"/7", map[string]string{"schema": v2Required}); a.status != 404 || a.code() != 40402 {
		t.Errorf("unknown version: %d %s", a.status, a.raw)
	}
	if a := do(t, http.MethodPost, u+"/first", map[string]string{"schema": v2Required}); a.status != 422 || a.code() != 42202 {
		t.Errorf("bad version: %d %s", a.status, a.raw)
	}
	if a := do(t, http.MethodPost, u+"/latest", map[string]string{"schema": `{"type":"record","name":"X"}`}); a.status != 422 || a.code() != 42201 {
		t.Errorf("invalid schema: %d %s", a.status, a.raw)
	}
	// franz-go's client: -1 is latest, -2 all versions.
	cl, _ := sr.NewClient(sr.URLs(r.URL()))
	res, err := cl.CheckCompatibility(sr.WithParams(context.Background(), sr.Verbose), "s", -1, sr.Schema{Schema: v2Required})
	if err != nil || res.Is || len(res.Messages) == 0 {
		t.Errorf("CheckCompatibility = %+v, %v", res, err)
	}
}

func TestInvalidSchemasRefused(t *testing.T) {
	r := startReg(t, "")
	for _, s := range []string{
		`{"type":"record","name":"X"}`,
		`{"type":"record","name":"X","fields":[{"name":"a","type":"Nope"}]}`,
		`{"type":"record","name":"X","fields":[{"name":"a","type":"int","default":1.5}]}`,
	} {
		if a := register(t, r, "x", s); a.status != 422 || a.code() != 42201 || !strings.HasPrefix(a.msg(), "Invalid schema: ") {
			t.Errorf("%s: %d %s", s, a.status, a.raw)
		}
	}
}

const (
	money = `{"type":"record","name":"Money","namespace":"com.acme","fields":[
		{"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}},
		{"name":"currency","type":{"type":"enum","name":"Currency","symbols":["EUR","USD"]}}]}`
	order = `{"type":"record","name":"Order","namespace":"com.acme.checkout","fields":[
		{"name":"id","type":"string"},{"name":"total","type":"com.acme.Money"}]}`
)

func moneyRef(v int) sr.SchemaReference {
	return sr.SchemaReference{Name: "com.acme.Money", Subject: "com.acme.Money", Version: v}
}

func TestReferences(t *testing.T) {
	r := startReg(t, "")
	mustRegister(t, r, "com.acme.Money", money)
	if a := register(t, r, "orders-value", order); a.status != 422 || !strings.Contains(a.msg(), "com.acme.Money") {
		t.Errorf("without references: %d %s", a.status, a.raw)
	}
	if a := register(t, r, "orders-value", order, sr.SchemaReference{Name: "com.acme.Money", Subject: "com.acme.Money", Version: 5}); a.status != 422 || !strings.Contains(a.msg(), "version 5 not found") {
		t.Errorf("missing reference: %d %s", a.status, a.raw)
	}
	id := mustRegister(t, r, "orders-value", order, moneyRef(1))
	// ordo's registry client reads it back whole.
	cl, _ := sr.NewClient(sr.URLs(r.URL()))
	got, err := cl.SchemaByID(context.Background(), id)
	if err != nil || len(got.References) != 1 || got.References[0] != moneyRef(1) {
		t.Errorf("SchemaByID = %+v, %v", got, err)
	}
	// Money v2 drops USD (its own subject allows anything), and an Order
	// that points at it is refused: data written with Money v1 may hold USD.
	do(t, http.MethodPut, r.URL()+"/config/com.acme.Money", map[string]string{"compatibility": "NONE"})
	mustRegister(t, r, "com.acme.Money", strings.Replace(money, `["EUR","USD"]`, `["EUR"]`, 1))
	a := register(t, r, "orders-value", order, moneyRef(2))
	if a.status != http.StatusConflict || !strings.Contains(a.msg(), "MISSING_ENUM_SYMBOLS") || !strings.Contains(a.msg(), "total.currency") {
		t.Errorf("incompatible through a reference: %d %s", a.status, a.raw)
	}
}

func TestPersistence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "registry.json")
	r := startReg(t, file)
	do(t, http.MethodPut, r.URL()+"/config", map[string]string{"compatibility": "FULL_TRANSITIVE"})
	do(t, http.MethodPut, r.URL()+"/config/loose", map[string]string{"compatibility": "NONE"})
	moneyID := mustRegister(t, r, "com.acme.Money", money)
	orderID := mustRegister(t, r, "orders-value", order, moneyRef(1))
	// one schema under two subjects shares its id
	mustRegister(t, r, "loose", rec("Other", `{"name":"x","type":"int"}`))
	shared := mustRegister(t, r, "loose", v1)
	if again := mustRegister(t, r, "payments-value", v1); again != shared {
		t.Fatalf("same schema under another subject: id %d, want %d", again, shared)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	r2 := startReg(t, file)
	u := r2.URL()
	if a := do(t, http.MethodGet, u+"/config", nil); a.body["compatibilityLevel"] != "FULL_TRANSITIVE" {
		t.Errorf("global level after restart: %s", a.raw)
	}
	if a := do(t, http.MethodGet, u+"/config/loose", nil); a.body["compatibilityLevel"] != "NONE" {
		t.Errorf("subject level after restart: %s", a.raw)
	}
	cl, _ := sr.NewClient(sr.URLs(u))
	ctx := context.Background()
	ss, err := cl.SchemaByVersion(ctx, "orders-value", 1)
	if err != nil || ss.ID != orderID || len(ss.References) != 1 || ss.References[0] != moneyRef(1) {
		t.Errorf("orders-value v1 after restart: %+v, %v", ss, err)
	}
	if ss, err := cl.SchemaByVersion(ctx, "com.acme.Money", 1); err != nil || ss.ID != moneyID {
		t.Errorf("Money after restart: %+v, %v", ss, err)
	}
	for subj, v := range map[string]int{"loose": 2, "payments-value": 1} {
		if ss, err := cl.SchemaByVersion(ctx, subj, v); err != nil || ss.ID != shared {
			t.Errorf("%s v%d after restart: %+v, %v", subj, v, ss, err)
		}
	}
	// still enforced, references and all
	if a := register(t, r2, "payments-value", v2Required); a.status != http.StatusConflict {
		t.Errorf("after restart an incompatible schema: HTTP %d", a.status)
	}
	if got := mustRegister(t, r2, "payments-value", v2Optional); got <= orderID {
		t.Errorf("new id %d reuses an old one", got)
	}
	if got := mustRegister(t, r2, "orders-value", order, moneyRef(1)); got != orderID {
		t.Errorf("re-registering the order gave id %d, want %d", got, orderID)
	}
}

// TestLoadsTheOldFileFormat: registry.json files written before levels
// existed (a bare list, possibly with one id under two subjects) load.
func TestLoadsTheOldFileFormat(t *testing.T) {
	file := filepath.Join(t.TempDir(), "registry.json")
	old := fmt.Sprintf(`[{"subject":"a-value","version":1,"id":1,"schema":%q,"type":"AVRO"},
		{"subject":"b-value","version":1,"id":1,"schema":%q,"type":"AVRO"},
		{"subject":"a-value","version":2,"id":2,"schema":%q,"type":"AVRO"}]`, v1, v1, v2Optional)
	if err := os.WriteFile(file, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	r := startReg(t, file)
	cl, _ := sr.NewClient(sr.URLs(r.URL()))
	for _, c := range []struct {
		subject     string
		version, id int
	}{{"a-value", 1, 1}, {"b-value", 1, 1}, {"a-value", 2, 2}} {
		if ss, err := cl.SchemaByVersion(context.Background(), c.subject, c.version); err != nil || ss.ID != c.id {
			t.Errorf("%s v%d: %+v, %v", c.subject, c.version, ss, err)
		}
	}
	if got := r.Compatibility(""); got != sr.CompatBackward {
		t.Errorf("level of an old file: %v", got)
	}
	if err := os.WriteFile(file, []byte(`{"compatibility":"SOMETIMES","schemas":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := StartRegistry("127.0.0.1:0", file, nil); err == nil || !strings.Contains(err.Error(), "fix:") {
		t.Errorf("bad level in the file: %v", err)
	}
}

// TestConcurrentRegistrationsStayCompatible: X (b:int) and Y (b:string)
// are each compatible with v1 but not with each other. Racing clients
// register variants of both; since a check and the registration it allows
// are atomic, every stored version is compatible with the one before it.
func TestConcurrentRegistrationsStayCompatible(t *testing.T) {
	r := startReg(t, "")
	// Many fields make each check take long enough for the racers to
	// overlap.
	wide := make([]string, 150)
	for i := range wide {
		wide[i] = fmt.Sprintf(`{"name":"w%d","type":{"type":"record","name":"W%d","fields":[{"name":"x","type":"long"}]}}`, i, i)
	}
	base := append([]string{`{"name":"a","type":"string"}`}, wide...)
	mustRegister(t, r, "race", rec("T", base...))
	const n = 24
	var wg sync.WaitGroup
	codes := make([]int, n)
	start := make(chan struct{})
	for i := range n {
		typ, def := `"int"`, `0`
		if i%2 == 1 {
			typ, def = `"string"`, `""`
		}
		s := rec("T", append(base, `{"name":"b","type":`+typ+`,"default":`+def+`}`,
			fmt.Sprintf(`{"name":"c%d","type":"int","default":0}`, i))...)
		wg.Go(func() {
			<-start
			codes[i] = register(t, r, "race", s).status
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, c := range codes {
		switch c {
		case http.StatusOK:
			ok++
		case http.StatusConflict:
		default:
			t.Fatalf("HTTP %d", c)
		}
	}
	cl, _ := sr.NewClient(sr.URLs(r.URL()))
	all, err := cl.Schemas(context.Background(), "race")
	if err != nil || len(all) != ok+1 {
		t.Fatalf("%d versions stored, %d registrations succeeded: %v", len(all), ok, err)
	}
	for i := 1; i < len(all); i++ {
		prev, err1 := schemas.ParseSchema(all[i-1].ID, all[i-1].Schema.Schema)
		next, err2 := schemas.ParseSchema(all[i].ID, all[i].Schema.Schema)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if found := schemas.CheckCompatibility(sr.CompatBackward, next, []schemas.Version{{Version: i, Schema: prev}}); len(found) > 0 {
			t.Errorf("version %d is incompatible with version %d: %v", i+1, i, found)
		}
	}
	t.Logf("%d of %d racing registrations accepted", ok, n)
}
