package devenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// Registry is ordo's embedded schema registry: franz-go's srfake keeps the
// schemas and serves most of the Confluent REST API; in front of it, this
// type adds what a production registry does and srfake does not:
//
//   - registrations are checked against the subject's compatibility level
//     (per-subject config, else global, default BACKWARD) with ordo's
//     resolution rules, and refused with HTTP 409 and Confluent's error body;
//   - GET/PUT/DELETE /config and /config/{subject} keep the levels, with
//     Confluent's answers and errors (an unknown level is a 422);
//   - POST /compatibility/subjects/{s}/versions[/{v}] really checks
//     (srfake's always says compatible), with ?verbose=true messages;
//   - Avro schemas must parse (422 otherwise), including their references'
//     named types, so a schema using a shared com.acme.Money is accepted.
//
// Schemas, levels and references persist to a JSON file when one is given.
type Registry struct {
	fake  *srfake.Registry
	inner http.Handler
	srv   *http.Server
	ln    net.Listener
	file  string
	log   *slog.Logger
	wg    sync.WaitGroup

	// mu serializes every change: a compatibility check and the
	// registration it allows are atomic, and saves do not interleave.
	mu     sync.Mutex
	global sr.CompatibilityLevel
	levels map[string]sr.CompatibilityLevel

	parsed sync.Map // schema id -> *schemas.Schema; ids are immutable
}

// persistedFile is the registry file. Files written before compatibility
// levels existed hold only the schema list; load accepts both.
type persistedFile struct {
	Compatibility string            `json:"compatibility"`
	Subjects      map[string]string `json:"subject_compatibility,omitempty"`
	Schemas       []persisted       `json:"schemas"`
}

type persisted struct {
	Subject    string               `json:"subject"`
	Version    int                  `json:"version"`
	ID         int                  `json:"id"`
	Schema     string               `json:"schema"`
	Type       string               `json:"type,omitempty"`
	References []sr.SchemaReference `json:"references,omitempty"`
}

// NewRegistry builds the registry without serving it: serve Handler
// yourself (tests use httptest). When file is not empty, schemas and levels
// are reloaded from it and saved after every change.
func NewRegistry(file string, log *slog.Logger) (*Registry, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fake := srfake.NewRegistry()
	r := &Registry{fake: fake, inner: fake.Handler(), file: file, log: log,
		global: sr.CompatBackward, levels: map[string]sr.CompatibilityLevel{}}
	if file != "" {
		if err := r.load(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// StartRegistry serves a schema registry on addr (see Registry). When file
// is not empty, schemas and levels are reloaded from it with their ids and
// saved after every change.
func StartRegistry(addr, file string, log *slog.Logger) (*Registry, error) {
	r, err := NewRegistry(file, log)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("start schema registry on %s: %w (fix: stop whatever uses the port, or pass --registry-addr)", addr, err)
	}
	r.ln = ln
	r.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: r.Handler()}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := r.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("schema registry stopped", "err", err)
		}
	}()
	return r, nil
}

// URL is the registry's base URL ("" when it is not served by StartRegistry).
func (r *Registry) URL() string {
	if r.ln == nil {
		return ""
	}
	return "http://" + r.ln.Addr().String()
}

// Fake gives direct access to the in-memory store (tests). Writing through
// it bypasses the compatibility checks and the file.
func (r *Registry) Fake() *srfake.Registry { return r.fake }

