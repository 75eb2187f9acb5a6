package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/ordo-dev/ordo/schemas"
)

// statusError is an error that ends ordo with a given exit status (Main
// finds the exitError through Unwrap) and prints only its message.
type statusError struct {
	msg  string
	code exitError
}

func (e *statusError) Error() string { return e.msg }
func (e *statusError) Unwrap() error { return e.code }

// usageErr is exit status 2: bad flags or arguments, or the check could
// not run (registry unreachable, unknown git revision).
func usageErr(format string, args ...any) error {
	return &statusError{msg: fmt.Sprintf(format, args...), code: 2}
}

// schemaFile is one .avsc file of a set; files of a set may use each
// other's named types (they become Confluent schema references).
type schemaFile struct {
	path   string
	text   string
	schema *schemas.Schema // nil when err is set
	err    error
	deps   []int // files whose types this one uses
	shared bool  // another file of the set uses its types
}

// readSchemaFiles reads FILES/DIRS (directories: every *.avsc below them,
// in lexical order).
func readSchemaFiles(args []string) ([]*schemaFile, error) {
	var out []*schemaFile
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, usageErr("%s: %v (fix: pass .avsc files or directories holding them)", a, err)
		}
		if !st.IsDir() {
			b, err := os.ReadFile(a)
			if err != nil {
				return nil, usageErr("%s: %v", a, err)
			}
			out = append(out, &schemaFile{path: a, text: string(b)})
			continue
		}
		n := len(out)
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".avsc") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out = append(out, &schemaFile{path: p, text: string(b)})
			return nil
		})
		if err != nil {
			return nil, usageErr("%s: %v", a, err)
		}
		if len(out) == n {
			return nil, usageErr("%s: no .avsc files in this directory", a)
		}
	}
	if len(out) == 0 {
		return nil, usageErr("no schema files given (fix: pass .avsc files or directories, e.g. ordo schemas check schemas/avro)")
	}
	return out, nil
}

// parseSchemaSet parses every file with the named types of the others
// available, and checks the defaults; a file that fails keeps its error.
func parseSchemaSet(files []*schemaFile) {
	texts := make([]string, len(files))
	for i, f := range files {
		texts[i] = f.text
	}
	for i, f := range files {
		others := make([]string, 0, len(files)-1)
		index := make([]int, 0, len(files)-1)
		for j := range files {
			if j != i {
				others, index = append(others, texts[j]), append(index, j)
			}
		}
		exp, used, err := schemas.ExpandReferences(f.text, others)
		if err == nil {
			f.schema, err = schemas.ParseSchema(0, exp)
		}
		if err == nil {
			err = f.schema.CheckDefaults()
		}
		if err != nil {
			f.schema, f.err = nil, err
			continue
		}
		for _, u := range used {
			f.deps = append(f.deps, index[u])
			files[index[u]].shared = true
		}
	}
}

// byName indexes parsed files by the full name of their top-level type.
func byName(files []*schemaFile) map[string]*schemaFile {
	m := map[string]*schemaFile{}
	for _, f := range files {
		if f.schema != nil {
			if _, dup := m[f.schema.FullName]; !dup {
				m[f.schema.FullName] = f
			}
		}
	}
	return m
}

// dependencyOrder returns file indexes with every file after the files it
// uses (references must be registered first).
func dependencyOrder(files []*schemaFile) []int {
	state := make([]int, len(files)) // 0 new, 1 visiting, 2 done
	var out []int
	var visit func(i int)
	visit = func(i int) {
		if state[i] != 0 {
			return
		}
		state[i] = 1
		for _, d := range files[i].deps {
			visit(d)
		}
		state[i] = 2
		out = append(out, i)
	}
	for i := range files {
		visit(i)
	}
	return out
}

// previousFromDir reads the previous versions from a directory of .avsc
// files, indexed by full name.
func previousFromDir(dir string) (map[string]*schemaFile, error) {
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return nil, usageErr("--against %s: not a directory (fix: pass a directory holding the previous .avsc files)", dir)
	}
	files, err := readSchemaFiles([]string{dir})
	if err != nil {
		return nil, err
	}
	parseSchemaSet(files)
	for _, f := range files {
		if f.err != nil {
			return nil, fmt.Errorf("--against: %s: %w", f.path, f.err)
		}
	}
	return byName(files), nil
}

