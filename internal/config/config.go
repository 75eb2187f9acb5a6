// Package config loads ordo's one YAML file, applies ORDO_* environment
// overrides and validates it at start. Every error names the file, the line,
// the key and a fix, because a config error found at 3 a.m. should not need
// the source code to understand.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ordo-dev/ordo/internal/config/yamlcheck"
	"github.com/ordo-dev/ordo/processors"
)

// DefaultPath is where the example config lives in the repository. Commands
// run without --config use its embedded copy (package examples/orders), so
// they work from any directory.
const DefaultPath = "examples/orders/ordo.yaml"

// Config is the whole file. Field comments are the reference
// (docs/config.md is generated from the same text by hand; keep both true).
type Config struct {
	Kafka      Kafka              `yaml:"kafka"`
	Registry   Registry           `yaml:"registry"`
	Inputs     []string           `yaml:"inputs"`
	DeadLetter string             `yaml:"dead_letter_topic"`
	Processing Processing         `yaml:"processing"`
	Pipeline   []PipelineEntry    `yaml:"pipeline"`
	Admin      Admin              `yaml:"admin"`
	Tracing    Tracing            `yaml:"tracing"`
	Topics     map[string]TopicOp `yaml:"topics"`
	Schemas    Schemas            `yaml:"schemas"`
	// State turns on the stateful stage (process log, store, changelog):
	// see docs/processes.md. Absent: ordo is a stateless router.
	State *State `yaml:"state"`
	// Processes are the process (saga) definitions, decoded and checked by
	// package processes (kept raw here so its errors carry file:line).
	Processes yaml.Node `yaml:"processes"`

	// File is the path the config was loaded from ("" for defaults).
	File string `yaml:"-"`
	// FS, when set, holds the config's relative files (enrich_table tables):
	// the embedded example. nil means the OS filesystem next to File.
	FS fs.FS `yaml:"-"`
	// fsDir is the config's directory inside FS.
	fsDir string
	// lines maps a dotted key path to its line, for validation errors.
	lines map[string]int
	// env maps the keys set by ORDO_* variables to the variable, so that
	// validation errors about them point at the environment, not the file.
	env map[string]string
}

// Kafka is the `kafka:` block.
type Kafka struct {
	Brokers               []string `yaml:"brokers"`
	Group                 string   `yaml:"group"`
	TransactionalIDPrefix string   `yaml:"transactional_id_prefix"`
	ReplicaID             string   `yaml:"replica_id"`
	ClientID              string   `yaml:"client_id"`
	SessionTimeout        Duration `yaml:"session_timeout"`
	TransactionTimeout    Duration `yaml:"transaction_timeout"`
	// ProducerLinger batches each transaction's output; End flushes at once.
	ProducerLinger Duration `yaml:"producer_linger"`
	// ProducerCompression is the codec of produced batches.
	ProducerCompression string `yaml:"producer_compression"`
	SASL                SASL   `yaml:"sasl"`
	// TLS is `tls: true|false` or a mapping (see TLS); security.go.
	TLS TLS `yaml:"tls"`
	// StaticMembership joins the group as a static member (KIP-345) whose
	// instance id is the transactional id: a restarted replica resumes its
	// partitions without a rebalance, but a replica removed for good holds
	// its partitions until session_timeout. Unset: on when the replica id is
	// set explicitly (kafka.replica_id / ORDO_REPLICA_ID), off when it
	// falls back to the hostname (a Deployment's pod names change on every
	// rollout, which would leave departed static members behind).
	StaticMembership *bool `yaml:"static_membership"`
}

// SASL is the `kafka.sasl:` block. Secrets come from the file, ORDO_*
// variables or *_file keys (read at start, relative to the config file).
type SASL struct {
	Mechanism    string `yaml:"mechanism"` // PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	// Token is OAUTHBEARER's static bearer token; TokenFile is re-read on
	// every new connection, so a rotated token file is picked up.
	Token      string            `yaml:"token"`
	TokenFile  string            `yaml:"token_file"`
	Extensions map[string]string `yaml:"extensions"` // OAUTHBEARER SASL extensions
}

