package schemas

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
)

// This file loads the schemas a config names (`schemas.files`,
// `schemas.subjects`): the reader schemas of input events and the schemas of
// commands. They are read at start, so a new event type or command needs an
// .avsc file (or a registry subject) and a config edit, not a rebuild.

// LoadError is one problem found while loading schema files or subjects.
// Entry is the index of the config list entry it concerns (schemas.files or
// schemas.subjects), so that the caller can point at that entry's line.
type LoadError struct {
	Entry int
	Msg   string
	Fix   string
}

// Error implements error.
func (e *LoadError) Error() string {
	if e.Fix == "" {
		return e.Msg
	}
	return e.Msg + " (fix: " + e.Fix + ")"
}

// Loaded is a set of schemas keyed by full name, with where each came from.
type Loaded struct {
	Schemas map[string]*Schema
	// From is each schema's origin for messages: the file (as the config
	// names it, or below a directory it names) or "subject S version V".
	From map[string]string
}

// NewLoaded returns an empty set.
func NewLoaded() *Loaded {
	return &Loaded{Schemas: map[string]*Schema{}, From: map[string]string{}}
}

// add adds s, read from origin, unless its full name is already taken; then
// it says by what.
func (l *Loaded) add(s *Schema, origin string) (taken string, ok bool) {
	if o, dup := l.From[s.FullName]; dup {
		return o, false
	}
	l.Schemas[s.FullName] = s
	l.From[s.FullName] = origin
	return "", true
}

// LoadFiles loads the .avsc files named by paths, and every *.avsc file
// below the directories it names (recursively, in lexical order; names
// starting with "." are skipped, which also skips the hidden copies of a
// Kubernetes ConfigMap mount). Relative paths are relative to base. fsys nil
// means the OS file system (absolute paths allowed); otherwise paths are
// slash-separated names inside fsys (the embedded example).
//
// A schema's type is its full name (namespace.name), whatever the file is
// called; it must be a record. Every problem is reported, each as a
// *LoadError joined into the returned error: a missing path, a directory
// without .avsc files, a file that does not parse (with its line for JSON
// syntax errors), a top-level type that is not a record, and two files that
// declare the same full name. The schemas that did load are returned even
// then.
func LoadFiles(fsys fs.FS, base string, paths []string) (*Loaded, error) {
	l := NewLoaded()
	src := fileSource{fsys: fsys, base: base}
	seen := map[string]bool{} // real paths loaded, so a file listed twice (itself and via its directory) counts once
	var errs []error
	fail := func(entry int, msg, fix string) { errs = append(errs, &LoadError{Entry: entry, Msg: msg, Fix: fix}) }
	load := func(entry int, real, shown string) {
		if seen[real] {
			return
		}
		seen[real] = true
		text, err := src.readFile(real)
		if err != nil {
			fail(entry, fmt.Sprintf("read %s: %v", shown, unwrapPath(err)), "make the file readable by ordo")
			return
		}
		s, err := parseSchema(0, string(text))
		if err != nil {
			fail(entry, fmt.Sprintf("%s%s: %v", shown, jsonLine(text, err), err),
				"correct the schema (Avro specification: https://avro.apache.org/docs/1.12.0/specification/)")
			return
		}
		if s.root.kind != kRecord {
			fail(entry, fmt.Sprintf("%s declares a %s, not a record", shown, s.root.kind),
				`an event or command schema is a record ({"type": "record", "name": ..., "fields": [...]}) with an envelope field, as in examples/orders/schemas`)
			return
		}
		if other, ok := l.add(s, shown); !ok {
			fail(entry, fmt.Sprintf("%s declares %s, which %s declares too", shown, s.FullName, other),
				"keep one schema per type: remove one of the two files from schemas.files (or from its directory), or rename the type")
		}
	}
	for i, p := range paths {
		if p == "" {
			continue // config validation reports empty entries
		}
		real, err := src.resolve(p)
		if err != nil {
			fail(i, err.Error(), "in the embedded example, schemas must lie in its directory")
			continue
		}
		info, err := src.stat(real)
		if err != nil {
			where := "relative paths are relative to the config file's directory"
			if src.fsys == nil {
				if abs, err := filepath.Abs(base); err == nil {
					where += " (" + abs + ")"
				}
			}
			fail(i, fmt.Sprintf("%s: %v", p, unwrapPath(err)), "fix the path or create it; "+where)
			continue
		}
		if !info.IsDir() {
			load(i, real, p)
			continue
		}
		found := 0
		err = src.walk(real, func(name string, d fs.DirEntry) {
			found++
			rel := src.rel(real, name)
			load(i, name, src.join(p, rel))
		})
		if err != nil {
			fail(i, fmt.Sprintf("read directory %s: %v", p, unwrapPath(err)), "make the directory readable by ordo")
			continue
		}
		if found == 0 {
			fail(i, fmt.Sprintf("directory %s has no .avsc files", p), "put the schemas in it (one .avsc file per type) or list the files themselves")
		}
	}
	return l, errors.Join(errs...)
}

