package testkit

import (
	"testing"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/ordo-dev/ordo/internal/devenv"
	"github.com/ordo-dev/ordo/schemas"
)

// DemoRegistry is one test's schema registry: ordo's embedded registry on a
// free loopback port (closed when the test ends), a client for it, and a
// serde over the demo schemas (topic_name subjects, auto-register), as the
// upstream producers' SDK uses it.
type DemoRegistry struct {
	URL    string
	Client *sr.Client
	Serde  *schemas.Serde
}

// StartDemoRegistry starts a DemoRegistry for t.
func StartDemoRegistry(t testing.TB) *DemoRegistry {
	t.Helper()
	reg, err := devenv.StartRegistry("127.0.0.1:0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	readers, err := schemas.Demo()
	if err != nil {
		t.Fatal(err)
	}
	return &DemoRegistry{URL: reg.URL(), Client: cl, Serde: schemas.NewSerde(schemas.NewRegistry(cl), readers)}
}
