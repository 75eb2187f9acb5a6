package processes

import (
	"time"

	"github.com/ordo-dev/ordo/processors"
)

// definition is one compiled process version.
type definition struct {
	name       string
	version    int
	onUnknown  string // buffer | ignore | dead_letter
	onFinished string // ignore | dead_letter
	earlyTTL   time.Duration
	// keepFinished is how long a finished instance is kept for late events.
	keepFinished time.Duration
	timers       map[string]time.Duration
	start        *step
	states       map[string]*stateDef
	// types are the event types the definition handles anywhere.
	types map[string]bool
	// fingerprint identifies the definition's behaviour (everything but the
	// policy keys): stored at first use, compared by CheckState.
	fingerprint string
}

type stateDef struct {
	name        string
	terminal    string // the status of a terminal state; "" for others
	join        []*step
	then        *step
	transitions []*step
}

type setVar struct {
	name string
	expr *processors.Expr
}

type step struct {
	key          string // config key, for errors and Compensation.Step
	on           string // event type (start, legs, transitions)
	timer        string // timer name (transitions)
	leg          string // join leg name
	when         *processors.Expr
	set          []setVar // sorted by name
	emit         []*processors.Emit
	compensation []*processors.Emit
	compensate   bool
	startTimers  []string
	cancelTimers []string
	gotoState    string // "" : stay
}

func (s *step) trigger() string {
	if s.timer != "" {
		return "firing of timer " + s.timer
	}
	return s.on
}

// handledLater reports whether a state other than current, not terminal,
// takes events of type t: such an event is early, not unwanted.
func (d *definition) handledLater(t, current string) bool {
	for name, st := range d.states {
		if name == current || st.terminal != "" {
			continue
		}
		for _, l := range st.join {
			if l.on == t {
				return true
			}
		}
		for _, tr := range st.transitions {
			if tr.on == t {
				return true
			}
		}
	}
	return false
}
