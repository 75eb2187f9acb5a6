package processors

// validate: checks events against the envelope contract and CEL rules.
//
//	- type: validate
//	  config:
//	    require_envelope: true   # default true
//	    rules:
//	      - name: positive_total                               # required, unique
//	        when: type == "com.acme.checkout.OrderPlaced"      # optional CEL bool
//	        expr: event.total > 0.0 && size(event.items) > 0   # required CEL bool
//	        message: order total must be positive and the order must have items
//
// Schema conformance itself is enforced earlier, by decoding: an event that
// does not decode with its writer schema never reaches the chain. validate's
// "schema check" is therefore:
//
//   - when Deps.KnownType is set, the event type must be one ordo has a reader
//     schema for (unknown types are rejected);
//   - with require_envelope (the default), envelope.id, envelope.type and
//     envelope.correlation_id must be non-empty and envelope.type must equal the
//     writer schema's full name;
//   - every rule whose `when` holds (or that has no `when`) must evaluate to
//     true.
//
// Every failure is a permanent error (the event is dead-lettered); all failing
// rules are reported together, each with its name and message. A rule whose
// evaluation fails (e.g. `no such key: total` for an event without that field)
// is a failure too, reported with the CEL error. Use `when` or has() to scope
// rules to the event types that have the fields they read.

import (
	"context"
	"fmt"
	"strings"
)

// ValidationError is returned (wrapped as permanent) when an event fails
// validate.
type ValidationError struct {
	// Failures lists each failed check: "rule <name>: <message>" or an
	// envelope problem.
	Failures []string
}

func (e *ValidationError) Error() string {
	return "validation failed: " + strings.Join(e.Failures, "; ")
}

type validateConfig struct {
	Rules           []validateRuleConfig `yaml:"rules"`
	RequireEnvelope *bool                `yaml:"require_envelope"`
}

type validateRuleConfig struct {
	Name    string `yaml:"name"`
	When    string `yaml:"when"`
	Expr    string `yaml:"expr"`
	Message string `yaml:"message"`
}

type validateRule struct {
	name    string
	message string
	when    *celExpr // nil: always
	expr    *celExpr
}

type validator struct {
	rules           []validateRule
	requireEnvelope bool
	knownType       func(string) bool
}

func newValidate(spec Spec, deps Deps) (Processor, error) {
	var cfg validateConfig
	if err := spec.Decode(&cfg); err != nil {
		return nil, err
	}
	v := &validator{requireEnvelope: true, knownType: deps.KnownType}
	if cfg.RequireEnvelope != nil {
		v.requireEnvelope = *cfg.RequireEnvelope
	}
	seen := map[string]int{}
	for i, rc := range cfg.Rules {
		if rc.Name == "" {
			return nil, pathErr(spec, "rule has no name", "give every rule a unique `name:`; it is reported when the rule fails", "rules", i)
		}
		if j, dup := seen[rc.Name]; dup {
			return nil, pathErr(spec, fmt.Sprintf("duplicate rule name %q (also rules[%d])", rc.Name, j), "rule names must be unique", "rules", i, "name")
		}
		seen[rc.Name] = i
		if rc.Expr == "" {
			return nil, pathErr(spec, fmt.Sprintf("rule %q has no expr", rc.Name), "add `expr:` with a CEL condition that must hold, e.g. `event.total > 0.0`", "rules", i)
		}
		r := validateRule{name: rc.Name, message: rc.Message}
		if r.message == "" {
			r.message = "expected `" + rc.Expr + "`"
		}
		var err error
		if rc.When != "" {
			if r.when, err = compileCEL(spec, nodeAt(spec, "rules", i, "when"), keyPath(spec, "rules", i, "when"), rc.When, boolResult); err != nil {
				return nil, err
			}
		}
		if r.expr, err = compileCEL(spec, nodeAt(spec, "rules", i, "expr"), keyPath(spec, "rules", i, "expr"), rc.Expr, boolResult); err != nil {
			return nil, err
		}
		v.rules = append(v.rules, r)
	}
	return v, nil
}

// ReadsRecords: the event is read through CEL only (see RecordReader).
func (v *validator) ReadsRecords() bool { return true }

func (v *validator) Process(_ context.Context, ev *Event) ([]Command, error) {
	var fails []string
	if v.knownType != nil && !v.knownType(ev.Type) {
		fails = append(fails, fmt.Sprintf("unknown event type %q", ev.Type))
	}
	if v.requireEnvelope {
		e := ev.Envelope
		if e.ID == "" {
			fails = append(fails, "envelope.id is empty")
		}
		if e.Type == "" {
			fails = append(fails, "envelope.type is empty")
		} else if e.Type != ev.Type {
			fails = append(fails, fmt.Sprintf("envelope.type %q does not match the writer schema %q", e.Type, ev.Type))
		}
		if e.CorrelationID == "" {
			fails = append(fails, "envelope.correlation_id is empty")
		}
	}
	if len(v.rules) > 0 {
		a := newVars(ev)
		for i := range v.rules {
			r := &v.rules[i]
			if r.when != nil {
				ok, err := r.when.evalBool(a)
				if err != nil {
					fails = append(fails, fmt.Sprintf("rule %s: when: %v", r.name, err))
					continue
				}
				if !ok {
					continue
				}
			}
			ok, err := r.expr.evalBool(a)
			switch {
			case err != nil:
				fails = append(fails, fmt.Sprintf("rule %s: %s (%v)", r.name, r.message, err))
			case !ok:
				fails = append(fails, fmt.Sprintf("rule %s: %s", r.name, r.message))
			}
		}
	}
	if len(fails) > 0 {
		return nil, Permanent(&ValidationError{Failures: fails})
	}
	return nil, nil
}
