package processors

// A small exported API over the processors' CEL and field mapping, for
// packages that compile their own configuration into processors (the
// process engine, package processes). It reuses exactly what orchestrate
// uses, so expressions, field mappings, their build-time checks and their
// error messages are the same everywhere:
//
//	x, err := processors.CompileExpr(processors.Location{File: f, Node: n, Key: "processes[0].start.when"}, src, processors.BoolExpr)
//	em, err := processors.CompileEmit(loc, deps, processors.EmitConfig{Type: ..., Topic: ..., Fields: ...})
//	a := processors.NewActivation(ev)
//	a.SetVars(instanceVars)
//	ok, err := x.Bool(a)
//	fields, err := em.Fields(a)
//
// Expressions compiled here see one variable more than pipeline
// expressions: `vars`, map(string, dyn), the process instance's variables
// (empty when none are set). A plain path into it (`vars.total`) copies the
// original value, like `event.total`, so decimals stay exact.

import (
	"fmt"
	"sync"

	"github.com/google/cel-go/cel"
	"gopkg.in/yaml.v3"
)

// celProcessEnvironment is the pipeline environment plus `vars`.
var celProcessEnvironment = sync.OnceValues(func() (*cel.Env, error) {
	base, err := celEnvironment()
	if err != nil {
		return nil, err
	}
	return base.Extend(cel.Variable("vars", cel.MapType(cel.StringType, cel.DynType)))
})

// Location is where a configuration value is, for *ConfigError: the file,
// the value's YAML node (its line; nil: unknown) and its full key, e.g.
// processes[0].states.awaiting.transitions[1].when.
type Location struct {
	File string
	Node *yaml.Node
	Key  string
}

func (l Location) spec() Spec {
	s := Spec{File: l.File, keyRoot: l.Key, processEnv: true}
	if l.Node != nil {
		s.Config = *l.Node
		s.Line = l.Node.Line
	}
	if s.keyRoot == "" {
		s.keyRoot = "(top level)"
	}
	return s
}

// ExprKind is the result type an expression must have.
type ExprKind int

// Expression kinds.
const (
	AnyExpr  ExprKind = iota // any value (field mappings, variables)
	BoolExpr                 // a condition
)

// Expr is a compiled, type-checked CEL expression.
type Expr struct{ c *celExpr }

// CompileExpr compiles src. Compile and type errors are *ConfigError at
// the location, with a fix.
func CompileExpr(at Location, src string, kind ExprKind) (*Expr, error) {
	want := anyResult
	if kind == BoolExpr {
		want = boolResult
	}
	c, err := compileCEL(at.spec(), at.Node, at.Key, src, want)
	if err != nil {
		return nil, err
	}
	return &Expr{c: c}, nil
}

// String is the expression's source.
func (x *Expr) String() string { return x.c.src }

// Bool evaluates a condition. An error (e.g. no such key) names the
// expression.
func (x *Expr) Bool(a *Activation) (bool, error) { return x.c.evalBool(&a.v) }

// Value evaluates the expression to a natural Go value (see
// orchestrate.go's field values: plain paths copy the original, exact).
func (x *Expr) Value(a *Activation) (any, error) { return x.c.evalNatural(&a.v) }

// EmitConfig is one command template, the `emit:` entry of orchestrate:
// type, topic and field mappings (command field → CEL).
type EmitConfig struct {
	Type   string            `yaml:"type"`
	Topic  string            `yaml:"topic"`
	Fields map[string]string `yaml:"fields"`
}

// Emit is a compiled command template.
type Emit struct{ e orchEmit }

// CompileEmit compiles an emit entry located at `at` (Node is the entry's
// mapping node, Key its full key) with orchestrate's checks: type and topic
// set, the type known (deps.KnownType), every field in the schema
// (deps.Fields), every required field mapped (deps.Required), no
// `envelope` mapping, every expression valid.
func CompileEmit(at Location, deps Deps, conf EmitConfig) (*Emit, error) {
	e, err := buildEmit(at.spec(), deps, nil, orchestrateEmitConf(conf))
	if err != nil {
		return nil, err
	}
	return &Emit{e: e}, nil
}

// Type is the command type (full Avro name).
func (e *Emit) Type() string { return e.e.typ }

// Topic is the command topic.
func (e *Emit) Topic() string { return e.e.topic }

// Fields evaluates the field mappings (without the envelope, which the
// caller sets). An error names the field and the expression.
func (e *Emit) Fields(a *Activation) (map[string]any, error) {
	v := make(map[string]any, len(e.e.fields)+1)
	for _, f := range e.e.fields {
		x, err := f.expr.evalNatural(&a.v)
		if err != nil {
			return nil, fmt.Errorf("%s field %s: %v", e.e.typ, f.name, err)
		}
		v[f.name] = x
	}
	return v, nil
}

// Activation is the CEL variables for one event: the event's (as in a
// pipeline) plus `vars`. Not safe for concurrent use.
type Activation struct{ v vars }

// NewActivation returns ev's variables with empty `vars`.
func NewActivation(ev *Event) *Activation { return &Activation{v: vars{ev: ev}} }

// SetVars sets `vars` (nil: empty). The map is read, never modified.
func (a *Activation) SetVars(m map[string]any) { a.v.proc = m }
