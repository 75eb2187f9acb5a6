package producer

import (
	"testing"
	"time"
)

func TestAppendHeaderTimeMatchesLayout(t *testing.T) {
	cases := []time.Time{
		time.Date(2026, 11, 27, 13, 45, 7, 123456789, time.UTC),
		time.Date(1999, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 5*3600+1800)),
		time.Date(1, 1, 1, 0, 0, 0, 999_000_000, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 1_000_000, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC),
		time.UnixMilli(0),
	}
	for _, c := range cases {
		want := c.UTC().Format(headerTimeLayout)
		if got := string(appendHeaderTime(nil, c)); got != want {
			t.Errorf("%v: got %q, want %q", c, got, want)
		}
	}
}
