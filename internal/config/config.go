// Package config loads ordo's one YAML file, applies ORDO_* environment
// overrides and validates it at start. Every error names the file, the line,
// the key and a fix, because a config error found at 3 a.m. should not need
// the source code to understand.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ordo-dev/ordo/processors"
)

// DefaultPath is the config used when --config is not given.
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

	// File is the path the config was loaded from ("" for defaults).
	File string `yaml:"-"`
	// lines maps a dotted key path to its line, for validation errors.
	lines map[string]int
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
}

// TopicOp is one entry of `topics:` that ordo creates when missing
// (`ordo dev` always; `ordo run --create-topics`).
type TopicOp struct {
	Partitions int32 `yaml:"partitions"`
}

// PipelineEntry is one processor in `pipeline:`.
type PipelineEntry struct {
	Name   string    `yaml:"name"`
	Type   string    `yaml:"type"`
	Config yaml.Node `yaml:"config"`
}

// Duration is a time.Duration written as "100ms", "45s".
type Duration time.Duration

// UnmarshalYAML parses Go duration strings.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (write e.g. 100ms, 45s, 2m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

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
			MemoryLimitMiB:   192,
			GCPercent:        400,
		},
		Admin:   Admin{Listen: "127.0.0.1:9464", LagInterval: Duration(15 * time.Second)},
		Tracing: Tracing{Parent: "child"},
	}
}

// Load reads path, applies env overrides (ORDO_*) and validates.
func Load(path string, env []string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Key: "(file)", Msg: err.Error(), Fix: "pass an existing file with --config, e.g. " + DefaultPath}
	}
	return Parse(path, data, env)
}

// Parse is Load on bytes; path is used in messages and to resolve relative
// files.
func Parse(path string, data []byte, env []string) (*Config, error) {
	cfg := Defaults()
	cfg.File = path
	cfg.lines = map[string]int{}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(path, err)
	}
	indexLines(&root, "", cfg.lines)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, errEOF) {
		if err.Error() != "EOF" {
			return nil, yamlError(path, err)
		}
	}
	if err := applyEnv(&cfg, env); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

var errEOF = errors.New("EOF")

var yamlLine = regexp.MustCompile(`line (\d+): (.*)`)
var unknownField = regexp.MustCompile(`field (\S+) not found in type config\.(\w+)`)

