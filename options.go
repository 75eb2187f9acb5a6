package ordo

import (
	"io"
	"log/slog"

	"github.com/ordo-dev/ordo/consumer"
	"github.com/ordo-dev/ordo/processors"
)

// Option configures Main or New. Options are functional, as in franz-go's
// kgo: each says what it costs.
type Option func(*options)

type options struct {
	processors   *processors.Registry
	stdout       io.Writer
	stderr       io.Writer
	logger       *slog.Logger
	createTopics bool
	hooks        []consumer.Hook
}

func collect(opts []Option) *options {
	o := &options{}
	for _, f := range opts {
		f(o)
	}
	if o.processors == nil {
		o.processors = processors.Builtins()
	}
	return o
}

func (o *options) stdoutOr(w io.Writer) io.Writer {
	if o.stdout != nil {
		return o.stdout
	}
	return w
}

func (o *options) stderrOr(w io.Writer) io.Writer {
	if o.stderr != nil {
		return o.stderr
	}
	return w
}

// WithProcessors sets the processor types a config may name. Start from
// processors.Builtins() to keep the built-in types (validate, enrich_table,
// enrich_http, orchestrate); without this option only the built-ins exist.
// A type registered here is checked at New like a built-in: an unknown type
// or a bad config block fails with its line.
func WithProcessors(r *processors.Registry) Option {
	return func(o *options) { o.processors = r }
}

// WithOutput redirects what Main prints (tests, or a supervisor that
// captures output). Default: the process's stdout and stderr.
func WithOutput(stdout, stderr io.Writer) Option {
	return func(o *options) { o.stdout, o.stderr = stdout, stderr }
}

// WithLogger sets the logger of a Replica. Default: JSON at info level on
// stderr, as `ordo run --log-format json`. Debug level logs every
// transaction: use it to diagnose, not in steady production.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithCreateTopics makes Run create the config's `topics:` entries that do
// not exist yet, as `ordo run --create-topics`. Off by default: production
// topics are usually owned by an infrastructure team and created with
// reviewed settings; it needs the CREATE ACL on the cluster or the topics.
func WithCreateTopics(create bool) Option {
	return func(o *options) { o.createTopics = create }
}

// WithHooks adds loop hooks to a Replica: values implementing any of
// consumer's Hook* interfaces (OnTxnCommitted, OnDeadLettered, ...), called
// besides ordo's own metrics. They run on the loop's path, from several
// goroutines: count or hand off, never block. A value implementing none is
// an error at New. Main ignores them (the command line has its own metrics).
func WithHooks(hooks ...consumer.Hook) Option {
	return func(o *options) { o.hooks = append(o.hooks, hooks...) }
}
