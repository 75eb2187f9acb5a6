package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/ordo-dev/ordo/internal/devenv"
)

const (
	payV1 = `{"type":"record","name":"PaymentAuthorized","namespace":"com.acme.payments","fields":[
  {"name":"payment_id","type":"string"},
  {"name":"currency","type":{"type":"enum","name":"Currency","symbols":["EUR","USD","GBP"]}}]}`
	// payV2ok adds an optional field: compatible both ways.
	payV2ok = `{"type":"record","name":"PaymentAuthorized","namespace":"com.acme.payments","fields":[
  {"name":"payment_id","type":"string"},
  {"name":"currency","type":{"type":"enum","name":"Currency","symbols":["EUR","USD","GBP"]}},
  {"name":"channel","type":["null","string"],"default":null}]}`
	// payV2bad adds channel without a default: not backward compatible.
	payV2bad = `{"type":"record","name":"PaymentAuthorized","namespace":"com.acme.payments","fields":[
  {"name":"payment_id","type":"string"},
  {"name":"currency","type":{"type":"enum","name":"Currency","symbols":["EUR","USD","GBP"]}},
  {"name":"channel","type":"string"}]}`
	// payV2bwd adds an enum symbol: backward compatible, not forward.
	payV2bwd = `{"type":"record","name":"PaymentAuthorized","namespace":"com.acme.payments","fields":[
  {"name":"payment_id","type":"string"},
  {"name":"currency","type":{"type":"enum","name":"Currency","symbols":["EUR","USD","GBP","CHF"]}}]}`
)

