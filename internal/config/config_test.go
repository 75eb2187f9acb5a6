package config

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ordo-dev/ordo/processors"
)

const minimal = `
kafka:
  brokers: [127.0.0.1:9092]
inputs: [in]
pipeline:
  - type: orchestrate
`

func TestDefaultConfigLoads(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", DefaultPath), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Processing.CommitInterval.D() != 100*time.Millisecond || len(cfg.Inputs) != 3 || len(cfg.Pipeline) == 0 {
		t.Fatalf("unexpected default config: %+v", cfg)
	}
}

// errorsOf returns the *Error values of err (an Errors list or one error).
func errorsOf(t *testing.T, err error) []*Error {
	t.Helper()
	var list Errors
	if errors.As(err, &list) {
		return list
	}
	var one *Error
	if errors.As(err, &one) {
		return []*Error{one}
	}
	t.Fatalf("error %T %v holds no config error", err, err)
	return nil
}

// errorFor returns the only error about key; it fails when there is none
// or more than one.
func errorFor(t *testing.T, err error, key string) *Error {
	t.Helper()
	var found []*Error
	for _, e := range errorsOf(t, err) {
		if e.Key == key {
			found = append(found, e)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one error for %q, got %d in:\n%v", key, len(found), err)
	}
	return found[0]
}

func TestErrorsCarryFileLineKeyAndFix(t *testing.T) {
	cases := []struct {
		name, yaml    string
		env           []string
		file          string
		line          int
		key, msg, fix string
	}{
		// unknown keys, at every level
		{"unknown key with suggestion", "kafka:\n  brokres: [a:1]\n", nil, "", 2, "kafka.brokres", "unknown key", `did you mean "brokers"? Valid keys: brokers, group,`},
		{"unknown top-level key", minimal + "inptus: [a]\n", nil, "", 7, "inptus", "unknown key", `did you mean "inputs"?`},
		{"unknown nested key", "inputs: [in]\npipeline: [{type: orchestrate}]\nkafka:\n  sasl:\n    mechansim: PLAIN\n", nil, "", 5, "kafka.sasl.mechansim", "unknown key", `did you mean "mechanism"?`},
		{"unknown pipeline entry key", "inputs: [in]\npipeline:\n  - type: orchestrate\n    confg: {}\n", nil, "", 4, "pipeline[0].confg", "unknown key", `did you mean "config"? Valid keys: name, type, config`},
		{"unknown key without suggestion", minimal + "processing:\n  turbo: true\n", nil, "", 8, "processing.turbo", "unknown key", "remove it; valid keys: commit_interval, batch_size"},
		// types
		{"integer", minimal + "processing:\n  batch_size: lots\n", nil, "", 8, "processing.batch_size", `expected an integer, got "lots"`, "write an integer, e.g. batch_size: 10000"},
		{"integer in a flow mapping", minimal + "processing: {batch_size: \"lots\"}\n", nil, "", 7, "processing.batch_size", `expected an integer, got "lots"`, "batch_size: 10000"},
		{"duration", "kafka:\n  session_timeout: soon\n", nil, "", 2, "kafka.session_timeout", `expected a duration, got "soon"`, "write a duration, e.g. session_timeout: 45s"},
		{"bool", "inputs: [in]\npipeline: [{type: orchestrate}]\nkafka:\n  tls: maybe\n", nil, "", 4, "kafka.tls", "neither true/false nor a mapping", ""},
		{"list", "kafka:\n  brokers: [a:1]\ninputs: {a: 1}\npipeline: [{type: orchestrate}]\n", nil, "", 3, "inputs", "expected a list, got a mapping", "write a list"},
		{"map value", "inputs: [in]\npipeline: [{type: orchestrate}]\nprocessing:\n  rate_limits:\n    in: fast\n", nil, "", 5, "processing.rate_limits.in", `expected a number, got "fast"`, "write a number"},
		{"block given a scalar", minimal + "admin: on\n", nil, "", 7, "admin", "expected a mapping", "listen, pprof, lag_interval"},
		{"not a mapping", "- kafka\n- inputs\n", nil, "", 1, "(top level)", "expected a mapping, got a list", "kafka, registry, inputs"},
		{"duplicate key", minimal + "dead_letter_topic: a\ndead_letter_topic: b\n", nil, "", 8, "dead_letter_topic", "duplicate key (first at line 7)", "remove one"},
		{"syntax", minimal + "processing:\n  batch_size: 1: 2\n", nil, "", 8, "(syntax)", "mapping values are not allowed", "fix the YAML"},
		{"duplicate block", minimal + "kafka:\n  group: g\n", nil, "", 7, "kafka", "duplicate key (first at line 2)", "remove one"},
		// values (Validate)
		{"bad strategy", minimal + "registry:\n  subject_strategy: by_magic\n", nil, "", 8, "registry.subject_strategy", "unknown strategy", "topic_name"},
		{"dlq is input", minimal + "dead_letter_topic: in\n", nil, "", 7, "dead_letter_topic", "also an input", "another topic"},
		{"compression", "kafka:\n  producer_compression: brotli\n", nil, "", 2, "kafka.producer_compression", "unknown codec", "zstd"},
		{"gc target", minimal + "processing:\n  gc_percent: -5\n", nil, "", 8, "processing.gc_percent", "not a GC target", "400"},
		{"gc off without limit", minimal + "processing:\n  gc_percent: -1\n  memory_limit_mib: 0\n", nil, "", 8, "processing.gc_percent", "needs a memory limit", "memory_limit_mib"},
		{"broker without port", "kafka:\n  brokers: [localhost]\ninputs: [in]\npipeline: [{type: orchestrate}]\n", nil, "", 2, "kafka.brokers[0]", "no port", "host:port"},
		{"no type", "inputs: [in]\npipeline:\n  - name: x\n", nil, "", 3, "pipeline[0]", "no type", "orchestrate"},
		// schemas:
		{"schemas block naming nothing", minimal + "schemas: {}\n", nil, "", 7, "schemas", "names no files or subjects", "remove the block to use the built-in example schemas"},
		{"schemas empty path", minimal + "schemas:\n  files: [a/, \"\"]\n", nil, "", 8, "schemas.files[1]", "empty path", "relative to the config file"},
		{"schemas path twice", minimal + "schemas:\n  files:\n    - a/\n    - b.avsc\n    - a/\n", nil, "", 11, "schemas.files[2]", `"a/" is listed twice (also schemas.files[0])`, "remove one"},
		{"schemas subject twice", minimal + "schemas:\n  subjects: [x-value, x-value]\n", nil, "", 8, "schemas.subjects[1]", "listed twice", "remove one"},
		{"schemas empty list", minimal + "schemas:\n  files: []\n", nil, "", 8, "schemas.files", "names no files or subjects", "remove the block"},
		{"schemas files a scalar", minimal + "schemas:\n  files: schemas/\n", nil, "", 8, "schemas.files", "expected a list", "write a list"},
		{"schemas unknown key", minimal + "schemas:\n  file: [a/]\n", nil, "", 8, "schemas.file", "unknown key", `did you mean "files"?`},
		// a value from the environment is reported at the variable
		{"value from env", minimal, []string{"ORDO_KAFKA_BROKERS=localhost"}, "environment", 0, "ORDO_KAFKA_BROKERS (kafka.brokers[0])", "no port", "host:port"},
		{"file key checked against an env value", minimal + "dead_letter_topic: dlq\n", []string{"ORDO_INPUTS=dlq"}, "environment", 0, "ORDO_INPUTS (inputs)", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("ordo.yaml", []byte(c.yaml), c.env)
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.HasPrefix(c.name, "schemas") && len(errorsOf(t, err)) != 1 {
				t.Fatalf("want only the error for %s:\n%v", c.key, err)
			}
			if c.name == "file key checked against an env value" {
				// dead_letter_topic is in the file, inputs came from the
				// environment: the error is keyed where it was found.
				e := errorFor(t, err, "dead_letter_topic")
				if e.File != "ordo.yaml" || e.Line != 7 {
					t.Fatalf("got %v", e)
				}
				return
			}
			e := errorFor(t, err, c.key)
			file := c.file
			if file == "" {
				file = "ordo.yaml"
			}
			if e.File != file || e.Line != c.line {
				t.Errorf("at %s:%d, want %s:%d (%v)", e.File, e.Line, file, c.line, e)
			}
			if !strings.Contains(e.Msg, c.msg) {
				t.Errorf("msg %q lacks %q", e.Msg, c.msg)
			}
			if !strings.Contains(e.Fix, c.fix) {
				t.Errorf("fix %q lacks %q", e.Fix, c.fix)
			}
			want := file + ":" + strconv.Itoa(c.line) + ": " + c.key + ": "
			if c.line == 0 {
				want = file + ": " + c.key + ": "
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%q lacks %q", err.Error(), want)
			}
		})
	}
}