// previousFromGit reads, at git revision rev, the .avsc files under the
// given paths (or the files themselves), indexed by full name.
func previousFromGit(ctx context.Context, rev string, paths []string) (map[string]*schemaFile, error) {
	var files []*schemaFile
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err == nil {
			abs, err = filepath.EvalSymlinks(abs)
		}
		if err != nil {
			return nil, usageErr("%s: %v", p, err)
		}
		st, err := os.Stat(abs)
		if err != nil {
			return nil, usageErr("%s: %v", p, err)
		}
		dir := abs
		if !st.IsDir() {
			dir = filepath.Dir(abs)
		}
		top, err := git(ctx, dir, "rev-parse", "--show-toplevel")
		if err != nil {
			return nil, usageErr("--against-git: %s is not in a git work tree: %v", p, err)
		}
		root, err := filepath.EvalSymlinks(strings.TrimSpace(top))
		if err != nil {
			return nil, usageErr("--against-git: %v", err)
		}
		if _, err := git(ctx, root, "rev-parse", "--verify", "--quiet", rev+"^{commit}"); err != nil {
			return nil, usageErr("--against-git %s: no such revision in %s (fix: fetch it, e.g. git fetch origin main, or pass a commit, tag or branch that exists)", rev, root)
		}
		rel, err := filepath.Rel(root, abs)
		if err != nil {
			return nil, usageErr("--against-git: %v", err)
		}
		list, err := git(ctx, root, "ls-tree", "-r", "-z", "--name-only", rev, "--", filepath.ToSlash(rel))
		if err != nil {
			return nil, usageErr("--against-git: %v", err)
		}
		for _, name := range strings.Split(strings.TrimRight(list, "\x00"), "\x00") {
			if name == "" || st.IsDir() && !strings.HasSuffix(name, ".avsc") {
				continue
			}
			text, err := git(ctx, root, "show", rev+":"+name)
			if err != nil {
				return nil, usageErr("--against-git: %v", err)
			}
			files = append(files, &schemaFile{path: rev + ":" + name, text: text})
		}
	}
	parseSchemaSet(files)
	for _, f := range files {
		if f.err != nil {
			return nil, fmt.Errorf("--against-git: %s: %w", f.path, f.err)
		}
	}
	return byName(files), nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %v %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// previousOf finds the previous version of s in an index by full name,
// else by one of its aliases (a renamed type).
func previousOf(idx map[string]*schemaFile, s *schemas.Schema) *schemaFile {
	if f, ok := idx[s.FullName]; ok {
		return f
	}
	for _, a := range s.Aliases() {
		if f, ok := idx[a]; ok {
			return f
		}
	}
	return nil
}

// registrySource reads subjects, versions and levels from a registry.
type registrySource struct {
	url      string
	cl       *sr.Client
	timeout  time.Duration
	subjects []string // lazily, for suggestions
}

func newRegistrySource(raw string, timeout time.Duration) (*registrySource, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, usageErr("--registry %q: not a URL (fix: e.g. --registry http://127.0.0.1:8081)", raw)
	}
	opts := []sr.ClientOpt{sr.HTTPClient(&http.Client{Timeout: timeout})}
	if u.User != nil {
		pass, _ := u.User.Password()
		opts = append(opts, sr.BasicAuth(u.User.Username(), pass))
		u.User = nil
	}
	opts = append(opts, sr.URLs(u.String()))
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, usageErr("--registry: %v", err)
	}
	return &registrySource{url: u.String(), cl: cl, timeout: timeout}, nil
}

func notFound(err error) bool {
	var re *sr.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}