// Registry is the `registry:` block. The URL may carry user:password@
// (it is moved to basic auth and redacted everywhere).
type Registry struct {
	URL             string      `yaml:"url"`
	SubjectStrategy string      `yaml:"subject_strategy"`
	Timeout         Duration    `yaml:"timeout"`
	AutoRegister    *bool       `yaml:"auto_register"`
	BasicAuth       BasicAuth   `yaml:"basic_auth"`
	BearerToken     string      `yaml:"bearer_token"`
	BearerTokenFile string      `yaml:"bearer_token_file"`
	TLS             RegistryTLS `yaml:"tls"`
}

// Schemas is the `schemas:` block: where the reader schemas of input
// events and the schemas of commands come from. With neither files nor
// subjects (the block left out), ordo uses its built-in example schemas
// (examples/orders/schemas, embedded in the binary).
type Schemas struct {
	// Files are .avsc files and directories (every *.avsc below them),
	// relative to the config file's directory. A schema's type is its full
	// name (namespace.name), whatever the file is called.
	Files []string `yaml:"files"`
	// Subjects are registry subjects whose latest version is fetched at
	// start (registry faults are retried; an unknown subject is an error).
	Subjects []string `yaml:"subjects"`
}

// Builtin reports whether the block names no schemas, so the built-in
// example schemas are used.
func (s Schemas) Builtin() bool { return len(s.Files) == 0 && len(s.Subjects) == 0 }

// Processing is the `processing:` block.
type Processing struct {
	CommitInterval   Duration `yaml:"commit_interval"`
	BatchSize        int      `yaml:"batch_size"`
	PollRecords      int      `yaml:"poll_records"`
	Workers          int      `yaml:"workers"`
	TransientRetries int      `yaml:"transient_retries"`
	ShutdownTimeout  Duration `yaml:"shutdown_timeout"`
	// KeyParallel processes different keys of a partition concurrently.
	KeyParallel bool `yaml:"key_parallel"`
	KeyLanes    int  `yaml:"key_lanes"`
	// Pipeline overlaps the end of a transaction with processing the next
	// poll (default true; false = the serial loop).
	Pipeline *bool `yaml:"pipeline"`
	// SkipTypes are dropped before decoding by the SkipHeader header value.
	SkipTypes  []string `yaml:"skip_types"`
	SkipHeader string   `yaml:"skip_header"`
	// RateLimits caps events per second per input topic.
	RateLimits map[string]float64 `yaml:"rate_limits"`
	// MemoryLimitMiB is the Go soft memory limit (GOMEMLIMIT wins when set).
	MemoryLimitMiB int `yaml:"memory_limit_mib"`
	// GCPercent is the Go GC target (GOGC wins when set); -1 = collect only
	// near the memory limit, 0 = Go's default (100).
	GCPercent int `yaml:"gc_percent"`
	// StallTimeout turns /readyz false when polled input waits this long
	// without a commit.
	StallTimeout Duration `yaml:"stall_timeout"`
	// LivenessTimeout fails /livez when the loop has not come round for
	// this long (0: 2×transaction_timeout + shutdown_timeout, at least 30s).
	LivenessTimeout Duration `yaml:"liveness_timeout"`
}

// Admin is the `admin:` block.
type Admin struct {
	Listen string `yaml:"listen"`
	// Pprof serves /debug/pprof/ on the admin listener.
	Pprof bool `yaml:"pprof"`
	// LagInterval is how often consumer lag is polled for /metrics.
	LagInterval Duration `yaml:"lag_interval"`
}

// Tracing is the `tracing:` block. Whether and where spans are exported is
// set by the standard OTEL_* environment variables
// (OTEL_EXPORTER_OTLP_ENDPOINT, ...), not here.
type Tracing struct {
	// Parent is "child" (each event's processing span is a child of the
	// producer's span: one trace from producer to downstream consumer) or
	// "link" (a new trace per event, linked to the producer's span).
	Parent string `yaml:"parent"`
	// ClientSpans adds franz-go's own client spans (plugin/kotel): a
	// "<topic> publish" producer span per produced record (a child of the
	// event's span, so downstream consumers continue under it) and a
	// "<topic> receive" span per fetched record. Off by default: one more
	// span per record.
	ClientSpans bool `yaml:"client_spans"`
}

// TopicOp is one entry of `topics:` that ordo creates when missing
// (`ordo dev` always; `ordo run --create-topics`).
type TopicOp struct {
	Partitions int32 `yaml:"partitions"`
}

