package schemas

import (
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
)

// rec builds a record schema T (namespace t) with the given fields JSON.
func trec(fields ...string) string {
	return `{"type":"record","name":"T","namespace":"t","fields":[` + strings.Join(fields, ",") + `]}`
}

func mustParse(t *testing.T, text string) *Schema {
	t.Helper()
	s, err := ParseSchema(0, text)
	if err != nil {
		t.Fatalf("parse %s: %v", text, err)
	}
	return s
}

// compatCases are schema evolutions with what the Avro specification's
// resolution rules say about each direction: backward = the new schema
// reads old data, forward = the old schema reads new data. bRule/fRule is
// the rule each failing direction must report, at path.
var compatCases = []struct {
	name         string
	old, new     string
	backward     bool
	forward      bool
	bRule, fRule string
	path         string
}{
	{name: "add optional field",
		old: trec(`{"name":"a","type":"string"}`), new: trec(`{"name":"a","type":"string"}`, `{"name":"b","type":["null","string"],"default":null}`),
		backward: true, forward: true},
	{name: "add field without default",
		old: trec(`{"name":"a","type":"string"}`), new: trec(`{"name":"a","type":"string"}`, `{"name":"channel","type":"string"}`),
		backward: false, forward: true, bRule: RuleMissingDefault, path: "channel"},
	{name: "remove field with default",
		old: trec(`{"name":"a","type":"string"}`, `{"name":"b","type":"int","default":0}`), new: trec(`{"name":"a","type":"string"}`),
		backward: true, forward: true},
	{name: "remove field without default",
		old: trec(`{"name":"a","type":"string"}`, `{"name":"b","type":"int"}`), new: trec(`{"name":"a","type":"string"}`),
		backward: true, forward: false, fRule: RuleMissingDefault, path: "b"},
	{name: "int to long",
		old: trec(`{"name":"n","type":"int"}`), new: trec(`{"name":"n","type":"long"}`),
		backward: true, forward: false, fRule: RuleTypeMismatch, path: "n"},
	{name: "float to double and long to float",
		old: trec(`{"name":"f","type":"float"}`, `{"name":"l","type":"long"}`), new: trec(`{"name":"f","type":"double"}`, `{"name":"l","type":"float"}`),
		backward: true, forward: false, fRule: RuleTypeMismatch},
	{name: "string to bytes",
		old: trec(`{"name":"s","type":"string"}`), new: trec(`{"name":"s","type":"bytes"}`),
		backward: true, forward: true},
	{name: "string to int",
		old: trec(`{"name":"s","type":"string"}`), new: trec(`{"name":"s","type":"int"}`),
		backward: false, forward: false, bRule: RuleTypeMismatch, fRule: RuleTypeMismatch, path: "s"},
	{name: "enum adds a symbol",
		old:      trec(`{"name":"c","type":{"type":"enum","name":"Cur","symbols":["EUR","USD"]}}`),
		new:      trec(`{"name":"c","type":{"type":"enum","name":"Cur","symbols":["EUR","USD","CHF"]}}`),
		backward: true, forward: false, fRule: RuleMissingEnumSymbols, path: "c"},
	{name: "enum drops a symbol",
		old:      trec(`{"name":"c","type":{"type":"enum","name":"Cur","symbols":["EUR","USD"]}}`),
		new:      trec(`{"name":"c","type":{"type":"enum","name":"Cur","symbols":["EUR"]}}`),
		backward: false, forward: true, bRule: RuleMissingEnumSymbols, path: "c"},
	{name: "enum with default adds a symbol",
		old:      trec(`{"name":"c","type":{"type":"enum","name":"Cur","symbols":["EUR","USD","OTHER"],"default":"OTHER"}}`),
		new:      trec(`{"name":"c","type":{"type":"enum","name":"Cur","symbols":["EUR","USD","OTHER","CHF"],"default":"OTHER"}}`),
		backward: true, forward: true},
	{name: "union gains a branch",
		old: trec(`{"name":"u","type":["null","string"],"default":null}`), new: trec(`{"name":"u","type":["null","string","int"],"default":null}`),
		backward: true, forward: false, fRule: RuleMissingUnionBranch, path: "u"},
	{name: "field becomes optional",
		old: trec(`{"name":"u","type":"string"}`), new: trec(`{"name":"u","type":["null","string"],"default":null}`),
		backward: true, forward: false, fRule: RuleTypeMismatch, path: "u"},
	{name: "optional field becomes required",
		old: trec(`{"name":"u","type":["null","string"],"default":null}`), new: trec(`{"name":"u","type":"string"}`),
		backward: false, forward: true, bRule: RuleTypeMismatch, path: "u"},
	{name: "record renamed",
		old: trec(`{"name":"a","type":"string"}`), new: `{"type":"record","name":"U","namespace":"t","fields":[{"name":"a","type":"string"}]}`,
		backward: false, forward: false, bRule: RuleNameMismatch, fRule: RuleNameMismatch, path: ""},
	{name: "record renamed with alias",
		old: trec(`{"name":"a","type":"string"}`), new: `{"type":"record","name":"U","namespace":"t","aliases":["T"],"fields":[{"name":"a","type":"string"}]}`,
		backward: true, forward: false, fRule: RuleNameMismatch, path: ""},
	{name: "field renamed with alias",
		old: trec(`{"name":"a","type":"string"}`), new: trec(`{"name":"b","type":"string","aliases":["a"]}`),
		backward: true, forward: false, fRule: RuleMissingDefault, path: "a"},
	{name: "fixed size",
		old: trec(`{"name":"h","type":{"type":"fixed","name":"H","size":16}}`), new: trec(`{"name":"h","type":{"type":"fixed","name":"H","size":32}}`),
		backward: false, forward: false, bRule: RuleFixedSizeMismatch, fRule: RuleFixedSizeMismatch, path: "h"},
	{name: "decimal widened",
		old:      trec(`{"name":"amt","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}}`),
		new:      trec(`{"name":"amt","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}}`),
		backward: true, forward: false, fRule: RuleDecimalNarrowed, path: "amt"},
	{name: "nested array item field without default",
		old:      trec(`{"name":"items","type":{"type":"array","items":{"type":"record","name":"Item","fields":[{"name":"sku","type":"string"}]}}}`),
		new:      trec(`{"name":"items","type":{"type":"array","items":{"type":"record","name":"Item","fields":[{"name":"sku","type":"string"},{"name":"qty","type":"int"}]}}}`),
		backward: false, forward: true, bRule: RuleMissingDefault, path: "items[].qty"},
	{name: "map values int to long",
		old: trec(`{"name":"m","type":{"type":"map","values":"int"}}`), new: trec(`{"name":"m","type":{"type":"map","values":"long"}}`),
		backward: true, forward: false, fRule: RuleTypeMismatch, path: "m{}"},
	{name: "recursive type gains an optional field",
		old:      `{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null}]}`,
		new:      `{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null},{"name":"w","type":"long","default":0}]}`,
		backward: true, forward: true},
	{name: "new field with an invalid default",
		old: trec(`{"name":"a","type":"string"}`), new: trec(`{"name":"a","type":"string"}`, `{"name":"n","type":"int","default":1.5}`),
		backward: false, forward: true, bRule: RuleInvalidDefault, path: "n"},
	{name: "identical", old: trec(`{"name":"a","type":"string"}`), new: trec(`{"name":"a","type":"string"}`), backward: true, forward: true},
}

