package foreign_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/ordo-dev/ordo/internal/app"
	"github.com/ordo-dev/ordo/internal/devenv"
	"github.com/ordo-dev/ordo/test/foreign"
)

// op is one operation of python/compat.py and node/compat.js.
type op struct {
	Op         string               `json:"op"`
	Subject    string               `json:"subject,omitempty"`
	Level      string               `json:"level,omitempty"`
	Schema     string               `json:"schema,omitempty"`
	Version    any                  `json:"version,omitempty"`
	References []sr.SchemaReference `json:"references,omitempty"`
}

type opResult struct {
	Value any `json:"value"`
	Error *struct {
		Status  int    `json:"status"`
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// runClient runs lang's compat script on ops against registry.
func runClient(t *testing.T, lang, registry string, ops []op) []opResult {
	t.Helper()
	in, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cmd *exec.Cmd
	switch lang {
	case "python":
		cmd = exec.CommandContext(ctx, filepath.Join(foreign.CacheDir(), "venv", "bin", "python"), filepath.Join(foreign.Dir(), "python", "compat.py"), "--registry", registry)
	case "node":
		cmd = exec.CommandContext(ctx, "node", filepath.Join(foreign.Dir(), "node", "compat.js"), "--registry", registry)
		cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(foreign.CacheDir(), "node", "node_modules"))
	}
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s compat script: %v\n%s", lang, err, errb.String())
	}
	var res []opResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || len(res) != len(ops) {
		t.Fatalf("%s compat script printed %q (%v)", lang, out.String(), err)
	}
	return res
}

func payment(extraFields ...string) string {
	fields := []string{`{"name":"payment_id","type":"string"}`, `{"name":"n","type":"int"}`,
		`{"name":"currency","type":{"type":"enum","name":"Currency","symbols":["EUR","USD"]}}`}
	return `{"type":"record","name":"PaymentAuthorized","namespace":"com.acme.payments","fields":[` + strings.Join(append(fields, extraFields...), ",") + `]}`
}

// compatCases are schema changes against payment() whose verdicts follow
// from the Avro specification's resolution rules (and so are what a
// Confluent registry answers too), per level.
var compatCases = []struct {
	name   string
	schema string
	want   map[string]bool
}{
	{"optional field added", payment(`{"name":"channel","type":["null","string"],"default":null}`),
		map[string]bool{"BACKWARD": true, "FORWARD": true, "FULL": true}},
	{"field added without a default", payment(`{"name":"channel","type":"string"}`),
		map[string]bool{"BACKWARD": false, "FORWARD": true, "FULL": false, "NONE": true}},
	{"enum symbol added", strings.Replace(payment(), `["EUR","USD"]`, `["EUR","USD","CHF"]`, 1),
		map[string]bool{"BACKWARD": true, "FORWARD": false}},
	{"int field becomes string", strings.Replace(payment(), `{"name":"n","type":"int"}`, `{"name":"n","type":"string"}`, 1),
		map[string]bool{"BACKWARD": false, "FORWARD": false, "NONE": true}},
	{"int field becomes long", strings.Replace(payment(), `{"name":"n","type":"int"}`, `{"name":"n","type":"long"}`, 1),
		map[string]bool{"BACKWARD": true, "FORWARD": false}},
	{"field without default removed", strings.Replace(payment(), `{"name":"n","type":"int"},`, ``, 1),
		map[string]bool{"BACKWARD": true, "FORWARD": false}},
}