// State is the `state:` block (docs/processes.md).
type State struct {
	// Dir holds one store directory per process-log partition.
	Dir string `yaml:"dir"`
	// ProcessLog is the internal topic events are re-keyed to by
	// correlation id (default "<group>.process-log").
	ProcessLog string `yaml:"process_log"`
	// Changelog is the compacted topic backing the stores (default
	// "<group>.changelog").
	Changelog string `yaml:"changelog"`
	// Partitions of the process log and the changelog (default 6).
	Partitions int `yaml:"partitions"`
	// DedupeWindow is how long an event id is remembered (default 24h).
	DedupeWindow Duration `yaml:"dedupe_window"`
	// CacheMiB is the store's block cache, shared by all partitions
	// (default 32).
	CacheMiB int `yaml:"cache_mib"`
}

// PipelineEntry is one processor in `pipeline:`.
type PipelineEntry struct {
	Name   string    `yaml:"name"`
	Type   string    `yaml:"type"`
	Config yaml.Node `yaml:"config"`
}

// Duration is a time.Duration written as "100ms", "45s".
type Duration time.Duration

// UnmarshalYAML parses Go duration strings. The error is a *yaml.TypeError
// so that decoding goes on and reports the file's other errors too.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not a duration (write e.g. 100ms, 45s, 2m)", n.Line, n.Value)}}
	}
	*d = Duration(v)
	return nil
}

// YAMLExpect describes a duration for config errors.
func (Duration) YAMLExpect() (what, example string) { return "a duration", "100ms" }

// String is the Go duration syntax, e.g. 45s.
func (d Duration) String() string { return time.Duration(d).String() }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Error is a config error with its location and a fix.
type Error = processors.ConfigError

// Defaults returns the built-in defaults (what an empty file means).
func Defaults() Config {
	t := true
	return Config{
		Kafka: Kafka{
			Brokers:               []string{"127.0.0.1:9092"},
			Group:                 "ordo",
			TransactionalIDPrefix: "ordo",
			ClientID:              "ordo",
			SessionTimeout:        Duration(45 * time.Second),
			TransactionTimeout:    Duration(10 * time.Second),
			ProducerLinger:        Duration(25 * time.Millisecond),
			ProducerCompression:   "snappy",
		},
		Registry: Registry{
			URL:             "http://127.0.0.1:8081",
			SubjectStrategy: "topic_name",
			Timeout:         Duration(5 * time.Second),
			AutoRegister:    &t,
		},
		DeadLetter: "ordo.dead-letter.v1",
		Processing: Processing{
			CommitInterval:   Duration(100 * time.Millisecond),
			BatchSize:        10000,
			TransientRetries: 3,
			ShutdownTimeout:  Duration(10 * time.Second),
			MemoryLimitMiB:   384,
			GCPercent:        400,
			StallTimeout:     Duration(60 * time.Second),
		},
		Admin:   Admin{Listen: "127.0.0.1:9464", LagInterval: Duration(15 * time.Second)},
		Tracing: Tracing{Parent: "child"},
	}
}

// Load reads path, applies env overrides (ORDO_*) and validates. The error
// lists every problem found (see Parse).
func Load(path string, env []string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Key: "(file)", Msg: err.Error(), Fix: "pass an existing file with --config, or leave --config out to use the embedded example (" + DefaultPath + ")"}
	}
	return Parse(path, data, env)
}

// LoadFS is Load for the file name inside fsys (the embedded example):
// messages call it file, and relative paths in it (enrich_table files)
// resolve inside fsys.
func LoadFS(fsys fs.FS, name, file string, env []string) (*Config, error) {
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, &Error{File: file, Key: "(file)", Msg: err.Error(), Fix: "the embedded config is missing; rebuild ordo"}
	}
	cfg, err := Parse(file, data, env)
	if cfg != nil {
		cfg.FS, cfg.fsDir = fsys, path.Dir(name)
	}
	return cfg, err
}