func TestCanReadRules(t *testing.T) {
	for _, c := range compatCases {
		t.Run(c.name, func(t *testing.T) {
			old, nw := mustParse(t, c.old), mustParse(t, c.new)
			check := func(dir string, got []Incompatibility, ok bool, rule string) {
				t.Helper()
				if ok != (len(got) == 0) {
					t.Fatalf("%s: compatible=%v, want %v; got %v", dir, len(got) == 0, ok, got)
				}
				if ok {
					return
				}
				found := false
				for _, in := range got {
					if in.Rule == rule && (c.path == "" && rule != RuleNameMismatch || in.Path == c.path) {
						found = true
					}
					if in.Message == "" || in.Fix == "" {
						t.Errorf("%s: %+v has no message or fix", dir, in)
					}
				}
				if !found {
					t.Errorf("%s: want rule %s at %q, got %v", dir, rule, c.path, got)
				}
			}
			check("backward", CanRead(old, nw), c.backward, c.bRule)
			check("forward", CanRead(nw, old), c.forward, c.fRule)
		})
	}
}

// TestCanReadAgreesWithResolver: whatever CanRead accepts, the resolver
// compiles; whatever the resolver refuses to compile, CanRead reports.
func TestCanReadAgreesWithResolver(t *testing.T) {
	for _, c := range compatCases {
		for _, dir := range []struct {
			name string
			w, r string
		}{{"backward", c.old, c.new}, {"forward", c.new, c.old}} {
			w, r := mustParse(t, dir.w), mustParse(t, dir.r)
			_, err := w.resolverFor(r)
			issues := CanRead(w, r)
			if len(issues) == 0 && err != nil {
				t.Errorf("%s/%s: CanRead says compatible but the resolver fails: %v", c.name, dir.name, err)
			}
			if err != nil && len(issues) == 0 {
				t.Errorf("%s/%s: resolver fails (%v) and CanRead found nothing", c.name, dir.name, err)
			}
		}
	}
}

