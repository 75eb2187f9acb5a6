package processes

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// v1 ships with template "shipped_v1"; v2 with "shipped_v2".
func versioned(versions ...string) string {
	text := "processes:\n"
	for _, v := range versions {
		text += `  - name: pay
    version: ` + v[:1] + `
    start:
      on: com.acme.checkout.OrderPlaced
      set: {order_id: event.order_id}
      goto: waiting
    states:
      waiting:
        transitions:
          - on: com.acme.payments.PaymentAuthorized
            emit:
              - type: com.acme.ordo.commands.NotifyCustomer
                topic: commands.notify-customer.v1
                fields:
                  order_id: vars.order_id
                  template: '"` + v + `"'
            goto: done
      done:
        terminal: completed
`
	}
	return text
}

func TestVersioning(t *testing.T) {
	v1 := buildInline(t, versioned("1-shipped"))
	h := newHarness(t, v1)
	h.mustSend(orderPlaced("old", t0))
	if err := v1.CheckState(h.store); err != nil {
		t.Fatalf("v1 on its own state: %v", err)
	}

	// v2 added: the running v1 instance finishes under v1, new ones use v2.
	both := buildInline(t, versioned("1-shipped", "2-shipped"))
	if err := both.CheckState(h.store); err != nil {
		t.Fatalf("adding version 2: %v", err)
	}
	if !slices.Equal(both.Versions("pay"), []int{1, 2}) {
		t.Fatalf("versions %v", both.Versions("pay"))
	}
	h.e = both
	h.chain = newHarness(t, both).chain
	h.mustSend(orderPlaced("new", t0.Add(time.Second)))
	if in, _ := h.instance("new", "pay"); in.Version != 2 {
		t.Fatalf("a new instance started under version %d, want 2", in.Version)
	}
	cmds := h.mustSend(paymentAuthorized("old", t0.Add(2*time.Second)))
	if len(cmds) != 1 || cmds[0].Natural()["template"] != "1-shipped" {
		t.Fatalf("the v1 instance continued under another definition: %v", cmds)
	}
	cmds = h.mustSend(paymentAuthorized("new", t0.Add(3*time.Second)))
	if len(cmds) != 1 || cmds[0].Natural()["template"] != "2-shipped" {
		t.Fatalf("the v2 instance: %v", cmds)
	}

	// v1 changed in place: refused, naming process, version and the fix.
	changed := buildInline(t, versioned("1-CHANGED", "2-shipped"))
	err := changed.CheckState(h.store)
	if err == nil || !strings.Contains(err.Error(), "process pay version 1") || !strings.Contains(err.Error(), "differs") || !strings.Contains(err.Error(), "`version: 3`") {
		t.Fatalf("changed v1: %v", err)
	}
	// Policy keys are not behaviour: changing them needs no new version.
	policy := buildInline(t, strings.Replace(versioned("1-shipped", "2-shipped"), "    version: 1\n", "    version: 1\n    on_finished: dead_letter\n    keep_finished: 1h\n", 1))
	if err := policy.CheckState(h.store); err != nil {
		t.Fatalf("changing a policy key: %v", err)
	}
}

func TestRemovedVersionWithRunningInstances(t *testing.T) {
	h := newHarness(t, buildInline(t, versioned("1-shipped")))
	h.mustSend(orderPlaced("o-1", t0))
	only2 := buildInline(t, versioned("2-shipped"))
	err := only2.CheckState(h.store)
	if err == nil || !strings.Contains(err.Error(), "process pay version 1 is not configured") || !strings.Contains(err.Error(), "1 instance(s)") || !strings.Contains(err.Error(), `"o-1"`) {
		t.Fatalf("removed v1 with a running instance: %v", err)
	}
	// Once the instance finished, version 1 can go.
	h.mustSend(paymentAuthorized("o-1", t0.Add(time.Second)))
	if err := only2.CheckState(h.store); err != nil {
		t.Fatalf("removed v1 without running instances: %v", err)
	}
	// A late event for the finished v1 instance uses the configured
	// process's on_finished policy.
	late := paymentAuthorized("o-1", t0.Add(2*time.Second))
	late.Envelope.ID = "auth-2"
	h.e = only2
	h.chain = newHarness(t, only2).chain
	if cmds := h.mustSend(late); len(cmds) != 0 || !hasMark(late.Marks, "pay", "finished_instance") {
		t.Fatalf("late event: %v %v", types(cmds), late.Marks)
	}
}
