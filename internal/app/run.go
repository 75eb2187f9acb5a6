package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/yaml.v3"

	"github.com/ordo-dev/ordo/consumer"
	"github.com/ordo-dev/ordo/internal/config"
	"github.com/ordo-dev/ordo/internal/telemetry"
	"github.com/ordo-dev/ordo/processors"
)

type commonFlags struct {
	config    string
	logFormat string
	logLevel  string
}

func (f *commonFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.config, "config", "c", "", configFlagHelp)
	cmd.Flags().StringVar(&f.logFormat, "log-format", "json", "log format: json or text")
	cmd.Flags().StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

func newRunCmd(o *options) *cobra.Command {
	var f commonFlags
	var create bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run one ordo replica against a Kafka cluster (production)",
		Long: `Run one replica of the pipeline described by --config (without it: the
example config embedded in the binary, with a warning). Start several replicas
with the same kafka.group and distinct replica ids (ORDO_REPLICA_ID or the
hostname) to share the input partitions. SIGTERM or SIGINT finishes or aborts
the open transaction, leaves the group and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(o.stderr, f.logFormat, f.logLevel)
			if err != nil {
				return err
			}
			cfg, err := loadConfig(f.config, os.Environ(), o.processors)
			if err != nil {
				return err
			}
			if f.config == "" {
				log.Warn("no --config: running the embedded example config", "config", embeddedConfig)
			}
			return RunReplica(cmd.Context(), cfg, o.processors, log, create)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&create, "create-topics", false, "create the config's topics: entries that do not exist yet")
	return cmd
}

// RunReplica runs one replica of the pipeline cfg describes until ctx is
// cancelled: what `ordo run` does after loading its config (tracing from the
// OTEL_* environment, metrics and the admin server, schemas, preflight, the
// exactly-once loop). create creates the config's missing topics first.
// hooks are the embedder's own loop hooks (consumer.Hook), called besides
// ordo's metrics.
func RunReplica(ctx context.Context, cfg *config.Config, procs *processors.Registry, log *slog.Logger, create bool, hooks ...consumer.Hook) (err error) {
	// Secrets never reach the logs or the error printed at exit.
	red := cfg.Redactor()
	defer func() { err = redactErr(red, err) }()
	log = redactLogger(log, red)
	tr, err := telemetry.NewTracing(ctx, os.Getenv, "ordo", Version)
	if err != nil {
		return err
	}
	defer shutdownTracing(ctx, tr, log)
	metrics := telemetry.NewMetrics()
	applyMemoryLimit(cfg, log)
	// The admin server comes first: while schemas.subjects wait for
	// the registry, /livez is ok and /readyz says not ready.
	stopAdmin, err := serveAdmin(ctx, cfg.Admin, log, metrics, red)
	if err != nil {
		return err
	}
	defer stopAdmin()
	rs, err := readers(ctx, cfg, log)
	if err != nil {
		return err
	}
	rt, err := build(cfg, rs, procs, log, observe{metrics: metrics, tracing: tr, hooks: hooks})
	if err != nil {
		return err
	}
	defer rt.close()
	if create {
		if err := createTopics(ctx, cfg, log); err != nil {
			return err
		}
	}
	if cfg.State != nil {
		// ordo's own topics: created as they must be (a compacted
		// changelog), checked for co-partitioning.
		if err := ensureStateTopics(ctx, cfg, rt.process); err != nil {
			return err
		}
	}
	if err := preflight(ctx, cfg, log); err != nil {
		return err
	}
	stopPolls, err := startPolls(ctx, cfg, rt, metrics)
	if err != nil {
		return err
	}
	defer stopPolls()
	if tr.Enabled() {
		log.Info("tracing on", "otlp_endpoint", tr.Endpoint, "protocol", tr.Protocol, "parent", cfg.Tracing.Parent)
	}
	log.Info("ordo running", "config", cfg.File, "transactional_id", cfg.TransactionalID(), "group", cfg.Kafka.Group, "inputs", cfg.Inputs)
	describeOutputLimits(ctx, cfg, rt.limits)
	err = rt.run(ctx)
	s := rt.stats.Snapshot()
	log.Info("ordo stopped", "events_in", s.EventsIn, "commands_out", s.CommandsOut, "dead_lettered", s.DeadLettered, "txn_commits", s.TxnCommits, "txn_aborts", s.TxnAborts)
	return err
}

// shutdownTracing flushes the span exporter (bounded: a dead collector must
// not hold up the exit).
func shutdownTracing(ctx context.Context, tr *telemetry.Tracing, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		log.Warn("flushing spans failed", "err", err)
	}
}

// startPolls starts the consumer-lag and registry-reachability polls that
// feed /metrics and /readyz.
func startPolls(ctx context.Context, cfg *config.Config, rt *runtime, m *telemetry.Metrics) (stop func(), err error) {
	kopts, err := clientOpts(cfg)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { m.PollLag(ctx, kadm.NewClient(cl), cfg.Kafka.Group, cfg.Inputs, cfg.Admin.LagInterval.D()) })
	wg.Go(func() {
		m.PollRegistry(ctx, func(ctx context.Context) error { _, err := rt.registry.Client().Subjects(ctx); return err }, 10*time.Second)
	})
	return func() { cancel(); wg.Wait(); cl.Close() }, nil
}

// serveAdmin serves /livez, /readyz and /metrics (and /debug/pprof/ when
// admin.pprof) on admin.listen ("" disables it). m nil: no metrics, always
// ready. red scrubs secrets from the /readyz reasons (they quote errors).
func serveAdmin(ctx context.Context, admin config.Admin, log *slog.Logger, m *telemetry.Metrics, red config.Redactor) (stop func(), err error) {
	stop, _, err = serveAdminAt(ctx, admin, log, m, red)
	return stop, err
}

// serveAdminAt is serveAdmin that also returns the bound address ("" when
// disabled), for admin.listen with port 0.
func serveAdminAt(ctx context.Context, admin config.Admin, log *slog.Logger, m *telemetry.Metrics, red config.Redactor) (stop func(), bound string, err error) {
	addr := admin.Listen
	if addr == "" {
		return func() {}, "", nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) {
		if m != nil {
			if ok, why := m.Health.Live(); !ok {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintln(w, "not live:", why)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if m != nil {
			if ok, why := m.Health.Ready(); !ok {
				w.WriteHeader(http.StatusServiceUnavailable)
				for _, y := range why {
					fmt.Fprintln(w, "not ready:", red.Redact(y))
				}
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	if m != nil {
		mux.Handle("/metrics", m.Handler())
	}
	if admin.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("admin.listen %s: %w (fix: free the port or set admin.listen / ORDO_ADMIN_LISTEN; \"\" disables it)", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server failed", "err", err)
		}
	}()
	log.Info("admin server listening", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, ln.Addr().String(), nil
}

func newConfigCmd(o *options) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Inspect and check configuration files"}
	validate := &cobra.Command{
		Use:   "validate [FILE]",
		Short: "Check a config file (syntax, values, processors) without starting anything; every error, one per line",
		Long: `Check a config file and the ORDO_* environment without connecting to anything:
YAML syntax and types, unknown keys (with did-you-mean), values, ORDO_*
variables, the .avsc files of schemas.files (registry subjects are not
fetched), and every processor's config (including CEL type checks). Every
problem is printed, one per line, as file:line: key: message (fix: ...).
Without FILE it checks the embedded example config.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			path := ""
			if len(args) == 1 {
				path = args[0]
			}
			cfg, err := loadConfig(path, os.Environ(), o.processors)
			if err != nil {
				return err
			}
			defer func() { err = redactErr(cfg.Redactor(), err) }()
			rs, err := checkBuild(cfg, o.processors)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d inputs, %d processors, %d schemas, transactional id %s)\n", configName(path), len(cfg.Inputs), len(cfg.Pipeline), len(rs.byName), cfg.TransactionalID())
			if n := len(cfg.Schemas.Subjects); n > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "note: the %d registry subject(s) of schemas.subjects were not fetched; types they declare were not checked\n", n)
			}
			return nil
		},
	}
	env := &cobra.Command{
		Use:   "env",
		Short: "List the ORDO_* environment variables and the keys they override",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			vars := config.EnvVars()
			names := make([]string, 0, len(vars))
			for n := range vars {
				names = append(names, n)
			}
			slices.Sort(names)
			for _, n := range names {
				fmt.Fprintf(cmd.OutOrStdout(), "%-40s %s\n", n, vars[n])
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%-40s %s\n", "ORDO_KAFKA_TLS", "kafka.tls.enabled (alias)")
			other := config.OtherEnvVars()
			names = names[:0]
			for n := range other {
				names = append(names, n)
			}
			slices.Sort(names)
			fmt.Fprintln(cmd.OutOrStdout(), "\nnot config keys, also accepted (any other ORDO_* variable is an error; ORDO_TEST* is reserved for tests):")
			for _, n := range names {
				fmt.Fprintf(cmd.OutOrStdout(), "%-40s %s\n", n, other[n])
			}
			return nil
		},
	}
	show := &cobra.Command{
		Use:   "show [FILE]",
		Short: "Print the effective config (file, defaults and ORDO_* overrides) with secrets redacted",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := config.DefaultPath
			if len(args) == 1 {
				path = args[0]
			}
			cfg, err := config.Load(path, os.Environ())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "# %s with defaults and ORDO_* overrides; secrets are shown as %s\n", path, config.Redacted)
			enc := yaml.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent(2)
			if err := enc.Encode(cfg.Redacted()); err != nil {
				return fmt.Errorf("config show: %w", err)
			}
			return enc.Close()
		},
	}
	cmd.AddCommand(validate, env, show)
	return cmd
}