// fileSource reads schema files from an fs.FS or, when fsys is nil, from
// the OS file system, whose paths may be absolute or reach above base.
type fileSource struct {
	fsys fs.FS
	base string
}

func (s fileSource) resolve(p string) (string, error) {
	if s.fsys == nil {
		if filepath.IsAbs(p) {
			return filepath.Clean(p), nil
		}
		return filepath.Join(s.base, p), nil
	}
	name := path.Join(s.base, p)
	if !fs.ValidPath(name) {
		return "", fmt.Errorf("%s is outside the embedded example's directory", p)
	}
	return name, nil
}

func (s fileSource) stat(name string) (fs.FileInfo, error) {
	if s.fsys == nil {
		return os.Stat(name)
	}
	return fs.Stat(s.fsys, name)
}

func (s fileSource) readFile(name string) ([]byte, error) {
	if s.fsys == nil {
		return os.ReadFile(name)
	}
	return fs.ReadFile(s.fsys, name)
}

// walk calls fn for each *.avsc file below root in lexical order, skipping
// names that start with ".".
func (s fileSource) walk(root string, fn func(name string, d fs.DirEntry)) error {
	visit := func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name != root && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".avsc") {
			fn(name, d)
		}
		return nil
	}
	if s.fsys == nil {
		// A directory given as a symlink (a mounted volume) is walked too.
		if r, err := filepath.EvalSymlinks(root); err == nil {
			root = r
		}
		return filepath.WalkDir(root, func(name string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return visit(name, d, nil)
		})
	}
	return fs.WalkDir(s.fsys, root, visit)
}

// rel is name relative to root (both from walk).
func (s fileSource) rel(root, name string) string {
	if s.fsys == nil {
		if r, err := filepath.EvalSymlinks(root); err == nil {
			root = r
		}
		if r, err := filepath.Rel(root, name); err == nil {
			return r
		}
		return name
	}
	return strings.TrimPrefix(strings.TrimPrefix(name, root), "/")
}

// join is how a file below a listed directory is named in messages.
func (s fileSource) join(dir, rel string) string {
	if s.fsys == nil {
		return filepath.Join(dir, rel)
	}
	return path.Join(dir, rel)
}

// unwrapPath drops the *fs.PathError's repeat of the path.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// jsonLine is ":line:col" of a JSON syntax error in text, "" for other
// errors.
func jsonLine(text []byte, err error) string {
	var se *json.SyntaxError
	if !errors.As(err, &se) || se.Offset <= 0 || int(se.Offset) > len(text) {
		return ""
	}
	before := text[:se.Offset]
	line := 1 + strings.Count(string(before), "\n")
	col := int(se.Offset) - strings.LastIndexByte(string(before), '\n') - 1
	return fmt.Sprintf(":%d:%d", line, col)
}

// Backoff paces LoadSubjects' retries of registry faults.
type Backoff struct {
	// Initial is the first wait (default 500ms); each retry doubles it up to
	// Max (default 30s).
	Initial, Max time.Duration
	// Notify, when set, is called before each wait, e.g. to log why.
	Notify func(subject string, attempt int, wait time.Duration, err error)
}

