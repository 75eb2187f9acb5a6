package app

import (
	"errors"
	"log/slog"

	"github.com/ordo-dev/ordo/examples/orders"
	"github.com/ordo-dev/ordo/internal/config"
	"github.com/ordo-dev/ordo/processes"
	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/schemas"
)

// embeddedConfig names the embedded example config in messages.
const embeddedConfig = config.DefaultPath + " (embedded)"

// configFlagHelp is the --config help of every command that reads a config.
const configFlagHelp = "YAML config file; ORDO_* environment variables override its keys (default: the example " + config.DefaultPath + ", embedded in the binary)"

// loadConfig loads path, or the embedded example config when path is "" (so
// that ordo works from any directory). When reg is set (the commands that
// run processors), it also loads the schema files the config names and, if
// anything is wrong, builds the processors, so that one report lists every
// problem of the file, sorted by line.
func loadConfig(path string, env []string, reg *processors.Registry) (*config.Config, error) {
	var cfg *config.Config
	var err error
	if path == "" {
		cfg, err = config.LoadFS(orders.Files(), orders.ConfigName, config.DefaultPath, env)
	} else {
		cfg, err = config.Load(path, env)
	}
	if cfg == nil || reg == nil {
		if err != nil {
			return nil, err
		}
		return cfg, nil
	}
	rs, serr := localReaders(cfg)
	if err == nil && serr == nil {
		return cfg, nil
	}
	if rs != nil {
		var specs []processors.Spec
		for _, s := range cfg.Specs() {
			if s.Type != "" { // an entry without a type is already reported
				specs = append(specs, s)
			}
		}
		deps := processorDeps(cfg, rs, slog.New(slog.DiscardHandler))
		if _, perr := reg.Build(specs, deps); perr != nil {
			serr = errors.Join(serr, perr)
		}
		if cfg.Processes.Kind != 0 {
			if _, perr := processes.Build(&cfg.Processes, cfg.File, deps); perr != nil {
				serr = errors.Join(serr, perr)
			}
		}
	}
	return nil, config.Join(err, serr)
}

// configName is how messages name the config that path selects.
func configName(path string) string {
	if path == "" {
		return embeddedConfig
	}
	return path
}

// ProcessorDeps are the processors' dependencies for cfg with a closed set
// of reader schemas (by full name), as ordo builds a chain: the in-memory
// benchmark (bench/cmd/ordobench) builds (b)'s chain with it.
func ProcessorDeps(cfg *config.Config, readers map[string]*schemas.Schema, log *slog.Logger) processors.Deps {
	return processorDeps(cfg, &readerSet{byName: readers}, log)
}

// processorDeps are the processors' dependencies for cfg: its files and
// its schemas, for config checks. When the set is open (schemas.subjects
// not fetched), a type it lacks is accepted rather than reported as unknown.
func processorDeps(cfg *config.Config, rs *readerSet, log *slog.Logger) processors.Deps {
	readers := rs.byName
	return processors.Deps{
		BaseDir:   cfg.BaseDir(),
		FS:        cfg.FS,
		Logger:    log,
		KnownType: func(t string) bool { _, ok := readers[t]; return ok || rs.open },
		Fields: func(t string) ([]string, bool) {
			s, ok := readers[t]
			if !ok {
				return nil, rs.open // nil fields: no field check
			}
			return fieldNames(s.Text, false), true
		},
		Required: func(t string) ([]string, bool) {
			s, ok := readers[t]
			if !ok {
				return nil, false
			}
			return fieldNames(s.Text, true), true
		},
	}
}
