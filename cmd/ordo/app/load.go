package app

import (
	"log/slog"

	"github.com/ordo-dev/ordo/examples/orders"
	"github.com/ordo-dev/ordo/internal/config"
	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/schemas"
)

// embeddedConfig names the embedded example config in messages.
const embeddedConfig = config.DefaultPath + " (embedded)"

// configFlagHelp is the --config help of every command that reads a config.
const configFlagHelp = "YAML config file; ORDO_* environment variables override its keys (default: the example " + config.DefaultPath + ", embedded in the binary)"

// loadConfig loads path, or the embedded example config when path is "" (so
// that ordo works from any directory). When the config has errors but
// parsed, and reg is set, it also builds the processors, so that one report
// lists every problem of the file, sorted by line.
func loadConfig(path string, env []string, reg *processors.Registry) (*config.Config, error) {
	var cfg *config.Config
	var err error
	if path == "" {
		cfg, err = config.LoadFS(orders.Files(), orders.ConfigName, config.DefaultPath, env)
	} else {
		cfg, err = config.Load(path, env)
	}
	if err == nil {
		return cfg, nil
	}
	if cfg != nil && reg != nil {
		var specs []processors.Spec
		for _, s := range cfg.Specs() {
			if s.Type != "" { // an entry without a type is already reported
				specs = append(specs, s)
			}
		}
		readers, rerr := schemas.Demo()
		if rerr == nil {
			if _, perr := reg.Build(specs, processorDeps(cfg, readers, slog.New(slog.DiscardHandler))); perr != nil {
				err = config.Join(err, perr)
			}
		}
	}
	return nil, err
}

// configName is how messages name the config that path selects.
func configName(path string) string {
	if path == "" {
		return embeddedConfig
	}
	return path
}

// processorDeps are the processors' dependencies for cfg: its files and
// ordo's reader schemas, for config checks.
func processorDeps(cfg *config.Config, readers map[string]*schemas.Schema, log *slog.Logger) processors.Deps {
	return processors.Deps{
		BaseDir:   cfg.BaseDir(),
		FS:        cfg.FS,
		Logger:    log,
		KnownType: func(t string) bool { _, ok := readers[t]; return ok },
		Fields: func(t string) ([]string, bool) {
			s, ok := readers[t]
			if !ok {
				return nil, false
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
