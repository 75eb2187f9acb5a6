package schemas

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// loadErrors splits LoadFiles/LoadSubjects' error into its *LoadErrors.
func loadErrors(t *testing.T, err error) []*LoadError {
	t.Helper()
	if err == nil {
		return nil
	}
	var out []*LoadError
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var le *LoadError
		if !errors.As(e, &le) {
			t.Fatalf("not a *LoadError: %T %v", e, e)
		}
		out = append(out, le)
	}
	return out
}

// TestLoadFilesDirectoriesAndFiles: directories are read recursively (only
// *.avsc, hidden names skipped), a file reached twice counts once, and the
// type is the schema's full name whatever the file is called.
func TestLoadFilesDirectoriesAndFiles(t *testing.T) {
	base := t.TempDir()
	writeFiles(t, base, map[string]string{
		"schemas/t.A.avsc":           simpleA,
		"schemas/more/anything.avsc": simpleB,
		"schemas/README.md":          "not a schema",
		"schemas/.old/t.A.avsc":      simpleA, // hidden: an editor backup, a ConfigMap's data dir
	})
	l, err := LoadFiles(nil, base, []string{"schemas", "schemas/t.A.avsc"})
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(func(yield func(string) bool) {
		for k := range l.Schemas {
			if !yield(k) {
				return
			}
		}
	}); !slices.Equal(got, []string{"t.A", "t.B"}) {
		t.Fatalf("loaded %v", got)
	}
	if l.From["t.B"] != filepath.Join("schemas", "more", "anything.avsc") {
		t.Errorf("t.B from %q", l.From["t.B"])
	}
	if l.Schemas["t.A"].ID != 0 {
		t.Errorf("a local schema has id %d", l.Schemas["t.A"].ID)
	}
}

// TestLoadFilesReportsEveryProblem: each problem names the list entry, the
// file and what to do; the good schemas still load.
func TestLoadFilesReportsEveryProblem(t *testing.T) {
	base := t.TempDir()
	writeFiles(t, base, map[string]string{
		"good/t.A.avsc":   simpleA,
		"bad/syntax.avsc": "{\n  \"type\": \"record\",\n  \"name\": \"S\",,\n}\n",
		"bad/str.avsc":    `"string"`,
		"bad/typo.avsc":   `{"type":"record","name":"T","fields":[{"name":"a","type":"strin"}]}`,
		"dup.avsc":        strings.Replace(simpleA, `"x"`, `"z"`, 1), // another t.A
		"empty/x.txt":     "",
	})
	l, err := LoadFiles(nil, base, []string{"good", "bad", "dup.avsc", "missing.avsc", "empty", ""})
	got := loadErrors(t, err)
	want := []struct {
		entry int
		parts []string
	}{
		{1, []string{filepath.Join("bad", "str.avsc") + " declares a string, not a record", "fix: an event or command schema is a record"}},
		{1, []string{filepath.Join("bad", "syntax.avsc") + ":3:15: schema JSON: invalid character ','", "fix: correct the schema"}},
		{1, []string{filepath.Join("bad", "typo.avsc") + `: record T: field a: unknown type name "strin"`}},
		{2, []string{"dup.avsc declares t.A, which " + filepath.Join("good", "t.A.avsc") + " declares too", "fix: keep one schema per type"}},
		{3, []string{"missing.avsc: no such file or directory", "relative to the config file's directory (" + base + ")"}},
		{4, []string{"directory empty has no .avsc files"}},
	}
	if len(got) != len(want) {
		t.Fatalf("want %d errors, got %d: %v", len(want), len(got), err)
	}
	for i, w := range want {
		if got[i].Entry != w.entry {
			t.Errorf("error %d: entry %d, want %d: %v", i, got[i].Entry, w.entry, got[i])
		}
		for _, p := range w.parts {
			if !strings.Contains(got[i].Error(), p) {
				t.Errorf("error %d: %q lacks %q", i, got[i], p)
			}
		}
	}
	if len(l.Schemas) != 1 || l.Schemas["t.A"] == nil {
		t.Errorf("the good schema did not load: %v", l.From)
	}
}

