// Package ordo embeds the ordo exactly-once event orchestrator in a Go
// program. Most users run the ordo binary; import this package to compile
// your own binary with custom processors, or to run a replica inside a
// larger service.
//
// The whole command line, as cmd/ordo runs it:
//
//	reg := processors.Builtins()
//	reg.MustRegister("fraud_score", myFactory)
//	os.Exit(ordo.Main(os.Args[1:], ordo.WithProcessors(reg)))
//
// One replica of a config, as `ordo run --config F` runs it:
//
//	r, err := ordo.New("ordo.yaml", ordo.WithProcessors(reg))
//	if err != nil { ... }          // config problems: file:line, key and fix
//	err = r.Run(ctx)               // until ctx is cancelled
//
// The packages behind it are small on purpose: processors (the Processor
// interface and the built-ins), consumer (the exactly-once loop), producer
// (output and dead-letter records), publish (the SDK for producers of
// events) and schemas (Avro and the registry).
package ordo

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/ordo-dev/ordo/consumer"
	"github.com/ordo-dev/ordo/internal/app"
	"github.com/ordo-dev/ordo/internal/config"
	"github.com/ordo-dev/ordo/processors"
)

// Version is the version the binary was built with ("dev" unless the build
// set it with -ldflags "-X github.com/ordo-dev/ordo/internal/app.Version=...").
func Version() string { return app.Version }

// Main runs ordo's command line (`ordo run`, `ordo dev`, ...) with args
// (without the program name) and returns the process exit code. It stops on
// SIGINT or SIGTERM as the binary does.
func Main(args []string, opts ...Option) int {
	o := collect(opts)
	aopts := []app.Option{app.WithProcessors(o.processors)}
	if o.stdout != nil || o.stderr != nil {
		aopts = append(aopts, app.WithOutput(o.stdoutOr(os.Stdout), o.stderrOr(os.Stderr)))
	}
	return app.Main(args, aopts...)
}

// Replica is one replica of a pipeline, loaded and checked by New.
type Replica struct {
	cfg    *config.Config
	procs  *processors.Registry
	log    *slog.Logger
	create bool
	hooks  []consumer.Hook
}

// New loads the config at path (with the ORDO_* environment overrides, as
// `ordo run` does) and checks all of it: keys, schemas and processors. A
// problem comes back as one error naming the file, line, key and fix;
// nothing connects to Kafka or the registry yet.
func New(path string, opts ...Option) (*Replica, error) {
	if path == "" {
		return nil, fmt.Errorf("ordo.New: a config path is required (ordo run without --config uses the embedded example; an embedding program names its own)")
	}
	o := collect(opts)
	if err := consumer.CheckHooks(o.hooks...); err != nil {
		return nil, fmt.Errorf("ordo.New: WithHooks: %w", err)
	}
	cfg, err := app.LoadConfig(path, os.Environ(), o.processors)
	if err != nil {
		return nil, err
	}
	if err := app.Check(cfg, o.processors); err != nil {
		return nil, err
	}
	log := o.logger
	if log == nil {
		if log, err = app.NewLogger(o.stderrOr(os.Stderr), "json", "info"); err != nil {
			return nil, err
		}
	}
	return &Replica{cfg: cfg, procs: o.processors, log: log, create: o.createTopics, hooks: o.hooks}, nil
}

// Run runs the replica until ctx is cancelled, then finishes or aborts the
// open transaction, leaves the group and returns nil. It returns an error
// when the replica cannot start (e.g. a preflight check fails) or must stop
// (e.g. fenced by a newer instance of its transactional id). Run serves the
// config's admin endpoints and exports traces as `ordo run` does.
func (r *Replica) Run(ctx context.Context) error {
	return app.RunReplica(ctx, r.cfg, r.procs, r.log, r.create, r.hooks...)
}