// yamlError turns yaml.v3's messages into ordo's file:line: key: msg (fix).
func yamlError(path string, err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:\n")
	var errs []error
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "yaml: "))
		if l == "" {
			continue
		}
		e := &Error{File: path, Key: "(yaml)", Msg: l}
		if m := yamlLine.FindStringSubmatch(l); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Msg = m[2]
			if u := unknownField.FindStringSubmatch(m[2]); u != nil {
				block := blockName(u[2])
				e.Key = strings.TrimPrefix(block+"."+u[1], ".")
				e.Msg = "unknown key"
				e.Fix = fmt.Sprintf("remove it or use one of: %s", strings.Join(knownKeys(u[2]), ", "))
				if s := suggest(u[1], knownKeys(u[2])); s != "" {
					e.Fix = fmt.Sprintf("did you mean %q?", s)
				}
			} else {
				e.Fix = "check the value's type against docs/config.md"
			}
		} else {
			e.Fix = "fix the YAML syntax"
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

var blocks = map[string]reflect.Type{
	"Config": reflect.TypeFor[Config](), "Kafka": reflect.TypeFor[Kafka](), "SASL": reflect.TypeFor[SASL](),
	"Registry": reflect.TypeFor[Registry](), "TLS": reflect.TypeFor[TLS](), "RegistryTLS": reflect.TypeFor[RegistryTLS](), "BasicAuth": reflect.TypeFor[BasicAuth](),
	"Processing": reflect.TypeFor[Processing](), "Admin": reflect.TypeFor[Admin](), "Tracing": reflect.TypeFor[Tracing](),
	"PipelineEntry": reflect.TypeFor[PipelineEntry](), "TopicOp": reflect.TypeFor[TopicOp](),
}

func blockName(typ string) string {
	switch typ {
	case "Config":
		return ""
	case "PipelineEntry":
		return "pipeline[]"
	case "TopicOp":
		return "topics.*"
	case "SASL":
		return "kafka.sasl"
	case "TLS":
		return "kafka.tls"
	case "RegistryTLS":
		return "registry.tls"
	case "BasicAuth":
		return "registry.basic_auth"
	}
	return strings.ToLower(typ)
}

func knownKeys(typ string) []string {
	t, ok := blocks[typ]
	if !ok {
		return nil
	}
	var keys []string
	for f := range t.Fields() {
		if k := strings.Split(f.Tag.Get("yaml"), ",")[0]; k != "" && k != "-" {
			keys = append(keys, k)
		}
	}
	return keys
}

// suggest returns the known key closest to k (edit distance ≤ 2).
func suggest(k string, known []string) string {
	best, bestD := "", 3
	for _, c := range known {
		if d := editDistance(k, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// indexLines records the line of every mapping key as a dotted path
// (sequences as [i]).
func indexLines(n *yaml.Node, path string, out map[string]int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			indexLines(c, path, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			out[p] = k.Line
			indexLines(n.Content[i+1], p, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			out[p] = c.Line
			indexLines(c, p, out)
		}
	}
}

// errAt builds an Error for key located via the line index.
func (c *Config) errAt(key, msg, fix string) *Error {
	return &Error{File: c.File, Line: c.lines[key], Key: key, Msg: msg, Fix: fix}
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
	if p.CommitInterval <= 0 || p.CommitInterval >= k.TransactionTimeout {
		add("processing.commit_interval", fmt.Sprintf("%v must be > 0 and below kafka.transaction_timeout %v", p.CommitInterval.D(), k.TransactionTimeout.D()), "the default is 100ms")
	}
	if p.PollRecords < 0 {
		add("processing.poll_records", "negative", "use 0 to pace polls by the commit deadline (the default) or a fixed number of records per poll, e.g. 1000")
	}
	if p.BatchSize < 0 {
		add("processing.batch_size", "negative", "use a positive number of records per transaction, e.g. 10000")
	}
	if p.MemoryLimitMiB < 0 {
		add("processing.memory_limit_mib", "negative", "use 0 for no limit or MiB, e.g. 192")
	}
	if p.GCPercent < -1 {
		add("processing.gc_percent", fmt.Sprintf("%d is not a GC target", p.GCPercent), "use a percentage such as 400, 0 for Go's default (100), or -1 to collect only near memory_limit_mib")
	} else if p.GCPercent == -1 && p.MemoryLimitMiB == 0 {
		add("processing.gc_percent", "-1 (no GC target) needs a memory limit, but processing.memory_limit_mib is 0", "set memory_limit_mib (e.g. 192) or use a percentage such as 400")
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
	switch c.Tracing.Parent {
	case "child", "link":
	default:
		add("tracing.parent", fmt.Sprintf("unknown value %q", c.Tracing.Parent), "use child (the processing span continues the producer's trace) or link (a new trace linked to it)")
	}
	if c.Admin.LagInterval < Duration(time.Second) {
		add("admin.lag_interval", fmt.Sprintf("%v is below 1s", c.Admin.LagInterval.D()), "poll consumer lag at most once a second, e.g. 15s")
	}
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

// TransactionalID is "<transactional_id_prefix>-<replica id>".
func (c *Config) TransactionalID() string {
	return c.Kafka.TransactionalIDPrefix + "-" + c.ReplicaID()
}

// BaseDir is the config file's directory, for relative paths.
func (c *Config) BaseDir() string {
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
		out[i] = processors.Spec{Name: name, Type: e.Type, Config: e.Config, File: c.File}
	}
	return out
}