// Parse is Load on bytes; path is used in messages and to resolve relative
// files.
//
// It reports every problem of one load in one Errors value, sorted by line:
// YAML type errors and unknown keys at every level (with the full key, the
// expected type or the valid keys), ORDO_* variables (bad values, unknown
// names) and Validate's checks. Only a YAML syntax error stops it early.
// When the file parsed, the returned *Config is non-nil even with errors, so
// that a caller can check what depends on it (the processors, see
// processors.Registry.Build) and report everything at once; it must not be
// run.
func Parse(path string, data []byte, env []string) (*Config, error) {
	cfg := Defaults()
	cfg.File = path
	cfg.lines = map[string]int{}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, syntaxError(path, err)
	}
	yamlcheck.IndexLines(&root, "", func(key string, line int) { cfg.lines[key] = line })
	var errs []*Error
	for _, is := range yamlcheck.Decode(&root, &cfg, "") {
		errs = append(errs, &Error{File: path, Line: is.Line, Key: is.Key, Msg: is.Msg, Fix: is.Fix})
	}
	// A key whose value did not decode keeps its default (or zero); checks
	// of that value would only repeat the error.
	undecoded := make([]string, len(errs))
	for i, e := range errs {
		undecoded[i] = e.Key
	}
	errs = append(errs, applyEnv(&cfg, env)...)
	for _, e := range flatten(cfg.Validate()) {
		if ce, ok := e.(*Error); ok && slices.ContainsFunc(undecoded, func(k string) bool { return under(ce.Key, k) }) {
			continue
		}
		errs = append(errs, asConfigError(path, e))
	}
	if len(errs) > 0 {
		return &cfg, sortErrors(errs)
	}
	return &cfg, nil
}

// under reports whether key is k or below it (k.x, k[0]); everything is
// below the top level.
func under(key, k string) bool {
	return k == yamlcheck.TopLevel || key == k || strings.HasPrefix(key, k+".") || strings.HasPrefix(key, k+"[")
}

// syntaxError is a YAML syntax error: yaml.v3 stops at the first, and no key
// is known yet.
func syntaxError(path string, err error) error {
	msg := strings.TrimSpace(strings.TrimPrefix(err.Error(), "yaml: "))
	// yaml.v3 gives the line where the construct that failed began, which
	// can be a line early for unclosed brackets and bad indentation.
	e := &Error{File: path, Key: "(syntax)", Msg: msg, Fix: "fix the YAML at or just after this line; quote values that contain `: `, `{` or start with `*`, `&`, `!`, `%` or `@`"}
	var line int
	if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
		e.Line = line
		e.Msg = strings.TrimSpace(msg[strings.IndexByte(msg, ':')+1:])
	}
	return e
}

// Errors is every problem of one load, sorted by line. It prints one error
// per line.
type Errors []*Error