// SetCompatibility sets the compatibility level of subject, or the global
// level when subject is "", as PUT /config[/{subject}] does, and saves.
func (r *Registry) SetCompatibility(subject string, level sr.CompatibilityLevel) error {
	if level.String() == "" {
		return fmt.Errorf("unknown compatibility level %d", int(level))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if subject == "" {
		r.global = level
	} else {
		r.levels[subject] = level
	}
	return r.saveLocked()
}

// Compatibility returns the level that applies to subject: its own, else
// the global one ("" asks for the global one).
func (r *Registry) Compatibility(subject string) sr.CompatibilityLevel {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.levelLocked(subject)
}

func (r *Registry) levelLocked(subject string) sr.CompatibilityLevel {
	if l, ok := r.levels[subject]; ok {
		return l
	}
	return r.global
}

// Close stops serving and saves.
func (r *Registry) Close() error {
	var err error
	if r.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err = r.srv.Shutdown(ctx)
		r.wg.Wait()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return errors.Join(err, r.saveLocked())
}

func (r *Registry) load() error {
	data, err := os.ReadFile(r.file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load schema registry: %w", err)
	}
	var pf persistedFile
	if len(data) > 0 && data[0] == '[' {
		err = json.Unmarshal(data, &pf.Schemas) // the format before levels
	} else {
		err = json.Unmarshal(data, &pf)
	}
	if err != nil {
		return fmt.Errorf("load schema registry %s: %w (fix: delete the file to start empty)", r.file, err)
	}
	if pf.Compatibility != "" {
		if err := r.global.UnmarshalText([]byte(pf.Compatibility)); err != nil {
			return fmt.Errorf("load schema registry %s: compatibility: %w (fix: use one of NONE, BACKWARD, FORWARD, FULL and their _TRANSITIVE forms)", r.file, err)
		}
	}
	for s, l := range pf.Subjects {
		var lv sr.CompatibilityLevel
		if err := lv.UnmarshalText([]byte(l)); err != nil {
			return fmt.Errorf("load schema registry %s: subject_compatibility of %q: %w", r.file, s, err)
		}
		r.levels[s] = lv
	}
	return r.seed(pf.Schemas)
}

// seed puts the saved versions back with their ids and versions. srfake
// can seed an id only once, so a schema shared by several subjects is
// seeded for the first and re-registered (which reuses its id) for the
// others; each subject goes in version order, and a version waits until the
// versions it references are back.
func (r *Registry) seed(all []persisted) error {
	bySubject := map[string][]persisted{}
	for _, p := range all {
		bySubject[p.Subject] = append(bySubject[p.Subject], p)
	}
	subjects := make([]string, 0, len(bySubject))
	for s, q := range bySubject {
		sort.Slice(q, func(i, j int) bool { return q[i].Version < q[j].Version })
		subjects = append(subjects, s)
	}
	sort.Strings(subjects)
	seededIDs := map[int]bool{}
	seeded := map[[2]any]bool{} // (subject, version)
	for left := len(all); left > 0; {
		progress := false
		for _, s := range subjects {
			q := bySubject[s]
			for len(q) > 0 && refsSeeded(q[0], seeded) {
				if err := r.seedOne(q[0], seededIDs); err != nil {
					return fmt.Errorf("load schema registry %s: subject %q version %d: %w (fix: delete the file to start empty)", r.file, s, q[0].Version, err)
				}
				seeded[[2]any{s, q[0].Version}] = true
				q = q[1:]
				left--
				progress = true
			}
			bySubject[s] = q
		}
		if !progress {
			for _, s := range subjects {
				if q := bySubject[s]; len(q) > 0 {
					return fmt.Errorf("load schema registry %s: subject %q version %d references a version that is not in the file (fix: delete the file to start empty)", r.file, s, q[0].Version)
				}
			}
		}
	}
	return nil
}

func refsSeeded(p persisted, seeded map[[2]any]bool) bool {
	for _, ref := range p.References {
		if !seeded[[2]any{ref.Subject, ref.Version}] {
			return false
		}
	}
	return true
}

func (r *Registry) seedOne(p persisted, seededIDs map[int]bool) (err error) {
	t := sr.TypeAvro
	if p.Type != "" {
		if err := t.UnmarshalText([]byte(p.Type)); err != nil {
			return err
		}
	}
	sch := sr.Schema{Schema: p.Schema, Type: t, References: p.References}
	if !seededIDs[p.ID] {
		defer func() {
			if v := recover(); v != nil { // srfake panics on a bad seed
				err = fmt.Errorf("%v", v)
			}
		}()
		r.fake.SeedSchema(p.Subject, p.Version, p.ID, sch)
		seededIDs[p.ID] = true
		return nil
	}
	id, version, err := r.fake.RegisterSchema(p.Subject, sch)
	if err != nil {
		return err
	}
	if id != p.ID {
		return fmt.Errorf("schema id %d came back as %d", p.ID, id)
	}
	if version != p.Version {
		// Only when earlier versions of the subject were deleted.
		r.log.Warn("schema registry: a reloaded version got another number", "subject", p.Subject, "saved", p.Version, "now", version)
	}
	return nil
}

// saveLocked writes every subject version and the levels; r.mu is held.
// It reads through srfake's own handler in-process, so it works while the
// listener is closing.
func (r *Registry) saveLocked() error {
	if r.file == "" {
		return nil
	}
	var all []sr.SubjectSchema
	if code, body := r.call(http.MethodGet, "/schemas", nil, &all); code != http.StatusOK {
		return fmt.Errorf("list schemas: HTTP %d: %s", code, body)
	}
	pf := persistedFile{Compatibility: r.global.String(), Schemas: make([]persisted, 0, len(all))}
	if len(r.levels) > 0 {
		pf.Subjects = map[string]string{}
		for s, l := range r.levels {
			pf.Subjects[s] = l.String()
		}
	}
	for _, s := range all {
		typ, _ := s.Type.MarshalText()
		pf.Schemas = append(pf.Schemas, persisted{Subject: s.Subject, Version: s.Version, ID: s.ID, Schema: s.Schema.Schema, Type: string(typ), References: s.References})
	}
	sort.Slice(pf.Schemas, func(i, j int) bool {
		a, b := pf.Schemas[i], pf.Schemas[j]
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		if a.Subject != b.Subject {
			return a.Subject < b.Subject
		}
		return a.Version < b.Version
	})
	data, err := json.MarshalIndent(pf, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(r.file), 0o755); err != nil {
		return err
	}
	tmp := r.file + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, r.file)
}
