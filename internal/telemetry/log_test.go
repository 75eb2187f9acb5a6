package telemetry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestRedactHandlerScrubsEveryValue(t *testing.T) {
	const secret = "hunter2-secret"
	redact := func(s string) string { return strings.ReplaceAll(s, secret, "[REDACTED]") }
	var buf bytes.Buffer
	log := slog.New(NewRedactHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), redact))
	log = log.With("conn", "pw="+secret).WithGroup("g")
	log.Warn("login with "+secret+" failed",
		"err", fmt.Errorf("dial: %w", errors.New("password "+secret)),
		"url", "http://u:"+secret+"@h",
		"nested", slog.GroupValue(slog.String("p", secret)),
		"list", []string{"a", secret},
		"n", 42,
	)
	log.DebugContext(context.Background(), "plain", "ok", true)
	out := buf.String()
	if strings.Contains(out, secret) {
		t.Fatalf("a secret was logged:\n%s", out)
	}
	for _, want := range []string{`"msg":"login with [REDACTED] failed"`, `"conn":"pw=[REDACTED]"`, `"err":"dial: password [REDACTED]"`, `"n":42`, `"ok":true`, `"p":"[REDACTED]"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
}
