package yamlcheck

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

type dur time.Duration

func (d *dur) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: not a duration", n.Line)}}
	}
	*d = dur(v)
	return nil
}

func (dur) YAMLExpect() (string, string) { return "a duration", "100ms" }

type inner struct {
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
}

type base struct {
	Shared string `yaml:"shared"`
}

type target struct {
	base     `yaml:",inline"`
	Brokers  []string           `yaml:"brokers"`
	Size     int                `yaml:"batch_size"`
	On       bool               `yaml:"on"`
	Ratio    *float64           `yaml:"ratio"`
	Wait     dur                `yaml:"wait"`
	SASL     inner              `yaml:"sasl"`
	Items    []inner            `yaml:"items"`
	Limits   map[string]float64 `yaml:"limits"`
	Raw      yaml.Node          `yaml:"raw"`
	Any      map[string]any     `yaml:"any"`
	Untagged string
	Skipped  string `yaml:"-"`
}

func parse(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatalf("bad test yaml: %v", err)
	}
	return &n
}

func defaults() target { return target{Brokers: []string{"127.0.0.1:9092"}, Size: 10000} }

func TestDecodeReportsEachProblemWithLineKeyAndFix(t *testing.T) {
	cases := []struct {
		name, src string
		line      int
		key       string
		msg, fix  []string
	}{
		{"int", "batch_size: lots\n", 1, "cfg.batch_size", []string{`expected an integer, got "lots"`}, []string{"batch_size: 10000"}},
		{"int in flow mapping", "sasl: {}\nbatch_size: [1]\n", 2, "cfg.batch_size", []string{"expected an integer, got a list"}, nil},
		{"bool", "on: maybe\n", 1, "cfg.on", []string{"expected true or false"}, []string{"on: true"}},
		{"pointer float", "ratio: half\n", 1, "cfg.ratio", []string{"expected a number"}, []string{"ratio: 0.5"}},
		{"duration via Expecter", "wait: soon\n", 1, "cfg.wait", []string{`expected a duration, got "soon"`}, []string{"wait: 100ms"}},
		{"list given a scalar", "brokers: a:1\n", 1, "cfg.brokers", []string{`expected a list, got "a:1"`}, []string{"brokers: [127.0.0.1:9092]"}},
		{"struct given a scalar", "sasl: plain\n", 1, "cfg.sasl", []string{"expected a mapping"}, []string{"mechanism, username"}},
		{"unknown nested key", "sasl:\n  mechansim: PLAIN\n", 2, "cfg.sasl.mechansim", []string{"unknown key"}, []string{`did you mean "mechanism"?`, "Valid keys: mechanism, username"}},
		{"unknown key in list item", "items:\n  - mechanism: a\n  - usernme: b\n", 3, "cfg.items[1].usernme", []string{"unknown key"}, []string{`did you mean "username"?`}},
		{"unknown key without suggestion", "zzzzzz: 1\n", 1, "cfg.zzzzzz", []string{"unknown key"}, []string{"remove it; valid keys: shared, brokers"}},
		{"map value", "limits:\n  orders: fast\n", 2, "cfg.limits.orders", []string{"expected a number"}, nil},
		{"string given a mapping", "sasl:\n  username: {a: 1}\n", 2, "cfg.sasl.username", []string{"expected a string, got a mapping"}, []string{"quote the value"}},
		{"duplicate key", "batch_size: 1\nbatch_size: 2\n", 2, "cfg.batch_size", []string{"duplicate key (first at line 1)"}, []string{"remove one"}},
		{"skipped field is unknown", "Skipped: x\n", 1, "cfg.Skipped", []string{"unknown key"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := defaults()
			issues := Decode(parse(t, c.src), &v, "cfg")
			if len(issues) != 1 {
				t.Fatalf("want 1 issue, got %d: %+v", len(issues), issues)
			}
			is := issues[0]
			if is.Line != c.line || is.Key != c.key {
				t.Errorf("at line %d key %q, want line %d key %q (%+v)", is.Line, is.Key, c.line, c.key, is)
			}
			for _, m := range c.msg {
				if !strings.Contains(is.Msg, m) {
					t.Errorf("msg %q lacks %q", is.Msg, m)
				}
			}
			for _, f := range c.fix {
				if !strings.Contains(is.Fix, f) {
					t.Errorf("fix %q lacks %q", is.Fix, f)
				}
			}
		})
	}
}

