package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ordo-dev/ordo/internal/config"
	"github.com/ordo-dev/ordo/schemas"
)

// readerSet is the config's schemas (`schemas:`): the reader schemas of
// input events and the schemas of commands, by full name.
type readerSet struct {
	byName map[string]*schemas.Schema
	// open says the set may be incomplete (schemas.subjects not fetched):
	// processor checks then accept types they do not find instead of
	// reporting them as unknown.
	open bool
	// from says where each schema came from, for messages.
	from map[string]string
	// source says where the schemas came from, for logs.
	source string
}

// localReaders loads the schemas a config names in files, or the built-in
// example schemas when its `schemas:` block names none. It connects to
// nothing: schemas.subjects are left for readers (the set is then open).
// Problems are config errors at their schemas.files entry; the schemas that
// did load are returned with them.
func localReaders(cfg *config.Config) (*readerSet, error) {
	if cfg.Schemas.Builtin() {
		byName, err := schemas.Demo()
		if err != nil {
			return nil, fmt.Errorf("load the built-in schemas: %w", err)
		}
		return &readerSet{byName: byName, source: "built-in example schemas (no schemas: block)"}, nil
	}
	loaded, err := schemas.LoadFiles(cfg.FS, cfg.BaseDir(), cfg.Schemas.Files)
	// A file that did not load leaves its type unknown to the processor
	// checks, which then report it too, next to the file's error.
	rs := &readerSet{byName: loaded.Schemas, from: loaded.From, open: len(cfg.Schemas.Subjects) > 0, source: "schemas.files"}
	return rs, loadErrors(cfg, "schemas.files", err)
}

// readers is localReaders plus the latest versions of schemas.subjects,
// fetched from the registry. Registry faults are retried with backoff (each
// logged) until ctx ends: a registry that is down when ordo starts delays the
// start, it is not a crash loop. An unknown subject or an unusable schema is
// a config error.
func readers(ctx context.Context, cfg *config.Config, log *slog.Logger) (*readerSet, error) {
	rs, err := localReaders(cfg)
	if err != nil || len(cfg.Schemas.Subjects) == 0 {
		if err == nil {
			log.Info("reader schemas loaded", "source", rs.source, "types", len(rs.byName))
		}
		return rs, err
	}
	reg, err := newSchemaRegistry(cfg)
	if err != nil {
		return nil, err
	}
	loaded := &schemas.Loaded{Schemas: rs.byName, From: rs.from}
	start := time.Now()
	err = schemas.LoadSubjects(ctx, reg, cfg.Schemas.Subjects, loaded, schemas.Backoff{
		Notify: func(subject string, attempt int, wait time.Duration, err error) {
			log.Warn("cannot fetch a reader schema from the registry; retrying (ordo starts once it has every subject of schemas.subjects)",
				"subject", subject, "attempt", attempt, "retry_in", wait, "registry", cfg.Registry.URL, "err", err)
		},
	})
	if err != nil {
		var le *schemas.LoadError
		if errors.As(err, &le) {
			return nil, loadErrors(cfg, "schemas.subjects", err)
		}
		return nil, fmt.Errorf("fetch reader schemas from %s after %v: %w", cfg.Registry.URL, time.Since(start).Round(time.Millisecond), err)
	}
	rs = &readerSet{byName: loaded.Schemas, from: loaded.From, source: "schemas.files and schemas.subjects"}
	if len(cfg.Schemas.Files) == 0 {
		rs.source = "schemas.subjects"
	}
	log.Info("reader schemas loaded", "source", rs.source, "types", len(rs.byName), "subjects", cfg.Schemas.Subjects)
	return rs, nil
}

// loadErrors turns schemas.LoadFiles/LoadSubjects errors into config errors
// at the list entry (key[i]) they concern.
func loadErrors(cfg *config.Config, key string, err error) error {
	if err == nil {
		return nil
	}
	var parts []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		parts = j.Unwrap()
	} else {
		parts = []error{err}
	}
	out := make([]error, 0, len(parts))
	for _, e := range parts {
		var le *schemas.LoadError
		if errors.As(e, &le) {
			out = append(out, cfg.ErrorAt(fmt.Sprintf("%s[%d]", key, le.Entry), le.Msg, le.Fix))
		} else {
			out = append(out, cfg.ErrorAt(key, e.Error(), ""))
		}
	}
	return config.Join(out...)
}
