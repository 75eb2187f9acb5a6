// Package app is ordo's command line: `ordo run`, `ordo dev`, `ordo produce`,
// `ordo config validate`, `ordo version`, ... The public entry points are in
// the root package (ordo.Main, ordo.New): embed ordo through those; this
// package is internal so that its flags and wiring can change freely.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ordo-dev/ordo/internal/telemetry"
	"github.com/ordo-dev/ordo/processors"
)

// Version is set at build time with -ldflags "-X github.com/ordo-dev/ordo/internal/app.Version=...".
var Version = "dev"

// Option customizes the binary.
type Option func(*options)

type options struct {
	processors *processors.Registry
	stdout     io.Writer
	stderr     io.Writer
}

// WithProcessors replaces the processor registry (start from
// processors.Builtins() to keep the built-in types).
func WithProcessors(r *processors.Registry) Option { return func(o *options) { o.processors = r } }

// WithOutput redirects stdout and stderr (tests).
func WithOutput(stdout, stderr io.Writer) Option {
	return func(o *options) { o.stdout, o.stderr = stdout, stderr }
}

// Main runs the command line and returns the process exit code.
func Main(args []string, opts ...Option) int {
	o := &options{stdout: os.Stdout, stderr: os.Stderr}
	for _, f := range opts {
		f(o)
	}
	if o.processors == nil {
		o.processors = processors.Builtins()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot(o)
	root.SetArgs(args)
	root.SetOut(o.stdout)
	root.SetErr(o.stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(o.stderr, "ordo:", err)
		var ee exitError
		if errors.As(err, &ee) {
			return int(ee)
		}
		return 1
	}
	return 0
}

type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func newRoot(o *options) *cobra.Command {
	root := &cobra.Command{
		Use:   "ordo",
		Short: "Exactly-once Avro event orchestration on Kafka",
		Long: `ordo consumes Avro events (Confluent wire format) from Kafka, runs a chain of
processors on each (decode, validate, enrich, orchestrate) and emits Avro
command events. Outputs, dead letters and input offsets commit in one Kafka
transaction, so crashes, rebalances and zombie replicas never lose or double
an effect.

Start here:  ordo dev        (embedded broker + registry + demo traffic)
Production:  ordo run --config ordo.yaml`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCmd(o), newDevCmd(o), newProduceCmd(o), newConfigCmd(o), newRegistryCmd(o), newSchemasCmd(o), newDemoCmd(o), newReplayCmd(o), newDLQCmd(o), newProcessCmd(o), newVersionCmd(o))
	return root
}

func newVersionCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print ordo's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "ordo %s\n", Version)
			return nil
		},
	}
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	hopts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(telemetry.NewTraceHandler(slog.NewJSONHandler(w, hopts))), nil
	case "text":
		return slog.New(telemetry.NewTraceHandler(slog.NewTextHandler(w, hopts))), nil
	}
	return nil, fmt.Errorf("--log-format %q: use json or text", format)
}