func writeFile(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func schemaRegistry(t *testing.T) *devenv.Registry {
	t.Helper()
	reg, err := devenv.StartRegistry("127.0.0.1:0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	return reg
}

func putConfig(t *testing.T, url, level string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(`{"compatibility":"`+level+`"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("PUT %s: HTTP %d", url, resp.StatusCode)
	}
}

func wantRun(t *testing.T, wantCode int, wantOut []string, args ...string) (stdout, stderr string) {
	t.Helper()
	code, out, errOut := runMain(t, args...)
	if code != wantCode {
		t.Fatalf("ordo %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, wantCode, out, errOut)
	}
	for _, w := range wantOut {
		if !strings.Contains(out+errOut, w) {
			t.Errorf("ordo %s: output lacks %q\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), w, out, errOut)
		}
	}
	return out, errOut
}

func TestSchemasCheckAgainstRegistry(t *testing.T) {
	reg := schemaRegistry(t)
	dir := t.TempDir()
	v1 := writeFile(t, filepath.Join(dir, "v1", "Payment.avsc"), payV1)
	ok := writeFile(t, filepath.Join(dir, "ok", "Payment.avsc"), payV2ok)
	bad := writeFile(t, filepath.Join(dir, "bad", "Payment.avsc"), payV2bad)
	subject := "payments.v1-com.acme.payments.PaymentAuthorized"
	flags := []string{"--registry", reg.URL(), "--topic", "payments.v1"}

	// a subject that does not exist yet passes, and says so
	wantRun(t, 0, []string{"NEW", subject, "compatible by definition"}, append([]string{"schemas", "check"}, append(flags, bad)...)...)

	wantRun(t, 0, []string{"registered", subject, "version 1"}, append([]string{"schemas", "register"}, append(flags, v1)...)...)
	wantRun(t, 0, []string{"unchanged", "already version 1"}, append([]string{"schemas", "register"}, append(flags, v1)...)...)
	wantRun(t, 0, []string{"ok    " + ok, "BACKWARD against version 1"}, append([]string{"schemas", "check"}, append(flags, ok)...)...)

	out, errOut := wantRun(t, 1, []string{
		"FAIL  " + bad, "field 'channel' (string) is new and has no default", "version 1",
		"rule: READER_FIELD_MISSING_DEFAULT_VALUE (backward)", `fix:  add a default to field 'channel', e.g. "default": ""`,
	}, append([]string{"schemas", "check"}, append(flags, bad)...)...)
	if !strings.Contains(errOut, "1 of 1 schema files failed the check") || strings.Contains(errOut, "exit status") {
		t.Errorf("stderr: %q", errOut)
	}
	_ = out

	// JSON for machines
	out, _ = wantRun(t, 1, nil, append([]string{"schemas", "check", "--output", "json"}, append(flags, ok, bad)...)...)
	var res struct {
		OK      bool `json:"ok"`
		Results []struct {
			File, Status, Subject, Level string
			Issues                       []struct{ Rule, Path, Direction, Fix string } `json:"incompatibilities"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if res.OK || len(res.Results) != 2 || res.Results[0].Status != "compatible" || res.Results[1].Status != "incompatible" ||
		len(res.Results[1].Issues) != 1 || res.Results[1].Issues[0].Path != "channel" || res.Results[1].Issues[0].Direction != "backward" {
		t.Errorf("JSON: %+v", res)
	}

	// register refuses the incompatible file and leaves the subject alone
	wantRun(t, 1, []string{"incompatible (BACKWARD against version 1), not registered", "field 'channel'"},
		append([]string{"schemas", "register"}, append(flags, bad)...)...)
	cl, _ := sr.NewClient(sr.URLs(reg.URL()))
	if vs, err := cl.SubjectVersions(context.Background(), subject); err != nil || len(vs) != 1 {
		t.Errorf("versions after a refused register: %v, %v", vs, err)
	}

	// the wrong strategy: the check says the subject is new and points at
	// the one that exists
	wantRun(t, 0, []string{`subject "com.acme.payments.PaymentAuthorized" does not exist`, "the registry has " + subject},
		"schemas", "check", "--registry", reg.URL(), bad)
}

// TestSchemasCheckUsesTheSubjectLevel: the level comes from the registry
// (subject first, then global), and --level overrides it.
func TestSchemasCheckUsesTheSubjectLevel(t *testing.T) {
	reg := schemaRegistry(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "v1.avsc"), payV1)
	fwdBad := writeFile(t, filepath.Join(dir, "new", "p.avsc"), payV2bwd) // adds a symbol
	flags := []string{"--registry", reg.URL(), "--subject", "pay"}
	wantRun(t, 0, nil, append([]string{"schemas", "register"}, append(flags, filepath.Join(dir, "v1.avsc"))...)...)

	wantRun(t, 0, []string{"BACKWARD against version 1"}, append([]string{"schemas", "check"}, append(flags, fwdBad)...)...)
	putConfig(t, reg.URL()+"/config", "FULL")
	wantRun(t, 1, []string{"FULL against version 1", "gained symbols [CHF]", "MISSING_ENUM_SYMBOLS (forward)"}, append([]string{"schemas", "check"}, append(flags, fwdBad)...)...)
	putConfig(t, reg.URL()+"/config/pay", "BACKWARD")
	wantRun(t, 0, []string{"BACKWARD against version 1"}, append([]string{"schemas", "check"}, append(flags, fwdBad)...)...)
	wantRun(t, 1, []string{"FORWARD against version 1"}, append([]string{"schemas", "check", "--level", "forward"}, append(flags, fwdBad)...)...)
	wantRun(t, 0, []string{"level NONE"}, append([]string{"schemas", "check", "--level", "NONE"}, append(flags, fwdBad)...)...)
	wantRun(t, 2, []string{"unknown compatibility level", "FULL_TRANSITIVE"}, append([]string{"schemas", "check", "--level", "SOMETIMES"}, append(flags, fwdBad)...)...)
}

func TestSchemasCheckTransitive(t *testing.T) {
	reg := schemaRegistry(t)
	dir := t.TempDir()
	rec := func(fields string) string {
		return `{"type":"record","name":"T","namespace":"t","fields":[` + fields + `]}`
	}
	putConfig(t, reg.URL()+"/config/t", "BACKWARD_TRANSITIVE")
	flags := []string{"--registry", reg.URL(), "--subject", "t"}
	for i, s := range []string{rec(`{"name":"a","type":"string"}`), rec(`{"name":"a","type":"string"},{"name":"b","type":"int","default":0}`)} {
		f := writeFile(t, filepath.Join(dir, "v"+string(rune('1'+i)), "t.avsc"), s)
		wantRun(t, 0, []string{"registered"}, append([]string{"schemas", "register"}, append(flags, f)...)...)
	}
	v3 := writeFile(t, filepath.Join(dir, "v3", "t.avsc"), rec(`{"name":"a","type":"string"},{"name":"b","type":"int"}`))
	wantRun(t, 1, []string{"BACKWARD_TRANSITIVE against versions 1-2", "field 'b' (int) is new and has no default", "written with version 1"},
		append([]string{"schemas", "check"}, append(flags, v3)...)...)
	wantRun(t, 0, nil, append([]string{"schemas", "check", "--level", "BACKWARD"}, append(flags, v3)...)...)
}

func TestSchemasCheckAgainstDirAndGit(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "old")
	writeFile(t, filepath.Join(old, "Payment.avsc"), payV1)
	repo := filepath.Join(dir, "repo")
	f := writeFile(t, filepath.Join(repo, "schemas", "Payment.avsc"), payV1)
	writeFile(t, filepath.Join(repo, "schemas", "Other.avsc"), `{"type":"record","name":"Other","fields":[]}`)

	gitRun := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repo}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t", "GIT_CONFIG_GLOBAL=/dev/null")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed: --against-git cannot be tested")
	}
	gitRun("init", "-q")
	gitRun("add", ".")
	gitRun("commit", "-qm", "v1")
	writeFile(t, f, payV2bad)
	writeFile(t, filepath.Join(repo, "schemas", "Refund.avsc"), `{"type":"record","name":"Refund","fields":[]}`)

	wantRun(t, 1, []string{"FAIL  " + f, "BACKWARD against " + filepath.Join(old, "Payment.avsc"), "field 'channel'", "the previous schema"},
		"schemas", "check", "--against", old, f)
	wantRun(t, 1, []string{"FAIL  " + f, "BACKWARD against HEAD:schemas/Payment.avsc", "field 'channel'", "NEW", "Refund has no previous version in git HEAD", "1 compatible"},
		"schemas", "check", "--against-git", "HEAD", filepath.Join(repo, "schemas"))
	wantRun(t, 2, []string{"--against-git no-such-branch: no such revision"}, "schemas", "check", "--against-git", "no-such-branch", f)
	wantRun(t, 0, []string{"ok"}, "schemas", "check", "--against-git", "HEAD", "--level", "FORWARD", f)
	wantRun(t, 0, []string{"+ channel: field channel: string, no default", "backward (this schema reads data written with the previous schema): NO", "passes: NONE, FORWARD"},
		"schemas", "diff", "--against-git", "HEAD", f)
}

