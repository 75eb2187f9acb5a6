package processes

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ordo-dev/ordo/processors"
)

// base is a small valid process; cases break one thing each. Line 1 is
// "processes:".
const base = `processes:
  - name: pay
    version: 1
    timers:
      deadline: 10m
    start:
      on: com.acme.checkout.OrderPlaced
      set: {order_id: event.order_id}
      start_timers: [deadline]
      goto: waiting
    states:
      waiting:
        join:
          - on: com.acme.payments.PaymentAuthorized
          - on: com.acme.warehouse.InventoryReserved
        then:
          emit:
            - type: com.acme.ordo.commands.NotifyCustomer
              topic: commands.notify-customer.v1
              fields:
                order_id: vars.order_id
                template: '"done"'
          goto: done
        transitions:
          - timer: deadline
            goto: failed
      done:
        terminal: completed
      failed:
        terminal: cancelled
`

func configErrs(err error) []*processors.ConfigError {
	var out []*processors.ConfigError
	var walk func(error)
	walk = func(e error) {
		var ce *processors.ConfigError
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if errors.As(e, &ce) {
			out = append(out, ce)
		}
	}
	walk(err)
	return out
}

func TestConfigBaseIsValid(t *testing.T) {
	buildInline(t, base)
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, new string
		line     int
		key      string
		frags    []string
	}{
		{"unknown key with did-you-mean", "        transitions:", "        transitons:", 24, "processes[0].states.waiting.transitons", []string{"unknown key", `did you mean "transitions"`}},
		{"goto an unknown state", "            goto: failed", "            goto: faild", 26, "processes[0].states.waiting.transitions[0].goto", []string{`no state "faild"`, "did you mean failed"}},
		{"unknown event type", "          - on: com.acme.payments.PaymentAuthorized", "          - on: com.acme.payments.PaymentAuthorised", 14, "processes[0].states.waiting.join[0].on", []string{"unknown event type", "PaymentAuthorised"}},
		{"unknown command field", "                template: '\"done\"'", "                templat: '\"done\"'", 22, "processes[0].states.waiting.then.emit[0].fields.templat", []string{`has no field "templat"`}},
		{"required command field unmapped", "                template: '\"done\"'\n", "", 18, "processes[0].states.waiting.then.emit[0]", []string{"requires field(s) template"}},
		{"undeclared timer", "      start_timers: [deadline]", "      start_timers: [deadlin]", 9, "processes[0].start.start_timers[0]", []string{`no timer "deadlin"`, "did you mean deadline"}},
		{"policy value with did-you-mean", "    version: 1\n", "    version: 1\n    on_unknown: bufer\n", 4, "processes[0].on_unknown", []string{`"bufer" is not one of`, "did you mean buffer"}},
		{"bad duration", "      deadline: 10m", "      deadline: soon", 5, "processes[0].timers.deadline", []string{"expected a duration"}},
		{"CEL type error", "      set: {order_id: event.order_id}", "      set: {order_id: event.order_id +}", 8, "processes[0].start.set.order_id", []string{"invalid CEL expression"}},
		{"when must be bool", "          - timer: deadline\n", "          - timer: deadline\n            when: '\"yes\"'\n", 26, "processes[0].states.waiting.transitions[0].when", []string{"want bool"}},
		{"no terminal state", "      done:\n        terminal: completed\n      failed:\n        terminal: cancelled\n", "      done:\n        transitions: [{timer: deadline}]\n      failed:\n        transitions: [{timer: deadline}]\n", 11, "processes[0].states", []string{"no terminal state"}},
		{"leg with goto", "          - on: com.acme.warehouse.InventoryReserved\n", "          - on: com.acme.warehouse.InventoryReserved\n            goto: done\n", 16, "processes[0].states.waiting.join[1].goto", []string{"join leg cannot `goto`"}},
		{"unreachable state", "      failed:\n        terminal: cancelled\n", "      failed:\n        terminal: cancelled\n      limbo:\n        terminal: lost\n", 31, "processes[0].states.limbo", []string{"never entered"}},
		{"timer never handled", "          - timer: deadline\n            goto: failed\n", "          - on: com.acme.payments.PaymentDeclined\n            goto: failed\n", 5, "processes[0].timers.deadline", []string{"timer deadline has no transition"}},
		{"shadowed transition", "            goto: failed\n", "            goto: failed\n          - timer: deadline\n            goto: done\n", 27, "processes[0].states.waiting.transitions[1]", []string{"never runs"}},
		{"terminal cannot be left", "        terminal: completed\n", "        terminal: completed\n        transitions:\n          - on: com.acme.payments.PaymentDeclined\n            goto: waiting\n", 31, "processes[0].states.done.transitions[0].goto", []string{"terminal state cannot be left"}},
		{"envelope cannot be mapped", "                order_id: vars.order_id\n", "                order_id: vars.order_id\n                envelope: vars.x\n", 22, "processes[0].states.waiting.then.emit[0].fields.envelope", []string{"envelope is set by ordo"}},
		{"bad variable name", "      set: {order_id: event.order_id}", "      set: {order-id: event.order_id}", 8, "processes[0].start.set.order-id", []string{"not an identifier"}},
		{"not a list", base, "processes:\n  name: pay\n", 2, "processes", []string{"expected a list"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(base, tc.old) {
				t.Fatalf("base has no %q", tc.old)
			}
			text := strings.Replace(base, tc.old, tc.new, 1)
			_, err := Build(processesNode(t, text), "ordo.yaml", demoDeps(t))
			if err == nil {
				t.Fatal("no error")
			}
			for _, ce := range configErrs(err) {
				if ce.Key != tc.key {
					continue
				}
				msg := ce.Error()
				if want := fmt.Sprintf("ordo.yaml:%d: ", tc.line); !strings.HasPrefix(msg, want) {
					t.Errorf("%q does not start with %q", msg, want)
				}
				for _, f := range tc.frags {
					if !strings.Contains(msg, f) {
						t.Errorf("%q lacks %q", msg, f)
					}
				}
				if ce.Fix == "" {
					t.Errorf("%q has no fix", msg)
				}
				return
			}
			t.Fatalf("no error keyed %s in:\n%v", tc.key, err)
		})
	}
}

func TestConfigDuplicateVersion(t *testing.T) {
	text := base + strings.TrimPrefix(base, "processes:\n")
	_, err := Build(processesNode(t, text), "ordo.yaml", demoDeps(t))
	ces := configErrs(err)
	if len(ces) != 1 || ces[0].Key != "processes[1].version" || ces[0].Line != 32 || !strings.Contains(ces[0].Msg, "defined twice") {
		t.Fatalf("duplicate version: %v", err)
	}
}

// Every problem is reported at once.
func TestConfigReportsAllErrors(t *testing.T) {
	text := strings.Replace(strings.Replace(base, "goto: failed", "goto: faild", 1), "start_timers: [deadline]", "start_timers: [deadlin]", 1)
	_, err := Build(processesNode(t, text), "ordo.yaml", demoDeps(t))
	if n := len(configErrs(err)); n < 2 {
		t.Fatalf("%d errors reported, want both: %v", n, err)
	}
}

func TestNoProcessesBlock(t *testing.T) {
	e, err := Build(processesNode(t, "kafka: {}\n"), "ordo.yaml", demoDeps(t))
	if err != nil || len(e.Names()) != 0 {
		t.Fatalf("no block: %v %v", e, err)
	}
	if e, err := Build(processesNode(t, "processes:\n"), "ordo.yaml", demoDeps(t)); err != nil || len(e.Names()) != 0 {
		t.Fatalf("empty block: %v", err)
	}
}