// TestLoadFilesConfigMapMount: a Kubernetes ConfigMap volume holds each key
// as a symlink into a hidden, timestamped directory; each schema loads once.
func TestLoadFilesConfigMapMount(t *testing.T) {
	base := t.TempDir()
	mount := filepath.Join(base, "schemas")
	writeFiles(t, mount, map[string]string{"..2026_01_01/t.A.avsc": simpleA, "..2026_01_01/t.B.avsc": simpleB})
	if err := os.Symlink("..2026_01_01", filepath.Join(mount, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"t.A.avsc", "t.B.avsc"} {
		if err := os.Symlink(filepath.Join("..data", n), filepath.Join(mount, n)); err != nil {
			t.Fatal(err)
		}
	}
	// and the mount itself reached through a symlink
	if err := os.Symlink(mount, filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"schemas", "link", mount} {
		l, err := LoadFiles(nil, base, []string{p})
		if err != nil || len(l.Schemas) != 2 {
			t.Fatalf("%s: %d schemas, err %v", p, len(l.Schemas), err)
		}
	}
}

// TestLoadFilesFS: inside an fs.FS (the embedded example) paths are
// relative to the config's directory and cannot leave the FS.
func TestLoadFilesFS(t *testing.T) {
	fsys := fstest.MapFS{
		"ex/ordo.yaml":            {Data: []byte("x")},
		"ex/schemas/t.A.avsc":     {Data: []byte(simpleA)},
		"ex/schemas/b/b.avsc":     {Data: []byte(simpleB)},
		"other/t.C.avsc":          {Data: []byte(strings.Replace(simpleA, `"A"`, `"C"`, 1))},
		"ex/schemas/.hidden.avsc": {Data: []byte("garbage")},
	}
	l, err := LoadFiles(fsys, "ex", []string{"schemas/", "../other/t.C.avsc"})
	if err != nil || len(l.Schemas) != 3 || l.From["t.B"] != "schemas/b/b.avsc" {
		t.Fatalf("err %v, from %v", err, l.From)
	}
	_, err = LoadFiles(fsys, "ex", []string{"../../etc"})
	if errs := loadErrors(t, err); len(errs) != 1 || !strings.Contains(errs[0].Msg, "outside the embedded example") {
		t.Fatalf("escape: %v", err)
	}
}

// TestDemoMatchesLoadFiles: the built-in default and the example's
// `schemas.files: [schemas/]` are the same schemas.
func TestDemoMatchesLoadFiles(t *testing.T) {
	demo, err := Demo()
	if err != nil {
		t.Fatal(err)
	}
	l, err := LoadFiles(DemoFS(), ".", []string{"."})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Schemas) != len(demo) || len(demo) == 0 {
		t.Fatalf("%d files, %d demo schemas", len(l.Schemas), len(demo))
	}
	for name, s := range demo {
		if l.Schemas[name] == nil || l.Schemas[name].Text != s.Text {
			t.Errorf("%s differs", name)
		}
	}
}

