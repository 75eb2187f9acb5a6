package processors

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestCelAPIVarsAndExactCopies(t *testing.T) {
	ev := orderPlaced()
	x, err := CompileExpr(Location{File: "ordo.yaml", Key: "k"}, `vars.total`, AnyExpr)
	if err != nil {
		t.Fatal(err)
	}
	a := NewActivation(ev)
	a.SetVars(map[string]any{"total": rat("10.01")})
	v, err := x.Value(a)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := v.(interface{ RatString() string }); !ok || r.RatString() != "1001/100" {
		t.Fatalf("vars.total = %#v, want the exact *big.Rat 1001/100", v)
	}
	b, err := CompileExpr(Location{File: "ordo.yaml", Key: "k"}, `has(vars.seen) && event.total > 1000.0`, BoolExpr)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Bool(a); err != nil || ok {
		t.Fatalf("without vars.seen: %v, %v; want false", ok, err)
	}
	a.SetVars(map[string]any{"seen": true})
	if ok, err := b.Bool(a); err != nil || !ok {
		t.Fatalf("with vars.seen: %v, %v; want true", ok, err)
	}
}

func TestCelAPIVarsNotInPipelines(t *testing.T) {
	s := testSpec(t, "orchestrate", "p", "x: 1\n")
	if _, err := compileCEL(s, nil, "k", `vars.x`, anyResult); err == nil {
		t.Fatal("a pipeline expression compiled `vars`, which only process expressions have")
	}
}

func TestCelAPIEmitChecksAndLocations(t *testing.T) {
	var doc yaml.Node
	src := "emit:\n  - type: com.acme.ordo.commands.CancelOrder\n    topic: t\n    fields:\n      order_id: vars.order_id\n      reasn: '\"x\"'\n"
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	entry := doc.Content[0].Content[1].Content[0]
	var conf EmitConfig
	if err := entry.Decode(&conf); err != nil {
		t.Fatal(err)
	}
	_, err := CompileEmit(Location{File: "ordo.yaml", Node: entry, Key: "processes[0].start.emit[0]"}, demoDeps(), conf)
	wantConfigError(t, err, 6, "processes[0].start.emit[0].fields.reasn", `has no field "reasn"`, "reason")

	src = "type: com.acme.ordo.commands.CancelOrder\ntopic: t\nfields:\n  order_id: vars.order_id\n  reason: '\"late: \" + vars.why'\n"
	doc = yaml.Node{}
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	entry = doc.Content[0]
	conf = EmitConfig{}
	if err := entry.Decode(&conf); err != nil {
		t.Fatal(err)
	}
	em, err := CompileEmit(Location{File: "ordo.yaml", Node: entry, Key: "processes[0].start.emit[0]"}, demoDeps(), conf)
	if err != nil {
		t.Fatal(err)
	}
	a := NewActivation(orderPlaced())
	a.SetVars(map[string]any{"order_id": "o-1", "why": "timeout"})
	f, err := em.Fields(a)
	if err != nil {
		t.Fatal(err)
	}
	if f["order_id"] != "o-1" || f["reason"] != "late: timeout" || em.Type() != "com.acme.ordo.commands.CancelOrder" || em.Topic() != "t" {
		t.Fatalf("fields %v type %s topic %s", f, em.Type(), em.Topic())
	}
	a.SetVars(nil)
	if _, err := em.Fields(a); err == nil || !strings.Contains(err.Error(), "field order_id") {
		t.Fatalf("missing var: err %v, want one naming the field", err)
	}
}