// failed is a registry error that stops the check.
func (s *registrySource) failed(op string, err error) error {
	var re *sr.ResponseError
	if errors.As(err, &re) {
		return usageErr("schema registry %s: %s: HTTP %d: %s", s.url, op, re.StatusCode, re.Message)
	}
	return usageErr("schema registry %s: %s: %v (fix: start one, e.g. ordo registry, or pass --registry URL / set ORDO_REGISTRY_URL)", s.url, op, err)
}

// level returns the compatibility level that applies to subject.
func (s *registrySource) level(ctx context.Context, subject string) (sr.CompatibilityLevel, error) {
	res := s.cl.Compatibility(sr.WithParams(ctx, sr.DefaultToGlobal), subject)[0]
	if res.Err != nil && notFound(res.Err) {
		// a registry that ignores defaultToGlobal
		res = s.cl.Compatibility(ctx)[0]
	}
	if res.Err != nil {
		return 0, s.failed("compatibility level of "+subject, res.Err)
	}
	return res.Level, nil
}

// versions returns the versions of subject that a check at level needs
// (all for _TRANSITIVE, else the latest), oldest first, parsed with their
// references; exists is false for an unknown subject.
func (s *registrySource) versions(ctx context.Context, subject string, all bool) (prev []schemas.Version, exists bool, err error) {
	nums, err := s.cl.SubjectVersions(ctx, subject)
	if notFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, s.failed("versions of "+subject, err)
	}
	sort.Ints(nums)
	if !all && len(nums) > 0 {
		nums = nums[len(nums)-1:]
	}
	for _, v := range nums {
		sch, err := s.version(ctx, subject, v)
		if err != nil {
			return nil, true, err
		}
		if sch != nil {
			prev = append(prev, schemas.Version{Version: v, Schema: sch})
		}
	}
	return prev, true, nil
}

// version fetches one version parsed with its references (nil: not Avro).
func (s *registrySource) version(ctx context.Context, subject string, v int) (*schemas.Schema, error) {
	ss, err := s.cl.SchemaByVersion(ctx, subject, v)
	if err != nil {
		return nil, s.failed(fmt.Sprintf("%s version %d", subject, v), err)
	}
	if ss.Type != sr.TypeAvro {
		return nil, nil
	}
	refs, err := s.referenceTexts(ctx, ss.References, 0)
	if err != nil {
		return nil, err
	}
	p, err := schemas.ParseSchemaWithReferences(ss.ID, ss.Schema.Schema, refs)
	if err != nil {
		return nil, fmt.Errorf("schema registry %s: %s version %d (id %d) is not a usable Avro schema: %w", s.url, subject, v, ss.ID, err)
	}
	return p, nil
}

func (s *registrySource) referenceTexts(ctx context.Context, refs []sr.SchemaReference, depth int) ([]string, error) {
	if depth > 32 {
		return nil, fmt.Errorf("schema references nest deeper than 32 levels")
	}
	var out []string
	for _, ref := range refs {
		ss, err := s.cl.SchemaByVersion(ctx, ref.Subject, ref.Version)
		if err != nil {
			return nil, s.failed(fmt.Sprintf("reference %s (%s version %d)", ref.Name, ref.Subject, ref.Version), err)
		}
		sub, err := s.referenceTexts(ctx, ss.References, depth+1)
		if err != nil {
			return nil, err
		}
		exp, _, err := schemas.ExpandReferences(ss.Schema.Schema, sub)
		if err != nil {
			return nil, err
		}
		out = append(out, exp)
	}
	return out, nil
}

// suggest lists existing subjects a user may have meant for subject (the
// type's subject under another strategy, or a near spelling).
func (s *registrySource) suggest(ctx context.Context, subject, fullName string) []string {
	if s.subjects == nil {
		subs, err := s.cl.Subjects(ctx)
		if err != nil {
			return nil
		}
		s.subjects = append(subs, []string(nil)...)
		if s.subjects == nil {
			s.subjects = []string{}
		}
	}
	var out []string
	for _, c := range s.subjects {
		if c != subject && (strings.Contains(c, fullName) || editDistance(c, subject) <= 3) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	if len(out) > 5 {
		out = out[:5]
	}
	return out
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