func (es Errors) Error() string {
	if len(es) == 1 {
		return es[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d config errors:", len(es))
	for _, e := range es {
		b.WriteString("\n  ")
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Join merges config errors from several sources (Load, processor builds)
// into one Errors, sorted by line, without repeats. Errors that are not
// config errors are kept, ahead of the list. nil when all are nil.
func Join(errs ...error) error {
	var list []*Error
	var other []error
	for _, err := range errs {
		for _, e := range flatten(err) {
			if ce, ok := e.(*Error); ok {
				list = append(list, ce)
			} else {
				other = append(other, e)
			}
		}
	}
	if len(list) == 0 {
		return errors.Join(other...)
	}
	sorted := sortErrors(list)
	if len(other) == 0 {
		return sorted
	}
	return errors.Join(append(other, sorted)...)
}

// flatten unpacks joined errors (errors.Join, Errors) into their parts;
// other wrapped errors stay whole.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if ce, ok := err.(*Error); ok {
		return []error{ce}
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// asConfigError keeps a config error; anything else (a bug) becomes one
// without a line rather than being lost.
func asConfigError(file string, err error) *Error {
	var ce *Error
	if errors.As(err, &ce) {
		return ce
	}
	return &Error{File: file, Key: "(config)", Msg: err.Error()}
}

// sortErrors orders errors by file and line (those without a line, e.g.
// from the environment, last) and drops exact repeats.
func sortErrors(errs []*Error) Errors {
	out := slices.Clone(errs)
	slices.SortStableFunc(out, func(a, b *Error) int {
		if (a.Line == 0) != (b.Line == 0) {
			if a.Line == 0 {
				return 1
			}
			return -1
		}
		if c := strings.Compare(a.File, b.File); c != 0 {
			return c
		}
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return strings.Compare(a.Key, b.Key)
	})
	return slices.CompactFunc(out, func(a, b *Error) bool { return *a == *b })
}

// errAt builds an Error for key located via the line index, or at its
// ORDO_* variable when the environment set it.
func (c *Config) errAt(key, msg, fix string) *Error {
	for k := key; k != ""; k = parentKey(k) {
		if name, ok := c.env[k]; ok {
			return &Error{File: "environment", Key: name + " (" + key + ")", Msg: msg, Fix: fix}
		}
	}
	line, k := 0, key
	for ; line == 0 && k != ""; k = parentKey(k) {
		line = c.lines[k] // a missing key: its block's line is the next best place
	}
	return &Error{File: c.File, Line: line, Key: key, Msg: msg, Fix: fix}
}

// ErrorAt is a config error about key (e.g. "schemas.files[1]") at its
// line, or at its ORDO_* variable when the environment set it: for checks
// made outside this package (schema files, processors).
func (c *Config) ErrorAt(key, msg, fix string) *Error { return c.errAt(key, msg, fix) }

// parentKey is the key one level up: kafka.brokers[0] → kafka.brokers →
// kafka → "".
func parentKey(k string) string {
	if i := strings.LastIndexAny(k, ".["); i >= 0 {
		return k[:i]
	}
	return ""
}

// Validate checks values that YAML types cannot.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, msg, fix string) { errs = append(errs, c.errAt(key, msg, fix)) }
	k := c.Kafka
	if len(k.Brokers) == 0 {
		add("kafka.brokers", "no brokers", "list at least one host:port, e.g. [127.0.0.1:9092], or set ORDO_KAFKA_BROKERS")
	}
	for i, b := range k.Brokers {
		if _, port, ok := strings.Cut(b, ":"); !ok || port == "" {
			add(fmt.Sprintf("kafka.brokers[%d]", i), fmt.Sprintf("%q has no port", b), "write host:port, e.g. 127.0.0.1:9092")
		}
	}
	if k.Group == "" {
		add("kafka.group", "empty consumer group", "set a group shared by all replicas, e.g. ordo-orders")
	}
	if k.TransactionalIDPrefix == "" {
		add("kafka.transactional_id_prefix", "empty", "set a prefix unique to this pipeline, e.g. ordo-orders")
	}
	if k.TransactionTimeout >= k.SessionTimeout {
		add("kafka.transaction_timeout", fmt.Sprintf("%v is not below session_timeout %v", k.TransactionTimeout.D(), k.SessionTimeout.D()),
			"a stalled replica's transaction must time out before its partitions move: lower transaction_timeout (e.g. 10s) or raise session_timeout")
	}
	errs = append(errs, c.validateSecurity()...)
	switch k.ProducerCompression {
	case "none", "snappy", "lz4", "zstd", "gzip":
	default:
		add("kafka.producer_compression", fmt.Sprintf("unknown codec %q", k.ProducerCompression), "use none, snappy, lz4, zstd or gzip")
	}
	switch c.Registry.SubjectStrategy {
	case "topic_name", "record_name", "topic_record_name":
	default:
		add("registry.subject_strategy", fmt.Sprintf("unknown strategy %q", c.Registry.SubjectStrategy), "use topic_name, record_name or topic_record_name")
	}
	if len(c.Inputs) == 0 {
		add("inputs", "no input topics", "list the topics to consume, e.g. [checkout.orders.v1]")
	}
	if c.DeadLetter == "" {
		add("dead_letter_topic", "empty", "name the dead-letter topic, e.g. ordo.dead-letter.v1")
	} else if slices.Contains(c.Inputs, c.DeadLetter) {
		add("dead_letter_topic", "is also an input", "dead letters must not be consumed again by the same pipeline; use another topic")
	}
	p := c.Processing
	if p.CommitInterval <= 0 || p.CommitInterval >= k.TransactionTimeout/2 {
		add("processing.commit_interval", fmt.Sprintf("%v must be > 0 and below half of kafka.transaction_timeout %v (processing is cut off there)", p.CommitInterval.D(), k.TransactionTimeout.D()), "the default is 100ms")
	}
	if p.PollRecords < 0 {
		add("processing.poll_records", "negative", "use 0 to pace polls by the commit deadline (the default) or a fixed number of records per poll, e.g. 1000")
	}
	if p.BatchSize < 0 {
		add("processing.batch_size", "negative", "use a positive number of records per transaction, e.g. 10000")
	}
	if p.MemoryLimitMiB < 0 {
		add("processing.memory_limit_mib", "negative", "use 0 for no limit or MiB, e.g. 384")
	}
	if p.GCPercent < -1 {
		add("processing.gc_percent", fmt.Sprintf("%d is not a GC target", p.GCPercent), "use a percentage such as 400, 0 for Go's default (100), or -1 to collect only near memory_limit_mib")
	} else if p.GCPercent == -1 && p.MemoryLimitMiB == 0 {
		add("processing.gc_percent", "-1 (no GC target) needs a memory limit, but processing.memory_limit_mib is 0", "set memory_limit_mib (e.g. 384) or use a percentage such as 400")
	}
	if p.StallTimeout < Duration(time.Second) {
		add("processing.stall_timeout", fmt.Sprintf("%v is below 1s", p.StallTimeout.D()), "readiness should tolerate a few transaction rounds, e.g. 60s")
	}
	if p.LivenessTimeout != 0 && p.LivenessTimeout <= k.TransactionTimeout {
		add("processing.liveness_timeout", fmt.Sprintf("%v is not above kafka.transaction_timeout %v", p.LivenessTimeout.D(), k.TransactionTimeout.D()),
			"a healthy loop can spend up to a transaction timeout in one End; use 0 for the default or e.g. 60s")
	}
	if p.KeyLanes < 0 {
		add("processing.key_lanes", "negative", "use 0 for the default (16) or a positive number")
	}
	for topic, r := range p.RateLimits {
		if !slices.Contains(c.Inputs, topic) {
			add("processing.rate_limits."+topic, "is not an input topic", "rate limits apply to topics listed in inputs")
		}
		if r <= 0 {
			add("processing.rate_limits."+topic, fmt.Sprintf("%v is not a positive rate", r), "events per second, e.g. 500")
		}
	}
	if p.Workers < 0 {
		add("processing.workers", "negative", "use 0 for the default (2×CPUs) or a positive number")
	}
	if c.Processes.Kind != 0 && c.State == nil {
		add("processes", "process definitions need the stateful stage, but there is no state: block", "add `state: {}` (defaults: docs/processes.md) or remove processes:")
	}
	if st := c.State; st != nil {
		if st.Partitions < 0 {
			add("state.partitions", "negative", "use 0 for the default (6) or the process log's partition count")
		}
		if st.DedupeWindow < 0 {
			add("state.dedupe_window", "negative", "use 0 for the default (24h) or a duration such as 1h")
		}
		if st.CacheMiB < 0 {
			add("state.cache_mib", "negative", "use 0 for the default (32) or MiB, e.g. 64")
		}
		if st.ProcessLog != "" && st.ProcessLog == st.Changelog {
			add("state.changelog", "is the process log topic", "use two different topics (defaults <group>.process-log and <group>.changelog)")
		}
		for _, in := range c.Inputs {
			if in == c.StateSettings().ProcessLog || in == c.StateSettings().Changelog {
				add("inputs", fmt.Sprintf("%s is ordo's internal state topic", in), "list only upstream topics in inputs; ordo reads the process log itself")
			}
		}
	}
	switch c.Tracing.Parent {
	case "child", "link":
	default:
		add("tracing.parent", fmt.Sprintf("unknown value %q", c.Tracing.Parent), "use child (the processing span continues the producer's trace) or link (a new trace linked to it)")
	}
	if c.Admin.LagInterval < Duration(time.Second) {
		add("admin.lag_interval", fmt.Sprintf("%v is below 1s", c.Admin.LagInterval.D()), "poll consumer lag at most once a second, e.g. 15s")
	}
	c.validateSchemas(add)
	if len(c.Pipeline) == 0 {
		add("pipeline", "no processors", "add at least an orchestrate processor; see examples/orders/ordo.yaml")
	}
	for i, e := range c.Pipeline {
		if e.Type == "" {
			add(fmt.Sprintf("pipeline[%d]", i), "no type", "set type: validate, enrich_table, enrich_http, orchestrate or a custom type")
		}
	}
	return errors.Join(errs...)
}

// validateSchemas checks the `schemas:` block's lists; the files and
// subjects themselves are read when ordo starts (internal/app).
func (c *Config) validateSchemas(add func(key, msg, fix string)) {
	if _, set := c.lines["schemas"]; set && c.Schemas.Builtin() {
		// At the list key when there is one, so that a list that did not
		// decode is reported once (by its type error); a block with only
		// unknown keys is reported by those.
		key, other := "schemas", false
		for k := range c.lines {
			other = other || strings.HasPrefix(k, "schemas.")
		}
		for _, k := range []string{"schemas.subjects", "schemas.files"} {
			if _, ok := c.lines[k]; ok {
				key = k
			}
		}
		if key != "schemas" || !other {
			add(key, "names no files or subjects", "list .avsc files or directories under schemas.files (e.g. [schemas/]) or registry subjects under schemas.subjects; or remove the block to use the built-in example schemas")
		}
	}
	lists := []struct {
		key, what, fix string
		list           []string
	}{
		{"schemas.files", "path", "write an .avsc file or a directory, relative to the config file, e.g. schemas/", c.Schemas.Files},
		{"schemas.subjects", "subject", "write a registry subject, e.g. payments.v1-value", c.Schemas.Subjects},
	}
	for _, l := range lists {
		first := map[string]int{}
		for i, v := range l.list {
			key := fmt.Sprintf("%s[%d]", l.key, i)
			if strings.TrimSpace(v) == "" {
				add(key, "empty "+l.what, l.fix)
				continue
			}
			if j, dup := first[v]; dup {
				add(key, fmt.Sprintf("%q is listed twice (also %s[%d])", v, l.key, j), "remove one of the two entries")
				continue
			}
			first[v] = i
		}
	}
}

// ReplicaID is kafka.replica_id, else $ORDO_REPLICA_ID, else the hostname.
// In Kubernetes run ordo as a StatefulSet: the pod name (the hostname) is
// unique per live replica and stable across restarts, which is exactly what a
// transactional id needs.
func (c *Config) ReplicaID() string {
	if c.Kafka.ReplicaID != "" {
		return c.Kafka.ReplicaID
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "0"
}

// StaticMembership is kafka.static_membership, or, when unset, whether the
// replica id was set explicitly (a hostname fallback may change on every
// rollout, which would leave departed static members behind).
func (c *Config) StaticMembership() bool {
	if c.Kafka.StaticMembership != nil {
		return *c.Kafka.StaticMembership
	}
	return c.Kafka.ReplicaID != ""
}

// StateSettings is the state: block with its defaults filled in (zero
// value when there is no state: block).
func (c *Config) StateSettings() State {
	if c.State == nil {
		return State{}
	}
	st := *c.State
	if st.ProcessLog == "" {
		st.ProcessLog = c.Kafka.Group + ".process-log"
	}
	if st.Changelog == "" {
		st.Changelog = c.Kafka.Group + ".changelog"
	}
	if st.Partitions == 0 {
		st.Partitions = 6
	}
	if st.DedupeWindow == 0 {
		st.DedupeWindow = Duration(24 * time.Hour)
	}
	if st.CacheMiB == 0 {
		st.CacheMiB = 32
	}
	if st.Dir == "" {
		// One directory per replica: replicas on one machine must not
		// share stores.
		base := os.Getenv("XDG_STATE_HOME")
		if base == "" {
			if home, err := os.UserHomeDir(); err == nil {
				base = filepath.Join(home, ".local", "state")
			} else {
				base = os.TempDir()
			}
		}
		st.Dir = filepath.Join(base, "ordo", c.TransactionalID())
	} else if !filepath.IsAbs(st.Dir) && c.File != "" && c.FS == nil {
		st.Dir = filepath.Join(filepath.Dir(c.File), st.Dir)
	}
	return st
}

// TransactionalID is "<transactional_id_prefix>-<replica id>".
func (c *Config) TransactionalID() string {
	return c.Kafka.TransactionalIDPrefix + "-" + c.ReplicaID()
}

// BaseDir is the config file's directory, for relative paths (a directory
// in FS when FS is set).
func (c *Config) BaseDir() string {
	if c.FS != nil {
		return c.fsDir
	}
	if c.File == "" {
		return "."
	}
	return filepath.Dir(c.File)
}

// Specs turns `pipeline:` into processor specs.
func (c *Config) Specs() []processors.Spec {
	out := make([]processors.Spec, len(c.Pipeline))
	for i, e := range c.Pipeline {
		name := e.Name
		if name == "" {
			name = e.Type
		}
		key := fmt.Sprintf("pipeline[%d]", i)
		line := c.lines[key+".type"]
		if line == 0 {
			line = c.lines[key]
		}
		out[i] = processors.Spec{Name: name, Type: e.Type, Config: e.Config, File: c.File, Key: key, Line: line}
	}
	return out
}