// TestCanReadCatchesWhatOnlyDataHits: dropping an enum symbol compiles as a
// resolver (it fails only on a record that uses the symbol), but CanRead
// reports it, and the record that uses it does fail to resolve.
func TestCanReadCatchesWhatOnlyDataHits(t *testing.T) {
	old := mustParse(t, trec(`{"name":"c","type":{"type":"enum","name":"Cur","symbols":["EUR","USD"]}}`))
	nw := mustParse(t, trec(`{"name":"c","type":{"type":"enum","name":"Cur","symbols":["EUR"]}}`))
	if _, err := old.resolverFor(nw); err != nil {
		t.Fatalf("resolver should compile: %v", err)
	}
	if got := CanRead(old, nw); len(got) != 1 || got[0].Rule != RuleMissingEnumSymbols || !strings.Contains(got[0].Message, "USD") {
		t.Fatalf("CanRead = %v", got)
	}
	if _, err := refResolve(old, nw, map[string]any{"c": "USD"}); err == nil {
		t.Fatal("a USD record resolved to a reader without USD")
	}
}

func TestCheckCompatibilityLevels(t *testing.T) {
	for _, c := range compatCases {
		old, nw := mustParse(t, c.old), mustParse(t, c.new)
		prev := []Version{{Version: 1, Schema: old}}
		for _, lv := range []sr.CompatibilityLevel{sr.CompatNone, sr.CompatBackward, sr.CompatForward, sr.CompatFull,
			sr.CompatBackwardTransitive, sr.CompatForwardTransitive, sr.CompatFullTransitive} {
			b, f, _ := LevelChecks(lv)
			want := (!b || c.backward) && (!f || c.forward)
			got := CheckCompatibility(lv, nw, prev)
			if (len(got) == 0) != want {
				t.Errorf("%s under %s: compatible=%v, want %v (%v)", c.name, lv, len(got) == 0, want, got)
			}
			for _, in := range got {
				if in.Version != 1 || in.Direction == Plain {
					t.Errorf("%s under %s: %+v lacks version/direction", c.name, lv, in)
				}
				if in.Direction == Backward && !b || in.Direction == Forward && !f {
					t.Errorf("%s under %s: reported a %s finding", c.name, lv, in.Direction)
				}
			}
		}
	}
}

