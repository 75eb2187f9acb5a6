package processors

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"

	"gopkg.in/yaml.v3"
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
}

// Decode strictly decodes the spec's config block into v: unknown keys are
// errors. Errors carry file:line so the user can find the bad key.
func (s Spec) Decode(v any) error {
	if s.Config.Kind == 0 { // no config block
		return nil
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(&s.Config); err != nil {
		return s.Errorf(&s.Config, "config: %v", err)
	}
	dec := yaml.NewDecoder(&buf)
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		// Line numbers from re-encoding are relative; report the block's line.
		return s.Errorf(&s.Config, "config: %v", err)
	}
	return nil
}

// Errorf formats a config error located at node n (nil for the spec itself).
func (s Spec) Errorf(n *yaml.Node, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &ConfigError{File: s.File, Line: line, Key: "pipeline[" + s.Name + "]", Msg: fmt.Sprintf(format, args...)}
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

// Build compiles specs into a Chain. Each processor's errors carry its name.
func (r *Registry) Build(specs []Spec, deps Deps) (Chain, error) {
	chain := make(Chain, 0, len(specs))
	for _, s := range specs {
		if s.Name == "" {
			s.Name = s.Type
		}
		f, ok := r.factories[s.Type]
		if !ok {
			return nil, &ConfigError{File: s.File, Line: s.Config.Line, Key: "pipeline[" + s.Name + "].type",
				Msg: fmt.Sprintf("unknown processor type %q", s.Type), Fix: fmt.Sprintf("use one of %v", r.Types())}
		}
		p, err := f(s, deps)
		if err != nil {
			return nil, err
		}
		chain = append(chain, Named(s.Name, p))
	}
	return chain, nil
}