// TestSchemasRegisterReferences: a file whose type others use is registered
// first, under its record name, and the others reference it.
func TestSchemasRegisterReferences(t *testing.T) {
	reg := schemaRegistry(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "Money.avsc"), `{"type":"record","name":"Money","namespace":"com.acme","fields":[
		{"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}},{"name":"currency","type":"string"}]}`)
	writeFile(t, filepath.Join(dir, "Order.avsc"), `{"type":"record","name":"Order","namespace":"com.acme.checkout","fields":[
		{"name":"id","type":"string"},{"name":"total","type":"com.acme.Money"}]}`)
	wantRun(t, 0, []string{"registered  " + filepath.Join(dir, "Money.avsc") + " → com.acme.Money: version 1",
		"registered  " + filepath.Join(dir, "Order.avsc") + " → orders-com.acme.checkout.Order: version 1"},
		"schemas", "register", "--registry", reg.URL(), "--topic", "orders", dir)
	cl, _ := sr.NewClient(sr.URLs(reg.URL()))
	ss, err := cl.SchemaByVersion(context.Background(), "orders-com.acme.checkout.Order", 1)
	if err != nil || len(ss.References) != 1 || ss.References[0] != (sr.SchemaReference{Name: "com.acme.Money", Subject: "com.acme.Money", Version: 1}) {
		t.Fatalf("Order as registered: %+v, %v", ss, err)
	}
	if strings.Contains(ss.Schema.Schema, `"amount"`) {
		t.Errorf("Order was registered with Money inlined, not referenced: %s", ss.Schema.Schema)
	}
	// the check reads the registered Order through its reference
	wantRun(t, 0, []string{"ok", "orders-com.acme.checkout.Order (BACKWARD against version 1)"},
		"schemas", "check", "--registry", reg.URL(), "--topic", "orders", dir)
	// an incompatible Money stops Money and the Order that uses it
	writeFile(t, filepath.Join(dir, "Money.avsc"), `{"type":"record","name":"Money","namespace":"com.acme","fields":[
		{"name":"amount","type":"int"},{"name":"currency","type":"string"}]}`)
	wantRun(t, 1, []string{"FAIL  " + filepath.Join(dir, "Money.avsc"), "field 'amount' changed type", "SKIP  " + filepath.Join(dir, "Order.avsc")},
		"schemas", "register", "--registry", reg.URL(), "--topic", "orders", dir)
}