// TestFiveMistakesFiveErrors: one load reports every mistake (five in the
// file, one in the environment), one per line, sorted by line, and nothing
// else.
func TestFiveMistakesFiveErrors(t *testing.T) {
	y := `kafka:
  brokers: [127.0.0.1:9092]
  brokres: [127.0.0.1:9093]
  producer_compression: brotli
inputs: [orders]
processing: {batch_size: "lots"}
admin:
  lag_interval: soon
pipeline:
  - type: orchestrate
    confg: {routes: []}
`
	_, err := Parse("bad.yaml", []byte(y), []string{"ORDO_KAFKA_BROKRES=x:1"})
	if err == nil {
		t.Fatal("accepted")
	}
	got := errorsOf(t, err)
	want := []struct {
		line int
		key  string
	}{
		{3, "kafka.brokres"}, {4, "kafka.producer_compression"}, {6, "processing.batch_size"}, {8, "admin.lag_interval"},
		{11, "pipeline[0].confg"}, {0, "ORDO_KAFKA_BROKRES"},
	}
	if len(got) != len(want) {
		t.Fatalf("want %d errors, got %d:\n%v", len(want), len(got), err)
	}
	for i, w := range want {
		if got[i].Line != w.line || got[i].Key != w.key {
			t.Errorf("error %d is %d %q, want %d %q", i, got[i].Line, got[i].Key, w.line, w.key)
		}
	}
	lines := strings.Split(err.Error(), "\n")
	if lines[0] != "6 config errors:" || len(lines) != 7 {
		t.Fatalf("not one error per line:\n%s", err)
	}
	if !strings.HasPrefix(lines[1], "  bad.yaml:3: kafka.brokres: unknown key (fix: did you mean \"brokers\"?") {
		t.Errorf("line 1: %q", lines[1])
	}
	if lines[6] != "  environment: ORDO_KAFKA_BROKRES: unknown variable (did you mean ORDO_KAFKA_BROKERS?) (fix: rename or unset it; `ordo config env` lists the ORDO_* variables ordo reads)" {
		t.Errorf("line 6: %q", lines[6])
	}
}