// redactLogger wraps log so that no record carries one of cfg's secrets.
func redactLogger(log *slog.Logger, red config.Redactor) *slog.Logger {
	return slog.New(telemetry.NewRedactHandler(log.Handler(), red.Redact))
}

// redactErr scrubs secrets from an error that is about to be printed.
func redactErr(red config.Redactor, err error) error {
	if err == nil {
		return nil
	}
	if s := red.Redact(err.Error()); s != err.Error() {
		return errors.New(s)
	}
	return err
}

// LoadConfig reads and checks the config at path (the embedded example when
// path is empty) with env's ORDO_* overrides; with reg it also builds the
// processors so that every problem of the file is reported at once.
func LoadConfig(path string, env []string, reg *processors.Registry) (*config.Config, error) {
	return loadConfig(path, env, reg)
}

// NewLogger is the logger `ordo run` uses: format "text" or "json", level
// "debug", "info", "warn" or "error".
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	return newLogger(w, format, level)
}

// checkBuild builds cfg's pipeline once without connecting anywhere, so that
// every processor's config is checked. Schema files are checked;
// schemas.subjects are not fetched, so types only they could declare are not
// reported as unknown.
func checkBuild(cfg *config.Config, reg *processors.Registry) (*readerSet, error) {
	rs, err := localReaders(cfg)
	if err != nil {
		return nil, err
	}
	rt, err := build(cfg, rs, reg, slog.New(slog.DiscardHandler), observe{})
	if err != nil {
		return nil, err
	}
	rt.close()
	return rs, nil
}

// Check builds cfg's pipeline with reg's processor types without connecting
// anywhere (what `ordo config validate` does after loading the file).
func Check(cfg *config.Config, reg *processors.Registry) error {
	_, err := checkBuild(cfg, reg)
	return redactErr(cfg.Redactor(), err)
}
