package processors

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ordo-dev/ordo/internal/config/yamlcheck"
)

// Spec is one entry of the `pipeline:` list in ordo's YAML config:
//
//	pipeline:
//	  - name: order-rules      # optional, defaults to type
//	    type: validate         # a registered processor type
//	    config: {...}          # decoded by the type's Factory with Spec.Decode
type Spec struct {
	Name   string
	Type   string
	Config yaml.Node
	// File is the config file the spec came from, for error messages.
	File string
	// Key is the entry's key in the file, e.g. "pipeline[2]": config errors
	// are then keyed pipeline[2].config.url. Empty: pipeline[<name>].url.
	Key string
	// Line is the line of the entry (its type:) in File, for errors about
	// the entry itself (unknown type) and when the config block is absent.
	Line int

	// keyRoot, when set, is the full key of Config itself (config outside
	// `pipeline:`, e.g. a process definition's emit entry; see celapi.go).
	keyRoot string
	// processEnv compiles CEL with the process variables (celapi.go).
	processEnv bool
}

// Decode strictly decodes the spec's config block into v and reports every
// problem at once, each with file:line and the full key: unknown keys (with
// did-you-mean and the valid keys) and values of the wrong type (with the
// expected type and an example). The error joins one *ConfigError per
// problem.
func (s Spec) Decode(v any) error {
	if s.Config.Kind == 0 { // no config block
		return nil
	}
	var errs []error
	for _, is := range yamlcheck.Decode(&s.Config, v, keyPath(s)) {
		line := is.Line
		if line == 0 {
			line = s.configLine()
		}
		errs = append(errs, &ConfigError{File: s.File, Line: line, Key: is.Key, Msg: is.Msg, Fix: is.Fix})
	}
	return errors.Join(errs...)
}

// configLine is the best line for an error about the whole config block.
func (s Spec) configLine() int {
	if s.Config.Line > 0 {
		return s.Config.Line
	}
	return s.Line
}

// Errorf formats a config error located at node n (nil for the spec itself).
func (s Spec) Errorf(n *yaml.Node, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	if line == 0 {
		line = s.configLine()
	}
	return &ConfigError{File: s.File, Line: line, Key: keyPath(s), Msg: fmt.Sprintf(format, args...)}
}

// ConfigError is a configuration problem with its location and a fix.
type ConfigError struct {
	File string
	Line int
	Key  string
	Msg  string
	Fix  string
}

func (e *ConfigError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	s := fmt.Sprintf("%s: %s: %s", loc, e.Key, e.Msg)
	if e.Fix != "" {
		s += " (fix: " + e.Fix + ")"
	}
	return s
}

// Deps are the shared resources a Factory may use.
type Deps struct {
	// BaseDir resolves relative file paths in processor configs (the config
	// file's directory).
	BaseDir string
	// FS, when set, is where relative file paths are opened (BaseDir is then
	// a directory in it): the embedded example config. nil: the OS
	// filesystem.
	FS fs.FS
	// HTTPClient for lookups; nil means a client with sane timeouts.
	HTTPClient *http.Client
	Logger     *slog.Logger
	// KnownType reports whether ordo has a reader schema for an event or
	// command type (full Avro name); nil means every type is known.
	KnownType func(fullName string) bool
	// Fields returns the top-level field names of a known type's reader
	// schema, for config checks (e.g. orchestrate field mappings).
	Fields func(fullName string) ([]string, bool)
	// Required returns the top-level field names of a known type's reader
	// schema that have no default value, for config checks (orchestrate
	// requires every one of them, except envelope, to be mapped); nil skips
	// that check.
	Required func(fullName string) ([]string, bool)
}

// Factory builds a processor from its spec.
type Factory func(spec Spec, deps Deps) (Processor, error)

// Registry maps processor type names to factories. Users who compile their
// own ordo binary register custom processors here (see examples/custom).
type Registry struct {
	factories map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{factories: map[string]Factory{}} }

// Builtins returns a registry with ordo's built-in processors.
func Builtins() *Registry {
	r := NewRegistry()
	registerBuiltins(r)
	return r
}

// Register adds a processor type. Registering a type twice is an error.
func (r *Registry) Register(typ string, f Factory) error {
	if typ == "" || f == nil {
		return errors.New("processors: Register needs a type name and a factory")
	}
	if _, ok := r.factories[typ]; ok {
		return fmt.Errorf("processors: type %q is already registered", typ)
	}
	r.factories[typ] = f
	return nil
}

// MustRegister is Register that panics, for use in main().
func (r *Registry) MustRegister(typ string, f Factory) {
	if err := r.Register(typ, f); err != nil {
		panic(err)
	}
}

// Types lists the registered type names, sorted.
func (r *Registry) Types() []string {
	out := make([]string, 0, len(r.factories))
	for t := range r.factories {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Build compiles specs into a Chain. It builds every spec and reports every
// failure, not just the first: each is a *ConfigError with the spec's file,
// line and key (an unknown type gets did-you-mean over the registered
// types); the error joins them.
func (r *Registry) Build(specs []Spec, deps Deps) (Chain, error) {
	chain := make(Chain, 0, len(specs))
	var errs []error
	for _, s := range specs {
		if s.Name == "" {
			s.Name = s.Type
		}
		f, ok := r.factories[s.Type]
		if !ok {
			errs = append(errs, r.unknownType(s))
			continue
		}
		p, err := f(s, deps)
		if err != nil {
			errs = append(errs, located(s, err))
			continue
		}
		chain = append(chain, Named(s.Name, p))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return chain, nil
}

func (r *Registry) unknownType(s Spec) error {
	key := "pipeline[" + s.Name + "].type"
	if s.Key != "" {
		key = s.Key + ".type"
	}
	types := r.Types()
	msg := fmt.Sprintf("unknown processor type %q", s.Type)
	if s.Type == "" {
		msg = "no processor type"
	}
	fix := "use one of: " + strings.Join(types, ", ")
	if sug := yamlcheck.Suggest(s.Type, types); sug != "" && s.Type != "" {
		fix = fmt.Sprintf("did you mean %s? Registered types: %s", sug, strings.Join(types, ", "))
	}
	line := s.Line
	if line == 0 {
		line = s.Config.Line
	}
	return &ConfigError{File: s.File, Line: line, Key: key, Msg: msg, Fix: fix}
}

// located makes sure a factory's error carries the spec's location: config
// errors pass through (a joined error keeps its parts), anything else
// becomes a *ConfigError at the spec's line.
func located(s Spec, err error) error {
	if ce := new(ConfigError); errors.As(err, &ce) {
		return err
	}
	return &ConfigError{File: s.File, Line: s.configLine(), Key: keyPath(s), Msg: err.Error()}
}

// open opens a file named in a processor config: a relative name resolves
// against BaseDir, inside FS when it is set.
func (d Deps) open(name string) (fs.File, error) {
	if d.FS != nil && !filepath.IsAbs(name) {
		return d.FS.Open(path.Join(d.BaseDir, filepath.ToSlash(name)))
	}
	if !filepath.IsAbs(name) && d.BaseDir != "" {
		name = filepath.Join(d.BaseDir, name)
	}
	return os.Open(name)
}
