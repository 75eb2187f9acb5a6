package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/ordo-dev/ordo/internal/config"
)

type commonFlags struct {
	config    string
	logFormat string
	logLevel  string
}

func (f *commonFlags) register(cmd *cobra.Command, defConfig string) {
	cmd.Flags().StringVarP(&f.config, "config", "c", defConfig, "YAML config file; ORDO_* environment variables override its keys")
	cmd.Flags().StringVar(&f.logFormat, "log-format", "json", "log format: json or text")
	cmd.Flags().StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

func newRunCmd(o *options) *cobra.Command {
	var f commonFlags
	var create bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run one ordo replica against a Kafka cluster (production)",
		Long: `Run one replica of the pipeline described by --config. Start several replicas
with the same kafka.group and distinct replica ids (ORDO_REPLICA_ID or the
hostname) to share the input partitions. SIGTERM or SIGINT finishes or aborts
the open transaction, leaves the group and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(o.stderr, f.logFormat, f.logLevel)
			if err != nil {
				return err
			}
			cfg, err := config.Load(f.config, os.Environ())
			if err != nil {
				return err
			}
			rt, err := build(cfg, o.processors, log, nil)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if create {
				if err := createTopics(ctx, cfg, log); err != nil {
					return err
				}
			}
			stopAdmin, err := serveAdmin(ctx, cfg.Admin.Listen, log)
			if err != nil {
				return err
			}
			defer stopAdmin()
			log.Info("ordo running", "config", cfg.File, "transactional_id", cfg.TransactionalID(), "group", cfg.Kafka.Group, "inputs", cfg.Inputs)
			err = rt.pipeline.Run(ctx)
			s := rt.stats.Snapshot()
			log.Info("ordo stopped", "events_in", s.EventsIn, "commands_out", s.CommandsOut, "dead_lettered", s.DeadLettered, "txn_commits", s.TxnCommits, "txn_aborts", s.TxnAborts)
			return err
		},
	}
	f.register(cmd, config.DefaultPath)
	cmd.Flags().BoolVar(&create, "create-topics", false, "create the config's topics: entries that do not exist yet")
	return cmd
}

// serveAdmin serves /livez and /readyz on addr ("" disables it). The
// observability work adds /metrics and readiness details here.
func serveAdmin(ctx context.Context, addr string, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin.listen %s: %w (fix: free the port or set admin.listen / ORDO_ADMIN_LISTEN; \"\" disables it)", addr, err)
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
	}, nil
}

func newConfigCmd(o *options) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Inspect and check configuration files"}
	validate := &cobra.Command{
		Use:   "validate [FILE]",
		Short: "Check a config file (syntax, values, processors) without starting anything",
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
			log := slog.New(slog.DiscardHandler)
			if _, err := build(cfg, o.processors, log, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d inputs, %d processors, transactional id %s)\n", path, len(cfg.Inputs), len(cfg.Pipeline), cfg.TransactionalID())
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
			fmt.Fprintf(cmd.OutOrStdout(), "%-40s %s\n", "ORDO_REPLICA_ID", "kafka.replica_id (alias)")
			return nil
		},
	}
	cmd.AddCommand(validate, env)
	return cmd
}