func TestSchemasUsageErrors(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, filepath.Join(dir, "a.avsc"), payV1)
	b := writeFile(t, filepath.Join(dir, "b.avsc"), `{"type":"record","name":"Other","fields":[]}`)
	broken := writeFile(t, filepath.Join(dir, "broken", "x.avsc"), `{"type":"record","name":"X","fields":[{"name":"n","type":"Nope"}]}`)
	others := filepath.Dir(writeFile(t, filepath.Join(dir, "others", "o.avsc"), `{"type":"record","name":"Other","fields":[]}`))
	for _, c := range []struct {
		code int
		want string
		args []string
	}{
		{2, "no schema files given", []string{"schemas", "check"}},
		{2, "a subject holds one record type", []string{"schemas", "check", "--subject", "s", a, b}},
		{2, "a subject holds one record type", []string{"schemas", "check", "--topic", "t", "--subject-strategy", "topic_name", a, b}},
		{2, "needs --topic", []string{"schemas", "check", "--subject-strategy", "topic_name", a}},
		{2, "unknown subject strategy", []string{"schemas", "check", "--subject-strategy", "by_magic", a}},
		{2, "exclude each other", []string{"schemas", "check", "--against", dir, "--against-git", "HEAD", a}},
		{2, "not a directory", []string{"schemas", "check", "--against", a, a}},
		{2, "not a URL", []string{"schemas", "check", "--registry", "localhost", a}},
		{2, "connection refused", []string{"schemas", "check", "--registry", "http://127.0.0.1:1", a}},
		{1, `FAIL  ` + broken + `: invalid schema: avro: parse schema id 0: record X: field n: unknown type name "Nope"`, []string{"schemas", "check", "--against", others, broken}},
		{1, "invalid schema", []string{"schemas", "register", "--registry", "http://127.0.0.1:1", broken}},
		{1, "nothing to diff against", []string{"schemas", "diff", "--against", others, a}},
		{1, `--against: ` + broken, []string{"schemas", "diff", "--against", filepath.Join(dir, "broken"), a}},
	} {
		wantRun(t, c.code, []string{c.want}, c.args...)
	}
}

func TestSchemasDiff(t *testing.T) {
	reg := schemaRegistry(t)
	dir := t.TempDir()
	v1 := writeFile(t, filepath.Join(dir, "v1", "p.avsc"), payV1)
	ok := writeFile(t, filepath.Join(dir, "v2", "p.avsc"), payV2ok)
	flags := []string{"--registry", reg.URL(), "--topic", "payments.v1"}
	wantRun(t, 1, []string{"does not exist in the registry", "nothing to diff against"}, append([]string{"schemas", "diff"}, append(flags, ok)...)...)
	wantRun(t, 0, nil, append([]string{"schemas", "register"}, append(flags, v1)...)...)
	wantRun(t, 0, []string{"no structural changes", "passes: NONE, BACKWARD, FORWARD, FULL"}, append([]string{"schemas", "diff"}, append(flags, v1)...)...)
	wantRun(t, 0, []string{"against payments.v1-com.acme.payments.PaymentAuthorized version 1:",
		"+ channel: field channel: union[null,string], default null", "backward (this schema reads data written with version 1): yes",
		"forward (version 1 reads data written with this schema): yes", "passes: NONE, BACKWARD, FORWARD, FULL"},
		append([]string{"schemas", "diff"}, append(flags, ok)...)...)
	wantRun(t, 1, []string{"has no version 7 (it has [1])"}, append([]string{"schemas", "diff", "--version", "7"}, append(flags, ok)...)...)
}

func TestSchemasHelpShowsExamples(t *testing.T) {
	for _, sub := range []string{"check", "register", "diff"} {
		out, _ := wantRun(t, 0, []string{"Examples:", "ordo schemas " + sub, "Exit status: 0 compatible, 1 incompatible"}, "schemas", sub, "--help")
		if !bytes.Contains([]byte(out), []byte("--registry")) {
			t.Errorf("%s --help lacks --registry", sub)
		}
	}
	wantRun(t, 0, []string{"check", "register", "diff"}, "schemas", "--help")
	wantRun(t, 0, []string{"409", "--compatibility"}, "registry", "--help")
}

// TestDevRefusesTwoTypesUnderOneSubject: with topic_name, ordo dev would put
// PaymentAuthorized and PaymentDeclined under payments.v1-value; the
// embedded registry refuses that as a real one does, and dev says why.
func TestDevRefusesTwoTypesUnderOneSubject(t *testing.T) {
	src := filepath.Join("..", "..", "examples", "orders")
	yml, err := os.ReadFile(filepath.Join(src, "ordo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tiers, err := os.ReadFile(filepath.Join(src, "customer-tiers.csv"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if !bytes.Contains(yml, []byte("subject_strategy: topic_record_name")) {
		t.Fatal("examples/orders/ordo.yaml no longer uses topic_record_name: update this test")
	}
	writeFile(t, filepath.Join(dir, "ordo.yaml"), strings.Replace(string(yml), "subject_strategy: topic_record_name", "subject_strategy: topic_name", 1))
	writeFile(t, filepath.Join(dir, "customer-tiers.csv"), string(tiers))
	if err := os.CopyFS(filepath.Join(dir, "schemas"), os.DirFS(filepath.Join(src, "schemas"))); err != nil {
		t.Fatal(err)
	}
	wantRun(t, 1, []string{"under subject payments.v1-value", "incompatible with an earlier schema", "NAME_MISMATCH", "a subject holds one record type",
		"registry.subject_strategy: topic_record_name"},
		"dev", "--config", filepath.Join(dir, "ordo.yaml"), "--events", "10", "--kafka-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0",
		"--admin-addr", "", "--data-dir", filepath.Join(dir, "data"))
}
