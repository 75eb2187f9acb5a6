package processes

import (
	"testing"
	"time"
)

// TestBuildOptions: without options the defaults hold; Source names the
// emitted commands' envelope.source; a later option replaces an earlier
// one and a value <= 0 or "" keeps the default.
func TestBuildOptions(t *testing.T) {
	e := sagaEngine(t)
	if e.window != DefaultDedupeWindow || e.source != "ordo" {
		t.Errorf("defaults: window %v source %q, want %v and ordo", e.window, e.source, DefaultDedupeWindow)
	}
	e, err := Build(exampleProcesses(t), exampleFile, demoDeps(t), DedupeWindow(time.Hour), DedupeWindow(2*time.Hour), Source("fulfilment"))
	if err != nil {
		t.Fatal(err)
	}
	if e.window != 2*time.Hour {
		t.Errorf("window %v, want the later option's 2h", e.window)
	}
	cmds := newHarness(t, e).mustSend(orderPlaced("o-1", t0))
	if len(cmds) == 0 {
		t.Fatal("OrderPlaced emitted nothing")
	}
	if src := cmds[0].Value["envelope"].(map[string]any)["source"]; src != "fulfilment" {
		t.Errorf("command envelope.source %v, want fulfilment", src)
	}
	e, err = Build(exampleProcesses(t), exampleFile, demoDeps(t), DedupeWindow(-time.Second), Source(""), nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.window != DefaultDedupeWindow || e.source != "ordo" {
		t.Errorf("zero values: window %v source %q, want the defaults", e.window, e.source)
	}
}