// TestLoadSubjects: the latest version of each subject, with its id; one
// schema under two subjects is fine, two different schemas for one type,
// a missing subject and schema references are errors naming the entry.
func TestLoadSubjects(t *testing.T) {
	fake, cl := newFakeSR(t, nil)
	fake.SeedSchema("a-value", 1, 3, sr.Schema{Schema: simpleA})
	fake.SeedSchema("a-value", 2, 4, sr.Schema{Schema: strings.Replace(simpleA, `"int"}`, `"int"},{"name":"n","type":"long","default":0}`, 1)})
	fake.SeedSchema("a2-value", 1, 7, sr.Schema{Schema: strings.Replace(simpleA, `"int"}`, `"int"},{"name":"n","type":"long","default":0}`, 1)})
	fake.SeedSchema("b-value", 1, 5, sr.Schema{Schema: simpleB})
	fake.SeedSchema("refs-value", 1, 6, sr.Schema{Schema: `{"type":"record","name":"R","fields":[{"name":"a","type":"t.A"}]}`,
		References: []sr.SchemaReference{{Name: "t.A", Subject: "a-value", Version: 1}}})
	reg := NewRegistry(cl)

	l := NewLoaded()
	if err := LoadSubjects(context.Background(), reg, []string{"a-value", "a2-value"}, l, Backoff{}); err != nil {
		t.Fatal(err)
	}
	if s := l.Schemas["t.A"]; s == nil || s.ID != 4 || l.From["t.A"] != "subject a-value version 2" {
		t.Fatalf("got %v from %q", s, l.From["t.A"])
	}

	files, err := LoadFiles(fstest.MapFS{"t.B.avsc": {Data: []byte(strings.Replace(simpleB, `"string"`, `"bytes"`, 1))}}, ".", []string{"."})
	if err != nil {
		t.Fatal(err)
	}
	err = LoadSubjects(context.Background(), reg, []string{"b-value", "nope-value", "refs-value"}, files, Backoff{})
	errs := loadErrors(t, err)
	if len(errs) != 3 {
		t.Fatalf("want 3 errors: %v", err)
	}
	for i, w := range []struct {
		entry int
		parts []string
	}{
		{0, []string{"subject b-value version 1 declares t.B, which t.B.avsc declares differently", "fix: keep one schema per type"}},
		{1, []string{`the registry has no subject "nope-value"`, "fix: register the subject first, or fix its name"}},
		{2, []string{"schema references are not supported", "fix: register a self-contained"}},
	} {
		if errs[i].Entry != w.entry {
			t.Errorf("error %d: entry %d, want %d", i, errs[i].Entry, w.entry)
		}
		for _, p := range w.parts {
			if !strings.Contains(errs[i].Error(), p) {
				t.Errorf("error %d: %q lacks %q", i, errs[i], p)
			}
		}
	}
}

// TestLoadSubjectsRetriesRegistryFaults: a registry that fails at start is
// waited for (each retry reported), not a start failure; when ctx ends
// first, the transient fault is returned.
func TestLoadSubjectsRetriesRegistryFaults(t *testing.T) {
	fake, cl := newFakeSR(t, nil)
	fake.SeedSchema("a-value", 1, 3, sr.Schema{Schema: simpleA})
	var failing atomic.Int32
	failing.Store(3)
	fake.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if failing.Add(-1) >= 0 {
			confluentError(http.StatusServiceUnavailable, 50003, "overloaded")(w, r)
			return true
		}
		return false
	})
	reg := NewRegistry(cl)
	var notes []string
	b := Backoff{Initial: 5 * time.Millisecond, Max: 10 * time.Millisecond, Notify: func(subject string, attempt int, wait time.Duration, err error) {
		notes = append(notes, subject)
		if !transient(err) || wait > 10*time.Millisecond {
			t.Errorf("attempt %d: wait %v, err %v", attempt, wait, err)
		}
	}}
	l := NewLoaded()
	if err := LoadSubjects(context.Background(), reg, []string{"a-value"}, l, b); err != nil {
		t.Fatal(err)
	}
	if len(notes) != 3 || l.Schemas["t.A"] == nil {
		t.Fatalf("%d retries reported, want 3; loaded %v", len(notes), l.From)
	}

	failing.Store(1 << 30)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := LoadSubjects(ctx, reg, []string{"a-value"}, NewLoaded(), Backoff{Initial: 5 * time.Millisecond})
	var le *LoadError
	if err == nil || !transient(err) || errors.As(err, &le) || !strings.Contains(err.Error(), "schemas.subjects[0] a-value") {
		t.Fatalf("want a transient error naming the subject, got %v", err)
	}
}