// TestDuplicateKeyDoesNotStopDecoding: yaml.v3 gives up on a mapping with a
// duplicate key; the rest of the file must still decode and validate, so
// the duplicate is the only error.
func TestDuplicateKeyDoesNotStopDecoding(t *testing.T) {
	_, err := Parse("f.yaml", []byte(minimal+"kafka:\n  group: g\nprocessing:\n  batch_size: -1\n"), nil)
	got := errorsOf(t, err)
	if len(got) != 2 || got[0].Key != "kafka" || got[1].Key != "processing.batch_size" {
		t.Fatalf("want the duplicate and the negative batch size, got:\n%v", err)
	}
}

// TestTopLevelErrorIsTheOnlyOne: when the document is not a mapping, the
// checks of its values would all be noise.
func TestTopLevelErrorIsTheOnlyOne(t *testing.T) {
	_, err := Parse("f.yaml", []byte("- a\n"), nil)
	if got := errorsOf(t, err); len(got) != 1 || got[0].Key != "(top level)" {
		t.Fatalf("got:\n%v", err)
	}
}

// TestParseReturnsConfigWithErrors: a file that parsed comes back with its
// errors, so that the processors can be checked in the same report.
func TestParseReturnsConfigWithErrors(t *testing.T) {
	cfg, err := Parse("f.yaml", []byte(minimal+"processing:\n  batch_size: lots\n"), nil)
	if err == nil || cfg == nil || len(cfg.Pipeline) != 1 || cfg.Processing.BatchSize != 10000 {
		t.Fatalf("cfg %+v, err %v", cfg, err)
	}
	if cfg, err := Parse("f.yaml", []byte("kafka: [\n"), nil); err == nil || cfg != nil {
		t.Fatalf("syntax error: cfg %+v, err %v", cfg, err)
	}
}

