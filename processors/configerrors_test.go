package processors

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"gopkg.in/yaml.v3"
)

// specsFrom parses a `pipeline:` list as the config package hands it over:
// Key pipeline[i], Line of the entry's type, Config the node with the file's
// lines.
func specsFrom(t *testing.T, src string) []Spec {
	t.Helper()
	var doc struct {
		Pipeline []struct {
			Name   string    `yaml:"name"`
			Type   string    `yaml:"type"`
			Config yaml.Node `yaml:"config"`
		} `yaml:"pipeline"`
	}
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(src), &root); err != nil {
		t.Fatal(err)
	}
	if err := root.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	seq := root.Content[0].Content[1]
	specs := make([]Spec, len(doc.Pipeline))
	for i, e := range doc.Pipeline {
		line := seq.Content[i].Line
		for j := 0; j+1 < len(seq.Content[i].Content); j += 2 {
			if seq.Content[i].Content[j].Value == "type" {
				line = seq.Content[i].Content[j].Line
			}
		}
		specs[i] = Spec{Name: e.Name, Type: e.Type, Config: e.Config, File: "ordo.yaml", Key: "pipeline[" + strconv.Itoa(i) + "]", Line: line}
	}
	return specs
}

func configErrors(t *testing.T, err error) []*ConfigError {
	t.Helper()
	var out []*ConfigError
	var walk func(error)
	walk = func(e error) {
		if ce, ok := e.(*ConfigError); ok {
			out = append(out, ce)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		t.Errorf("%T %v is not a *ConfigError", e, e)
	}
	walk(err)
	return out
}

// TestBuildReportsEveryProcessorsErrors: one Build reports the errors of
// every broken processor, each at its line with its full key.
func TestBuildReportsEveryProcessorsErrors(t *testing.T) {
	specs := specsFrom(t, `pipeline:
  - name: rules
    type: validate
    config:
      rules:
        - name: a
          exp: "true"
          mesage: hi
  - name: tiers
    type: enrich_tabel
  - type: enrich_http
    config:
      url: http://tiers.internal/tiers
      key: event.customer_id
      into: tier
  - name: ok
    type: validate
    config: {rules: [{name: b, expr: "true"}]}
  - name: routes
    type: orchestrate
    config:
      routes:
        - on: com.acme.checkout.OrderPlaced
          emit: {type: X}
`)
	_, err := Builtins().Build(specs, Deps{})
	got := configErrors(t, err)
	want := []struct {
		line     int
		key      string
		msg, fix string
	}{
		{7, "pipeline[0].config.rules[0].exp", "unknown key", `did you mean "expr"? Valid keys: name, when, expr, message`},
		{8, "pipeline[0].config.rules[0].mesage", "unknown key", `did you mean "message"?`},
		{10, "pipeline[1].type", `unknown processor type "enrich_tabel"`, "did you mean enrich_table? Registered types: enrich_http, enrich_table, orchestrate, validate"},
		{13, "pipeline[2].config.url", `url "http://tiers.internal/tiers" has no {key} placeholder`, "put {key} where the lookup key goes"},
		{24, "pipeline[4].config.routes[0].emit", "expected a list, got a mapping", "write a list"},
	}
	if len(got) != len(want) {
		t.Fatalf("want %d errors, got %d:\n%v", len(want), len(got), err)
	}
	for i, w := range want {
		g := got[i]
		if g.File != "ordo.yaml" || g.Line != w.line || g.Key != w.key || !strings.Contains(g.Msg, w.msg) || !strings.Contains(g.Fix, w.fix) {
			t.Errorf("error %d: got %v\nwant ordo.yaml:%d: %s: %s (fix: %s)", i, g, w.line, w.key, w.msg, w.fix)
		}
	}
}

func TestDecodeTypeErrorsKeepTheFilesLines(t *testing.T) {
	specs := specsFrom(t, `pipeline:
  - type: enrich_http
    config:
      url: http://x/{key}
      key: k
      into: t
      retries: many
      retry_budget: [1]
      headers: {Accept: {json: true}}
`)
	_, err := Builtins().Build(specs, Deps{})
	got := configErrors(t, err)
	var lines []string
	for _, g := range got {
		lines = append(lines, strconv.Itoa(g.Line)+" "+g.Key+": "+g.Msg)
	}
	want := []string{
		`7 pipeline[0].config.retries: expected an integer, got "many"`,
		"8 pipeline[0].config.retry_budget: expected a number, got a list",
		"9 pipeline[0].config.headers.Accept: expected a string, got a mapping",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// TestSpecWithoutKeyKeepsNameKeys: specs built by hand (custom binaries,
// tests) still get pipeline[name] keys.
func TestSpecWithoutKeyKeepsNameKeys(t *testing.T) {
	s := testSpec(t, "enrich_http", "tiers", "url: http://x/{key}\nkey: k\ninto: t\ncache_sise: 5\n")
	_, err := newEnrichHTTP(s, Deps{})
	wantConfigError(t, err, 4, "pipeline[tiers].cache_sise", "unknown key", `did you mean "cache_size"?`)
}

// TestBuildLocatesNonConfigErrors: a custom factory's plain error still gets
// the spec's file, line and key.
func TestBuildLocatesNonConfigErrors(t *testing.T) {
	r := NewRegistry()
	r.MustRegister("custom", func(Spec, Deps) (Processor, error) { return nil, errors.New("model file missing") })
	_, err := r.Build([]Spec{{Type: "custom", File: "ordo.yaml", Key: "pipeline[3]", Line: 40}}, Deps{})
	got := configErrors(t, err)
	if len(got) != 1 || got[0].Error() != "ordo.yaml:40: pipeline[3].config: model file missing" {
		t.Fatalf("got %v", err)
	}
}

// TestEnrichTableOpensFromFS: the embedded example's table is read from
// Deps.FS, relative to BaseDir inside it.
func TestEnrichTableOpensFromFS(t *testing.T) {
	fsys := fstest.MapFS{"demo/tiers.csv": {Data: []byte("customer_id,tier\ncust-7,gold\n")}}
	s := testSpec(t, "enrich_table", "tiers", "file: tiers.csv\nkey: event.customer_id\ninto: customer\n")
	p, err := newEnrichTable(s, Deps{FS: fsys, BaseDir: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	ev := orderPlaced()
	if _, err := p.Process(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	if tier, _ := Field(ev.Attrs["customer"], "tier"); tier != "gold" {
		t.Fatalf("attrs %v", ev.Attrs)
	}
	_, err = newEnrichTable(testSpec(t, "enrich_table", "tiers", "file: nope.csv\nkey: key\ninto: c\n"), Deps{FS: fsys, BaseDir: "demo"})
	wantConfigError(t, err, 1, "pipeline[tiers].file", "cannot open table")
}