// LoadSubjects adds the latest version of each subject to l, as a reader
// schema with its registry id. Registry faults (unreachable, timeouts,
// 401/403, 5xx: *TransientError) are retried with b until ctx ends, because
// a registry outage at start is not a reason to crash-loop; the last fault is
// returned when ctx ends first. What retrying cannot fix is a *LoadError: a
// subject the registry does not have, a schema ordo cannot use (not Avro,
// schema references, does not parse, not a record) and a full name that
// another file or subject declares differently. Every such problem is
// reported.
func LoadSubjects(ctx context.Context, reg *Registry, subjects []string, l *Loaded, b Backoff) error {
	if b.Initial <= 0 {
		b.Initial = 500 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 30 * time.Second
	}
	b.Max = max(b.Max, b.Initial)
	var errs []error
	for i, subject := range subjects {
		if subject == "" {
			continue // config validation reports empty entries
		}
		s, version, err := fetchLatest(ctx, reg, subject, b)
		if err != nil {
			if isTransientErr(err) {
				return fmt.Errorf("schemas.subjects[%d] %s: %w", i, subject, err) // ctx ended while the registry was failing
			}
			errs = append(errs, &LoadError{Entry: i, Msg: err.Error(), Fix: subjectFix(err)})
			continue
		}
		origin := fmt.Sprintf("subject %s version %d", subject, version)
		if s.root.kind != kRecord {
			errs = append(errs, &LoadError{Entry: i, Msg: fmt.Sprintf("%s declares a %s, not a record", origin, s.root.kind),
				Fix: "name a subject whose schema is an event or command record"})
			continue
		}
		if other, ok := l.add(s, origin); !ok && !jsonEqualText(l.Schemas[s.FullName].Text, s.Text) {
			// The same schema under several subjects (one type on several
			// topics) is fine; two different schemas for one type are not.
			errs = append(errs, &LoadError{Entry: i, Msg: fmt.Sprintf("%s declares %s, which %s declares differently", origin, s.FullName, other),
				Fix: "keep one schema per type: drop the file or the subject"})
		}
	}
	return errors.Join(errs...)
}

// fetchLatest asks for the subject's latest version until it gets an answer
// that retrying cannot change.
func fetchLatest(ctx context.Context, reg *Registry, subject string, b Backoff) (*Schema, int, error) {
	wait := b.Initial
	for attempt := 1; ; attempt++ {
		s, version, err := latestReader(ctx, reg, subject)
		if err == nil || !isTransientErr(err) {
			return s, version, err
		}
		if b.Notify != nil {
			b.Notify(subject, attempt, wait, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, 0, err
		case <-t.C:
		}
		wait = min(2*wait, b.Max)
	}
}

// latestReader fetches and parses one subject's latest version.
func latestReader(ctx context.Context, reg *Registry, subject string) (*Schema, int, error) {
	fctx, cancel := context.WithTimeout(ctx, reg.fetchTimeout)
	defer cancel()
	ss, err := reg.cl.SchemaByVersion(fctx, subject, -1)
	if err != nil {
		if IsNotRegistered(err) {
			// Permanent for this start: waiting for someone to register
			// the subject would look like a hang; a typo is likelier.
			return nil, 0, &missingSubjectError{subject: subject, err: err}
		}
		return nil, 0, classifyOwn("latest version of subject "+subject, err)
	}
	op := fmt.Sprintf("subject %s version %d (id %d)", subject, ss.Version, ss.ID)
	if ss.Type != sr.TypeAvro {
		return nil, 0, &RegistryError{Op: op, Err: fmt.Errorf("schema type %v is not Avro", ss.Type)}
	}
	if len(ss.References) > 0 {
		return nil, 0, &RegistryError{Op: op, Err: errors.New("schema references are not supported")}
	}
	s, err := parseSchema(ss.ID, ss.Schema.Schema)
	if err != nil {
		return nil, 0, &RegistryError{Op: op, Err: err}
	}
	return s, ss.Version, nil
}

// missingSubjectError is the registry saying it has no such subject.
type missingSubjectError struct {
	subject string
	err     error
}

func (e *missingSubjectError) Error() string {
	return fmt.Sprintf("the registry has no subject %q (%v)", e.subject, e.err)
}

func (e *missingSubjectError) Unwrap() error { return e.err }

func subjectFix(err error) string {
	var me *missingSubjectError
	if errors.As(err, &me) {
		return "register the subject first, or fix its name (GET <registry.url>/subjects lists them)"
	}
	return "register a self-contained Avro record schema (no references) under this subject, or list an .avsc file in schemas.files instead"
}
