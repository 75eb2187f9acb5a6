package app

import (
	"context"
	"log/slog"
)

// minLevel drops records below min. franz-go logs every transaction at info
// level, which would drown ordo's own logs; it gets warn unless --log-level
// is debug.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}

// kgoLogger is the logger handed to franz-go.
func kgoLogger(log *slog.Logger) *slog.Logger {
	if log.Enabled(context.Background(), slog.LevelDebug) {
		return log.With("component", "franz-go")
	}
	return slog.New(minLevel{log.Handler(), slog.LevelWarn}).With("component", "franz-go")
}
