package consumer

import "github.com/twmb/franz-go/pkg/kgo"

// SetChaos installs a hook that runs at named points of the loop
// ("after-produce", "before-end"), for crash tests against a real broker:
// fn gets the real franz-go session (a fake session never reaches it).
func (p *Pipeline) SetChaos(fn func(point string, sess *kgo.GroupTransactSession)) {
	p.chaos = func(point string, sess txnSession) {
		if s, ok := sess.(kgoSession); ok {
			fn(point, s.GroupTransactSession)
		}
	}
}
