package processors

import (
	"github.com/ordo-dev/ordo/schemas"

	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func tableDir(t *testing.T) string {
	dir := t.TempDir()
	writeFile(t, dir, "customers.csv", "customer_id,tier,country\ncust-7,gold,DE\ncust-8,silver,FR\n")
	writeFile(t, dir, "customers.yaml", "cust-7: {tier: gold, limit: 5000, ratio: 0.5, tags: [a, b]}\n\"42\": {tier: numeric}\n")
	writeFile(t, dir, "customers.json", `{"cust-7": {"tier": "gold", "limit": 5000}}`)
	return dir
}

func buildTable(t *testing.T, dir, block string) (Processor, error) {
	return newEnrichTable(testSpec(t, "enrich_table", "customers", block), Deps{BaseDir: dir})
}

func mustTable(t *testing.T, dir, block string) Processor {
	t.Helper()
	p, err := buildTable(t, dir, block)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func runTable(t *testing.T, p Processor, ev *Event) (map[string]any, bool, error) {
	t.Helper()
	cmds, err := p.Process(context.Background(), ev)
	if len(cmds) != 0 {
		t.Fatal("enrich_table emitted commands")
	}
	v, ok := ev.Attrs["customer"]
	if !ok {
		return nil, false, err
	}
	rec, isRec := v.(*schemas.Record)
	if !isRec {
		t.Fatalf("attrs.customer is %T, want *schemas.Record", v)
	}
	return rec.Natural(), true, err
}

// rowCopy runs p on a fresh event and returns its row copy.
func rowCopy(t *testing.T, p Processor) *schemas.Record {
	t.Helper()
	ev := orderPlaced()
	if _, err := p.Process(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	return ev.Attrs["customer"].(*schemas.Record)
}

func TestEnrichTableCSV(t *testing.T) {
	dir := tableDir(t)
	p := mustTable(t, dir, "file: customers.csv\nkey: event.customer_id\ninto: customer\n")
	got, ok, err := runTable(t, p, orderPlaced())
	if err != nil || !ok {
		t.Fatal(err, ok)
	}
	if want := map[string]any{"customer_id": "cust-7", "tier": "gold", "country": "DE"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	// Changing an event's copy does not change the table (or another
	// event's copy).
	first, second := rowCopy(t, p), rowCopy(t, p)
	first.Set("tier", "hacked")
	if v, _ := second.Get("tier"); v != "gold" {
		t.Fatal("table row aliased between events' attrs")
	}
	if got2, _, _ := runTable(t, p, orderPlaced()); got2["tier"] != "gold" {
		t.Fatal("table row aliased into attrs")
	}
	// Default on_missing without a default: skip.
	ev := orderPlaced()
	ev.Value["customer_id"] = "nobody"
	if _, ok, err := runTable(t, p, ev); ok || err != nil {
		t.Fatalf("skip: ok=%v err=%v", ok, err)
	}
	// key_column picks another column.
	p = mustTable(t, dir, "file: customers.csv\nkey_column: country\nkey: event.shipping_country\ninto: customer\n")
	got, ok, _ = runTable(t, p, orderPlaced())
	if !ok || got["customer_id"] != "cust-7" {
		t.Fatalf("key_column: %v", got)
	}
}

func TestEnrichTableYAMLJSON(t *testing.T) {
	dir := tableDir(t)
	p := mustTable(t, dir, "file: customers.yaml\nkey: event.customer_id\ninto: customer\n")
	got, ok, err := runTable(t, p, orderPlaced())
	if err != nil || !ok {
		t.Fatal(err)
	}
	want := map[string]any{"tier": "gold", "limit": int64(5000), "ratio": 0.5, "tags": []any{"a", "b"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v want %#v", got, want)
	}
	// Lists (and maps) in a row are cloned per event: appending to or
	// changing one event's list leaves the table as it was.
	c := rowCopy(t, p)
	tags, _ := c.Get("tags")
	tags.([]any)[0] = "changed"
	if again, _, _ := runTable(t, p, orderPlaced()); !reflect.DeepEqual(again["tags"], []any{"a", "b"}) {
		t.Fatalf("a row's list is shared with the table: %v", again["tags"])
	}
	// int keys are looked up by their decimal text.
	p = mustTable(t, dir, "file: customers.yaml\nkey: size(event.items) * 21\ninto: customer\n")
	if got, ok, _ := runTable(t, p, orderPlaced()); !ok || got["tier"] != "numeric" {
		t.Fatalf("int key: %v", got)
	}
	p = mustTable(t, dir, "file: customers.json\nkey: event.customer_id\ninto: customer\n")
	if got, ok, _ := runTable(t, p, orderPlaced()); !ok || got["limit"] != int64(5000) {
		t.Fatalf("json: %#v", got)
	}
}

func TestEnrichTableOnMissing(t *testing.T) {
	dir := tableDir(t)
	missing := func() *Event { ev := orderPlaced(); ev.Value["customer_id"] = "nobody"; return ev }

	p := mustTable(t, dir, "file: customers.csv\nkey: event.customer_id\ninto: customer\ndefault: {tier: standard, limit: 10}\n")
	got, ok, err := runTable(t, p, missing())
	if err != nil || !ok || !reflect.DeepEqual(got, map[string]any{"tier": "standard", "limit": int64(10)}) {
		t.Fatalf("default: %#v %v", got, err)
	}
	// Null keys are missing too.
	p = mustTable(t, dir, "file: customers.csv\nkey: event.note\ninto: customer\non_missing: error\n")
	if _, _, err := runTable(t, p, orderPlaced()); err == nil || IsTransient(err) || !strings.Contains(err.Error(), `no table row for key ""`) {
		t.Fatalf("error on null key: %v", err)
	}
	p = mustTable(t, dir, "file: customers.csv\nkey: event.customer_id\ninto: customer\non_missing: error\n")
	if _, _, err := runTable(t, p, missing()); err == nil || IsTransient(err) || !strings.Contains(err.Error(), `no table row for key "nobody"`) {
		t.Fatalf("error: %v", err)
	}
	p = mustTable(t, dir, "file: customers.csv\nkey: event.customer_id\ninto: customer\ndefault: {tier: x}\non_missing: skip\n")
	if _, ok, err := runTable(t, p, missing()); ok || err != nil {
		t.Fatalf("skip: %v %v", ok, err)
	}
	// A key expression that fails is permanent.
	p = mustTable(t, dir, "file: customers.csv\nkey: event.nope\ninto: customer\n")
	if _, _, err := runTable(t, p, orderPlaced()); err == nil || IsTransient(err) || !strings.Contains(err.Error(), "no such key: nope") {
		t.Fatalf("eval error: %v", err)
	}
}

func TestEnrichTableConfigErrors(t *testing.T) {
	dir := tableDir(t)
	writeFile(t, dir, "dup.csv", "id,x\na,1\na,2\n")
	writeFile(t, dir, "bad.yaml", "a: 1\n")
	cases := []struct {
		name, block string
		line        int
		key         string
		frags       []string
	}{
		{"missing file", "file: nope.csv\nkey: event.customer_id\ninto: c\n", 1, "pipeline[customers].file", []string{"cannot open table", "nope.csv"}},
		{"no file", "key: event.customer_id\ninto: c\n", 1, "pipeline[customers].file", []string{"no `file`"}},
		{"no into", "file: customers.csv\nkey: event.customer_id\n", 1, "pipeline[customers].into", []string{"no `into`"}},
		{"bad key expr", "file: customers.csv\ninto: c\nkey: event.customer_id +\n", 3, "pipeline[customers].key", []string{"invalid CEL expression"}},
		{"bad on_missing", "file: customers.csv\ninto: c\nkey: key\non_missing: ignore\n", 4, "pipeline[customers].on_missing", []string{`"ignore" is not one of`}},
		{"default without map", "file: customers.csv\ninto: c\nkey: key\non_missing: default\n", 4, "pipeline[customers].on_missing", []string{"needs a `default` map"}},
		{"duplicate key", "file: dup.csv\ninto: c\nkey: key\n", 1, "pipeline[customers].file", []string{`line 3: duplicate key "a"`}},
		{"yaml not records", "file: bad.yaml\ninto: c\nkey: key\n", 1, "pipeline[customers].file", []string{`entry "a" is int`}},
		{"unknown ext", "file: x.txt\ninto: c\nkey: key\n", 1, "pipeline[customers].file", []string{"format"}},
		{"bad key_column", "file: customers.csv\nkey_column: zzz\ninto: c\nkey: key\n", 1, "pipeline[customers].file", []string{`no column "zzz"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := buildTable(t, dir, c.block)
			wantConfigError(t, err, c.line, c.key, c.frags...)
		})
	}
}
