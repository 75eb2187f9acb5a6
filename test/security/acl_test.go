package security

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMissingACLFailsAtStart removes one ACL of the minimum at a time:
// `ordo run` must exit non-zero within seconds with an error that names the
// Kafka error and the resource, commit nothing, and print no secret. With
// every ACL granted again, the same backlog is then processed exactly once.
func TestMissingACLFailsAtStart(t *testing.T) {
	sc := newScenario(t, "ordo-acl-"+randHex(3))
	cfg, _ := sc.writeConfig("ordo.yaml", cfgOpts{})
	pub := sc.newPublisher()
	pub.publish(300, 30)

	cases := []struct {
		missing string
		extra   string   // an ACL granted for this case only
		want    []string // all in the error
	}{
		{aclInputsRead, "", append([]string{"TOPIC_AUTHORIZATION_FAILED"}, sc.inputTopics()...)},
		{aclGroupRead, "", []string{"GROUP_AUTHORIZATION_FAILED", "group " + sc.group}},
		{aclOutputs, "", append([]string{"TOPIC_AUTHORIZATION_FAILED", "(output)", "--operation Write"}, sc.outs...)},
		{aclDLQ, "", []string{"TOPIC_AUTHORIZATION_FAILED", "topic " + sc.dlq + " (dead_letter_topic)", "may not even DESCRIBE it", "--operation Write --topic " + sc.dlq}},
		{aclDLQ, aclDLQRead, []string{"TOPIC_AUTHORIZATION_FAILED", "topic " + sc.dlq + " (dead_letter_topic)", "is not allowed to WRITE it", "--operation Write --topic " + sc.dlq}},
		{aclTxn, "", []string{"TRANSACTIONAL_ID_AUTHORIZATION_FAILED", "transactional id " + sc.txn + "-r1", "--transactional-id " + sc.txn + "-"}},
	}
	granted := map[string]bool{}
	for _, c := range cases {
		name := c.missing
		if c.extra != "" {
			name += " with " + c.extra
		}
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			sc := sc.with(t)
			if c.extra != "" {
				sc.grant(c.extra)
				defer sc.revoke(c.extra)
			}
			var give, take []string
			for _, a := range minimumACLs {
				switch {
				case a == c.missing && granted[a]:
					take = append(take, a)
				case a != c.missing && !granted[a]:
					give = append(give, a)
				}
			}
			sc.revoke(take...)
			sc.grant(give...)
			for _, a := range minimumACLs {
				granted[a] = a != c.missing
			}
			code, out, took := sc.runOrdo("missing-"+strings.ReplaceAll(name, " ", "-"), baseEnv(), 60*time.Second, "run", "--config", cfg)
			if code <= 0 {
				t.Fatalf("ordo did not fail without %s (exit %d after %v):\n%s", c.missing, code, took, tail(out, 30))
			}
			if took > 20*time.Second {
				t.Errorf("failing took %v; want a few seconds", took)
			}
			i := strings.LastIndex(out, "ordo: kafka preflight")
			if i < 0 {
				t.Fatalf("no preflight error in the output:\n%s", tail(out, 20))
			}
			msg := out[i:] // the error printed at exit
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("the error lacks %q:\n%s", w, tail(out, 20))
				}
			}
			if strings.Contains(out, sc.pass) {
				t.Error("the output contains the SASL password")
			}
			if c := sc.committedOffsets(); len(c) != 0 {
				t.Errorf("the group committed offsets although ordo could not run: %v", c)
			}
			t.Logf("%s missing: exit %d after %.1fs: %s", c.missing, code, took.Seconds(), firstProblem(out))
		})
	}

	// Everything granted: the backlog arrives exactly once.
	var give []string
	for _, a := range slices.Sorted(maps.Keys(granted)) {
		if !granted[a] {
			give = append(give, a)
		}
	}
	sc.grant(give...)
	p := sc.startOrdo("ordo", baseEnv(), "run", "--config", cfg)
	sc.waitProcessed(p, 2*time.Minute)
	p.stop(20 * time.Second)
	rep := sc.verify(pub)
	t.Logf("after granting every ACL: %d events, %d commands, %d dead letters, exactly once", rep.Published, rep.CommandsSeen, rep.DeadLettersSeen)
}

// firstProblem is the first listed problem of a preflight error.
func firstProblem(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "- ") {
			return strings.TrimSpace(l)
		}
	}
	return grepLines(out, "ordo: ", 1)
}

// with is the scenario reporting to t (a subtest).
func (sc *scenario) with(t *testing.T) *scenario {
	c := *sc
	c.t = t
	return &c
}