// TestConfluentClientsAgreeOnCompatibility asks confluent-kafka (Python) and
// @confluentinc/schemaregistry (Node) whether each change is compatible
// with the embedded registry's version 1 under each level, and checks that
// both get the verdict the Avro rules give, the same as `ordo schemas
// check`; then that both see a 409 with Confluent's error code when
// registering an incompatible schema, the levels they set, and schema
// references.
func TestConfluentClientsAgreeOnCompatibility(t *testing.T) {
	langs := requireLangs(t)
	reg, err := devenv.StartRegistry("127.0.0.1:0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	url := reg.URL()
	ctx := context.Background()
	cl := mustSR(t, url)
	if _, err := cl.RegisterSchema(ctx, "pay", sr.Schema{Schema: payment()}, -1, -1); err != nil {
		t.Fatal(err)
	}

	// 1. test-compatibility through each client, per level
	type probe struct {
		c     int
		level string
	}
	var probes []probe
	var ops []op
	for i, c := range compatCases {
		for level := range c.want {
			probes = append(probes, probe{i, level})
			ops = append(ops, op{Op: "set_level", Subject: "pay", Level: level}, op{Op: "test", Subject: "pay", Schema: c.schema, Version: "latest"})
		}
	}
	ops = append(ops, op{Op: "set_level", Level: "FULL_TRANSITIVE"}, op{Op: "get_level"})
	verdicts := map[string][]bool{}
	for _, lang := range langs {
		res := runClient(t, lang, url, ops)
		for i, p := range probes {
			set, test := res[2*i], res[2*i+1]
			if set.Error != nil || set.Value != p.level {
				t.Errorf("%s: set_level %s: %+v", lang, p.level, set)
			}
			if test.Error != nil {
				t.Fatalf("%s: test %s under %s: %+v", lang, compatCases[p.c].name, p.level, test.Error)
			}
			got, _ := test.Value.(bool)
			verdicts[lang] = append(verdicts[lang], got)
		}
		if got := res[len(res)-1]; got.Value != "FULL_TRANSITIVE" {
			t.Errorf("%s: global level read back as %+v", lang, got)
		}
	}
	// 2. the same question to `ordo schemas check`, with the level set in
	// the registry
	dir := t.TempDir()
	for i, p := range probes {
		c := compatCases[p.c]
		want := c.want[p.level]
		for _, lang := range langs {
			if got := verdicts[lang][i]; got != want {
				t.Errorf("%s says %q under %s is compatible=%v, want %v", lang, c.name, p.level, got, want)
			}
		}
		var lv sr.CompatibilityLevel
		if err := lv.UnmarshalText([]byte(p.level)); err != nil {
			t.Fatal(err)
		}
		if err := reg.SetCompatibility("pay", lv); err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, fmt.Sprintf("case%d.avsc", p.c))
		if err := os.WriteFile(file, []byte(c.schema), 0o644); err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		code := app.Main([]string{"schemas", "check", "--registry", url, "--subject", "pay", file}, app.WithOutput(&out, &errb))
		if (code == 0) != want || code != 0 && code != 1 {
			t.Errorf("ordo schemas check: %q under %s exits %d, want compatible=%v\n%s%s", c.name, p.level, code, want, out.String(), errb.String())
		}
	}
	t.Logf("%d verdicts agree between %v and ordo schemas check", len(probes), langs)

	// 3. registering an incompatible schema: Confluent's 409 in each client
	_ = reg.SetCompatibility("pay", sr.CompatBackward)
	bad, good := compatCases[1].schema, compatCases[0].schema
	for _, lang := range langs {
		res := runClient(t, lang, url, []op{{Op: "register", Subject: "pay", Schema: bad}, {Op: "get_level", Subject: "pay"}})
		e := res[0].Error
		if e == nil || e.Status != 409 || e.Code != 409 || !strings.Contains(e.Message, "incompatible with an earlier schema") || !strings.Contains(e.Message, "channel") {
			t.Errorf("%s: registering an incompatible schema: %+v", lang, res[0])
		}
		if res[1].Value != "BACKWARD" {
			t.Errorf("%s: subject level %+v", lang, res[1])
		}
	}
	res := runClient(t, langs[0], url, []op{{Op: "register", Subject: "pay", Schema: good}})
	if res[0].Error != nil {
		t.Errorf("%s: registering a compatible schema: %+v", langs[0], res[0].Error)
	}

	// 4. references: Money shared by Order, registered and checked by the
	// clients and by ordo
	money := `{"type":"record","name":"Money","namespace":"com.acme","fields":[{"name":"cents","type":"long"},{"name":"currency","type":"string"}]}`
	order := func(extra string) string {
		return `{"type":"record","name":"Order","namespace":"com.acme.checkout","fields":[{"name":"id","type":"string"},{"name":"total","type":"com.acme.Money"}` + extra + `]}`
	}
	ref := []sr.SchemaReference{{Name: "com.acme.Money", Subject: "com.acme.Money", Version: 1}}
	res = runClient(t, langs[0], url, []op{
		{Op: "register", Subject: "com.acme.Money", Schema: money},
		{Op: "register", Subject: "orders-value", Schema: order(""), References: ref},
	})
	for _, r := range res {
		if r.Error != nil {
			t.Fatalf("%s: register with references: %+v", langs[0], r.Error)
		}
	}
	for _, lang := range langs {
		res := runClient(t, lang, url, []op{
			{Op: "test", Subject: "orders-value", Schema: order(`,{"name":"note","type":["null","string"],"default":null}`), References: ref},
			{Op: "test", Subject: "orders-value", Schema: order(`,{"name":"note","type":"string"}`), References: ref},
		})
		if res[0].Value != true || res[1].Value != false {
			t.Errorf("%s: compatibility with references: %+v %+v", lang, res[0], res[1])
		}
	}
	ordersDir := filepath.Join(dir, "orders")
	_ = os.MkdirAll(ordersDir, 0o755)
	_ = os.WriteFile(filepath.Join(ordersDir, "Money.avsc"), []byte(money), 0o644)
	for _, c := range []struct {
		extra string
		code  int
	}{{`,{"name":"note","type":["null","string"],"default":null}`, 0}, {`,{"name":"note","type":"string"}`, 1}} {
		_ = os.WriteFile(filepath.Join(ordersDir, "Order.avsc"), []byte(order(c.extra)), 0o644)
		var out, errb bytes.Buffer
		if code := app.Main([]string{"schemas", "check", "--registry", url, "--subject", "orders-value", ordersDir}, app.WithOutput(&out, &errb)); code != c.code {
			t.Errorf("ordo schemas check Order%s: exit %d, want %d\n%s%s", c.extra, code, c.code, out.String(), errb.String())
		}
	}
}
