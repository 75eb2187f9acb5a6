package consumer

import "github.com/twmb/franz-go/pkg/kgo"

// SetChaos installs a hook that runs at named points of the loop
// ("after-produce", "before-end"), for crash tests.
func (p *Pipeline) SetChaos(fn func(point string, sess *kgo.GroupTransactSession)) { p.chaos = fn }