func TestCheckCompatibilityTransitive(t *testing.T) {
	// BACKWARD: v3 makes b required; v2 data has b, v1 data does not.
	v1 := mustParse(t, trec(`{"name":"a","type":"string"}`))
	v2 := mustParse(t, trec(`{"name":"a","type":"string"}`, `{"name":"b","type":"int","default":0}`))
	v3 := mustParse(t, trec(`{"name":"a","type":"string"}`, `{"name":"b","type":"int"}`))
	prev := []Version{{1, v1}, {2, v2}}
	if got := CheckCompatibility(sr.CompatBackward, v3, prev); len(got) != 0 {
		t.Errorf("BACKWARD: %v", got)
	}
	got := CheckCompatibility(sr.CompatBackwardTransitive, v3, prev)
	if len(got) != 1 || got[0].Version != 1 || got[0].Rule != RuleMissingDefault || got[0].Path != "b" {
		t.Errorf("BACKWARD_TRANSITIVE: %v", got)
	}
	if !strings.Contains(got[0].Message, "version 1") {
		t.Errorf("message does not name version 1: %s", got[0].Message)
	}

	// FORWARD: v1 requires c, v2 gives it a default, v3 drops it.
	f1 := mustParse(t, trec(`{"name":"a","type":"string"}`, `{"name":"c","type":"int"}`))
	f2 := mustParse(t, trec(`{"name":"a","type":"string"}`, `{"name":"c","type":"int","default":0}`))
	f3 := mustParse(t, trec(`{"name":"a","type":"string"}`))
	fprev := []Version{{1, f1}, {2, f2}}
	if got := CheckCompatibility(sr.CompatForward, f3, fprev); len(got) != 0 {
		t.Errorf("FORWARD: %v", got)
	}
	got = CheckCompatibility(sr.CompatForwardTransitive, f3, fprev)
	if len(got) != 1 || got[0].Version != 1 || got[0].Direction != Forward || got[0].Path != "c" {
		t.Errorf("FORWARD_TRANSITIVE: %v", got)
	}
	// FULL_TRANSITIVE sees both kinds against v1 when both apply.
	if got := CheckCompatibility(sr.CompatFull, f3, fprev); len(got) != 0 {
		t.Errorf("FULL: %v", got)
	}
	if got := CheckCompatibility(sr.CompatFullTransitive, f3, fprev); len(got) != 1 {
		t.Errorf("FULL_TRANSITIVE: %v", got)
	}
	// Non-transitive levels only look at the latest version, whatever the
	// older ones say.
	bad := mustParse(t, `{"type":"record","name":"Other","fields":[]}`)
	if got := CheckCompatibility(sr.CompatFull, v2, []Version{{1, bad}, {2, v2}}); len(got) != 0 {
		t.Errorf("FULL looked past the latest version: %v", got)
	}
	if got := CheckCompatibility(sr.CompatFullTransitive, v2, []Version{{1, bad}, {2, v2}}); len(got) == 0 {
		t.Error("FULL_TRANSITIVE missed version 1")
	}
}

func TestIncompatibilityMessages(t *testing.T) {
	old := mustParse(t, trec(`{"name":"a","type":"string"}`))
	nw := mustParse(t, trec(`{"name":"a","type":"string"}`, `{"name":"channel","type":"string"}`))
	got := CheckCompatibility(sr.CompatBackward, nw, []Version{{3, old}})
	if len(got) != 1 {
		t.Fatal(got)
	}
	in := got[0]
	for _, want := range []string{"field 'channel'", "no default", "version 3"} {
		if !strings.Contains(in.String(), want) {
			t.Errorf("%q lacks %q", in.String(), want)
		}
	}
	if !strings.Contains(in.Fix, `"default": ""`) || !strings.Contains(in.Fix, `["null", "string"]`) {
		t.Errorf("fix %q does not show a default", in.Fix)
	}
	d := in.ConfluentDetail()
	if !strings.HasPrefix(d, "{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'") || !strings.HasSuffix(d, "additionalInfo:'channel'}") {
		t.Errorf("Confluent detail %s", d)
	}
	// every suggested default is itself valid for its type
	for _, typ := range []string{`"int"`, `"string"`, `"boolean"`, `"double"`, `{"type":"array","items":"int"}`, `{"type":"map","values":"long"}`,
		`{"type":"enum","name":"E","symbols":["A","B"]}`, `{"type":"fixed","name":"F","size":4}`, `["null","int"]`, `["int","null"]`,
		`{"type":"bytes","logicalType":"decimal","precision":5,"scale":2}`, `{"type":"long","logicalType":"timestamp-millis"}`,
		`{"type":"record","name":"R","fields":[{"name":"x","type":"int"},{"name":"y","type":"string","default":"q"}]}`} {
		s := mustParse(t, trec(`{"name":"f","type":`+typ+`}`))
		f := s.root.fields[0]
		def := exampleDefault(f.typ)
		with := mustParse(t, trec(`{"name":"f","type":`+typ+`,"default":`+def+`}`))
		if err := with.CheckDefaults(); err != nil {
			t.Errorf("suggested default %s for %s is invalid: %v", def, typ, err)
		}
		if f.typ.kind != kUnion {
			opt := `["null", ` + typeJSON(f.typ) + `]`
			if _, err := ParseSchema(0, trec(`{"name":"g","type":`+opt+`,"default":null}`)); err != nil && f.typ.kind != kRecord && f.typ.kind != kEnum && f.typ.kind != kFixed {
				t.Errorf("suggested optional type %s does not parse: %v", opt, err)
			}
		}
	}
}