// TestProcessorErrorsCarryFileLineAndFullKey builds the pipeline of a file
// whose processors have mistakes: every processor's errors come back, each
// at its line with its full key.
func TestProcessorErrorsCarryFileLineAndFullKey(t *testing.T) {
	y := `inputs: [in]
pipeline:
  - name: rules
    type: validate
    config:
      rules:
        - name: a
          exp: "true"
  - name: tiers
    type: enrich_tabel
    config: {file: t.csv}
  - name: http
    type: enrich_http
    config:
      url: http://tiers.internal/tiers
      key: event.customer_id
      into: tier
  - name: routes
    type: orchestrate
    config:
      source: ordo
      routes: []
      retries: 3
`
	cfg, err := Parse("p.yaml", []byte(y), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = processors.Builtins().Build(cfg.Specs(), processors.Deps{})
	if err == nil {
		t.Fatal("built")
	}
	err = Join(err)
	for _, c := range []struct {
		line          int
		key, msg, fix string
	}{
		{8, "pipeline[0].config.rules[0].exp", "unknown key", `did you mean "expr"?`},
		{10, "pipeline[1].type", `unknown processor type "enrich_tabel"`, "did you mean enrich_table? Registered types: enrich_http, enrich_table, orchestrate, validate"},
		{15, "pipeline[2].config.url", "no {key} placeholder", "{key}"},
		{23, "pipeline[3].config.retries", "unknown key", "valid keys: source, routes"},
	} {
		e := errorFor(t, err, c.key)
		if e.File != "p.yaml" || e.Line != c.line || !strings.Contains(e.Msg, c.msg) || !strings.Contains(e.Fix, c.fix) {
			t.Errorf("got %v, want p.yaml:%d %s: %s (fix: %s)", e, c.line, c.key, c.msg, c.fix)
		}
	}
	if n := len(errorsOf(t, err)); n != 4 {
		t.Errorf("want 4 errors, got %d:\n%v", n, err)
	}
}

func TestTransactionTimeoutMustBeBelowSessionTimeout(t *testing.T) {
	y := "kafka:\n  brokers: [a:1]\n  session_timeout: 10s\n  transaction_timeout: 20s\ninputs: [in]\npipeline: [{type: orchestrate}]\n"
	_, err := Parse("f.yaml", []byte(y), nil)
	if err == nil || !strings.Contains(err.Error(), "f.yaml:4: kafka.transaction_timeout") || !strings.Contains(err.Error(), "fix:") {
		t.Fatalf("got %v", err)
	}
}

func TestEnvOverrides(t *testing.T) {
	cfg, err := Parse("f.yaml", []byte(minimal), []string{
		"ORDO_KAFKA_BROKERS=b1:9092, b2:9092", "ORDO_REPLICA_ID=pod-3", "ORDO_PROCESSING_COMMIT_INTERVAL=250ms",
		"ORDO_KAFKA_GROUP=g2", "ORDO_REGISTRY_AUTO_REGISTER=false", "UNRELATED=1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Kafka.Brokers, ",") != "b1:9092,b2:9092" || cfg.Kafka.Group != "g2" ||
		cfg.Processing.CommitInterval.D() != 250*time.Millisecond || *cfg.Registry.AutoRegister {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
	if got := cfg.TransactionalID(); got != "ordo-pod-3" {
		t.Errorf("transactional id %q, want ordo-pod-3", got)
	}
}

func TestEnvErrors(t *testing.T) {
	cases := []struct {
		env           string
		key, msg, fix string
	}{
		{"ORDO_PROCESSING_BATCH_SIZE=lots", "ORDO_PROCESSING_BATCH_SIZE", `"lots" is not an integer (overrides processing.batch_size)`, "set ORDO_PROCESSING_BATCH_SIZE=10000 or unset it"},
		{"ORDO_KAFKA_SESSION_TIMEOUT=soon", "ORDO_KAFKA_SESSION_TIMEOUT", `"soon" is not a duration`, "ORDO_KAFKA_SESSION_TIMEOUT=45s"},
		{"ORDO_KAFKA_TLS=yes please", "ORDO_KAFKA_TLS_ENABLED", "is not true or false", "ORDO_KAFKA_TLS_ENABLED=true"},
		{"ORDO_KAFKA_BROKRES=a:1", "ORDO_KAFKA_BROKRES", "unknown variable (did you mean ORDO_KAFKA_BROKERS?)", "`ordo config env` lists"},
		{"ORDO_REPLICAID=x", "ORDO_REPLICAID", "unknown variable (did you mean ORDO_REPLICA_ID?)", "rename or unset it"},
		{"ORDO_NOTHING_LIKE_IT=1", "ORDO_NOTHING_LIKE_IT", "unknown variable", "rename or unset it"},
		{"ORDO_PROCESSING_RATE_LIMITS=a:1", "ORDO_PROCESSING_RATE_LIMITS", "cannot be set from the environment (processing.rate_limits is a block or a map)", "set processing.rate_limits in the config file"},
		{"ORDO_KAFKA_SASL=x", "ORDO_KAFKA_SASL", "cannot be set from the environment (kafka.sasl", "config file"},
		{"ORDO_PIPELINE=x", "ORDO_PIPELINE", "cannot be set from the environment (pipeline", "config file"},
	}
	for _, c := range cases {
		t.Run(c.key, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(minimal), []string{c.env})
			if err == nil {
				t.Fatal("accepted")
			}
			e := errorFor(t, err, c.key)
			if e.File != "environment" || e.Line != 0 || !strings.Contains(e.Msg, c.msg) || !strings.Contains(e.Fix, c.fix) {
				t.Errorf("got %v, want msg %q fix %q", e, c.msg, c.fix)
			}
			if c.msg == "unknown variable" && strings.Contains(e.Msg, "did you mean") {
				t.Errorf("suggested something for a name like no other: %v", e)
			}
		})
	}
	// Several bad variables: one error each.
	_, err := Parse("f.yaml", []byte(minimal), []string{"ORDO_PROCESSING_BATCH_SIZE=lots", "ORDO_KAFKA_BROKRES=a:1", "ORDO_ADMIN_PPROF=2"})
	if n := len(errorsOf(t, err)); n != 3 {
		t.Fatalf("want 3 errors, got %d: %v", n, err)
	}
}

// TestOtherEnvVarsAccepted: variables that are not config keys but that
// ordo's scripts and tests export are not errors.
func TestOtherEnvVarsAccepted(t *testing.T) {
	var env []string
	for name := range OtherEnvVars() {
		v := "x"
		if name == "ORDO_KAFKA_TLS" { // an alias of a boolean key
			v = "false"
		}
		env = append(env, name+"="+v)
	}
	env = append(env, "ORDO_TEST_ANYTHING=1", "ORDO_TESTKIT_DOCKER=0")
	if _, err := Parse("f.yaml", []byte(minimal), env); err != nil {
		t.Fatal(err)
	}
}

// TestRepoUsesOnlyKnownEnvVars: every ORDO_* name in the repository's
// scripts, tests, compose and CI files is a config key or an accepted other
// variable, so none of them trips the unknown-variable check. (Markdown and
// this package's tests are skipped: they spell typos on purpose.)
func TestRepoUsesOnlyKnownEnvVars(t *testing.T) {
	root := filepath.Join("..", "..")
	known := EnvVars()
	other := OtherEnvVars()
	name := regexp.MustCompile(`ORDO_[A-Z0-9][A-Z0-9_]*`)
	checked := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".cache", "node_modules", "testdata", ".ordo":
				return filepath.SkipDir
			}
			if rel == filepath.Join("internal", "config") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".md") || (strings.HasPrefix(rel, filepath.Join("internal", "app")) && strings.HasSuffix(p, "_test.go")) {
			return nil
		}
		info, err := d.Info()
		if err != nil || info.Size() > 1<<20 {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil || bytes.IndexByte(data, 0) >= 0 {
			return err
		}
		for _, m := range name.FindAllString(string(data), -1) {
			m = strings.TrimRight(m, "_")
			checked++
			if known[m] == "" && other[m] == "" && !strings.HasPrefix(m, reservedEnvPrefix) {
				t.Errorf("%s uses %s, which ordo would reject as unknown: add it to OtherEnvVars (and docs/config.md) or fix the name", rel, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 20 {
		t.Fatalf("found only %d ORDO_* uses; is the walk looking at the repository?", checked)
	}
}