func TestDecodeAcceptsValidYAMLAndKeepsDefaults(t *testing.T) {
	src := `
defaults: &d
  mechanism: PLAIN
shared: s
untagged: u
sasl:
  <<: *d
  username: me
items: [{mechanism: a}, *d]
limits: {orders: 500}
ratio: 0.25
wait: 2s
raw: {anything: [goes, here]}
any: {x: [1, {y: 2}]}
on: null
`
	// "defaults" is not a field: the anchor's own key is reported, the
	// merges and aliases of it decode.
	v := defaults()
	issues := Decode(parse(t, src), &v, "")
	if len(issues) != 1 || issues[0].Key != "defaults" {
		t.Fatalf("want only the unknown key defaults, got %+v", issues)
	}
	if v.Size != 10000 || len(v.Brokers) != 1 {
		t.Errorf("defaults lost: %+v", v)
	}
	if v.Shared != "s" || v.Untagged != "u" || v.SASL.Mechanism != "PLAIN" || v.SASL.Username != "me" ||
		len(v.Items) != 2 || v.Items[1].Mechanism != "PLAIN" || v.Limits["orders"] != 500 || *v.Ratio != 0.25 ||
		time.Duration(v.Wait) != 2*time.Second || v.Raw.Kind != yaml.MappingNode || v.Any["x"] == nil {
		t.Errorf("not decoded: %+v", v)
	}
}

func TestMergedKeyOverriddenByOwnKeyIsNotADuplicate(t *testing.T) {
	src := "a: &a {mechanism: X, username: u}\nsasl:\n  <<: *a\n  mechanism: Y\n"
	var v struct {
		A    inner `yaml:"a"`
		SASL inner `yaml:"sasl"`
	}
	if issues := Decode(parse(t, src), &v, ""); len(issues) != 0 {
		t.Fatalf("issues: %+v", issues)
	}
	if v.SASL.Mechanism != "Y" || v.SASL.Username != "u" {
		t.Errorf("merge: %+v", v.SASL)
	}
}

func TestDecodeReportsAllProblemsAtOnce(t *testing.T) {
	src := "batch_size: lots\non: maybe\nsasl:\n  mechansim: x\nwait: soon\nbrokrs: []\n"
	v := defaults()
	issues := Decode(parse(t, src), &v, "")
	var got []string
	for _, is := range issues {
		got = append(got, fmt.Sprintf("%d:%s", is.Line, is.Key))
	}
	want := "1:batch_size 2:on 4:sasl.mechansim 5:wait 6:brokrs"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %v, want %s (%+v)", got, want, issues)
	}
}

func TestEmptyDocumentKeepsDefaults(t *testing.T) {
	v := defaults()
	if issues := Decode(parse(t, ""), &v, ""); len(issues) != 0 || v.Size != 10000 {
		t.Fatalf("issues %+v, value %+v", issues, v)
	}
}

func TestSuggest(t *testing.T) {
	keys := []string{"brokers", "group", "session_timeout", "transaction_timeout", "batch_size"}
	for in, want := range map[string]string{
		"brokres":            "brokers", // swapped letters count once
		"broker":             "brokers",
		"BatchSize":          "batch_size", // case and separators ignored
		"batch-size":         "batch_size",
		"sesion_timeout":     "session_timeout",
		"transaction_timout": "transaction_timeout",
		"grp":                "group",
		"xyz":                "", // nothing close
		"zookeeper":          "",
	} {
		if got := Suggest(in, keys); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIndexLines(t *testing.T) {
	got := map[string]int{}
	IndexLines(parse(t, "a:\n  b: [x,\n    y]\nc:\n  - d: 1\n"), "p", func(k string, l int) { got[k] = l })
	want := map[string]int{"p.a": 1, "p.a.b": 2, "p.a.b[0]": 2, "p.a.b[1]": 3, "p.c": 4, "p.c[0]": 5, "p.c[0].d": 5}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

type picky string

func (p *picky) UnmarshalYAML(n *yaml.Node) error {
	if n.Value == "bad" {
		return errors.New("picky: bad is not allowed")
	}
	*p = picky(n.Value)
	return nil
}

// TestReportedValuesDoNotStopTheDecode: yaml.v3 aborts the whole decode on a
// custom unmarshaler's plain error and stops a mapping at a duplicate key;
// everything else must still be decoded, with no extra issue.
func TestReportedValuesDoNotStopTheDecode(t *testing.T) {
	var v struct {
		P    picky    `yaml:"p"`
		N    int      `yaml:"n"`
		L    []string `yaml:"l"`
		Tail string   `yaml:"tail"`
	}
	v.L = []string{"default"}
	issues := Decode(parse(t, "p: bad\nn: 1\nn: 2\nl: x\ntail: end\n"), &v, "")
	var got []string
	for _, is := range issues {
		got = append(got, fmt.Sprintf("%d:%s:%s", is.Line, is.Key, is.Msg))
	}
	want := []string{"1:p:picky: bad is not allowed", "3:n:duplicate key (first at line 2)", `4:l:expected a list, got "x"`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
	if v.N != 1 || v.Tail != "end" || len(v.L) != 1 || v.L[0] != "default" {
		t.Fatalf("decode stopped or zeroed a value: %+v", v)
	}
}