func TestCheckDefaults(t *testing.T) {
	if err := mustParse(t, trec(`{"name":"n","type":"int","default":1}`)).CheckDefaults(); err != nil {
		t.Error(err)
	}
	err := mustParse(t, trec(`{"name":"items","type":{"type":"array","items":{"type":"record","name":"I","fields":[{"name":"q","type":"int","default":0.5}]}}}`)).CheckDefaults()
	if err == nil || !strings.Contains(err.Error(), "items[].q") || !strings.Contains(err.Error(), "fix:") {
		t.Errorf("CheckDefaults = %v", err)
	}
}

func TestParseLevel(t *testing.T) {
	for _, s := range Levels() {
		l, err := ParseLevel(strings.ToLower(s))
		if err != nil || l.String() != s {
			t.Errorf("ParseLevel(%q) = %v, %v", s, l, err)
		}
	}
	if _, err := ParseLevel("SIDEWAYS"); err == nil || !strings.Contains(err.Error(), "FULL_TRANSITIVE") {
		t.Errorf("ParseLevel(SIDEWAYS) = %v", err)
	}
}

func TestDiff(t *testing.T) {
	old := mustParse(t, trec(`{"name":"a","type":"string"}`, `{"name":"gone","type":"int"}`,
		`{"name":"c","type":{"type":"enum","name":"Cur","symbols":["EUR","USD"]}}`, `{"name":"n","type":"int","default":1}`,
		`{"name":"u","type":["null","string"],"default":null}`))
	nw := mustParse(t, trec(`{"name":"a2","type":"string","aliases":["a"]}`, `{"name":"channel","type":"string","default":"web"}`,
		`{"name":"c","type":{"type":"enum","name":"Cur","symbols":["EUR","CHF"]}}`, `{"name":"n","type":"long","default":2}`,
		`{"name":"u","type":["null","string","int"],"default":null}`))
	var lines []string
	for _, c := range Diff(old, nw) {
		lines = append(lines, c.String())
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{
		"~ a2: field renamed a → a2 (alias)",
		`+ channel: field channel: string, default "web"`,
		"+ c: enum t.Cur: symbols CHF",
		"- c: enum t.Cur: symbols USD",
		"~ n: type int → long",
		"~ n: default 1 → 2",
		"+ u: union branch int",
		"- gone: field gone: int, no default",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("diff lacks %q:\n%s", want, got)
		}
	}
	if d := Diff(old, old); len(d) != 0 {
		t.Errorf("diff of a schema with itself: %v", d)
	}
}

func ExampleCheckCompatibility() {
	v1, _ := ParseSchema(1, `{"type":"record","name":"Payment","fields":[{"name":"id","type":"string"}]}`)
	v2, _ := ParseSchema(0, `{"type":"record","name":"Payment","fields":[{"name":"id","type":"string"},{"name":"channel","type":"string"}]}`)
	for _, in := range CheckCompatibility(sr.CompatBackward, v2, []Version{{Version: 1, Schema: v1}}) {
		fmt.Println(in.Rule)
		fmt.Println(in.Message)
		fmt.Println("fix:", in.Fix)
	}
	// Output:
	// READER_FIELD_MISSING_DEFAULT_VALUE
	// field 'channel' (string) is new and has no default: the new schema cannot read records written with version 1, which lack it
	// fix: add a default to field 'channel', e.g. "default": "", or make it optional: "type": ["null", "string"], "default": null
}
