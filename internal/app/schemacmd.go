package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/ordo-dev/ordo/schemas"
)

const schemasLong = `ordo schemas checks Avro schema files (.avsc) against the versions already
registered, the CI gate that keeps a schema change from breaking producers or
consumers. It uses ordo's own resolution rules (the ones ordo decodes with)
and explains each incompatibility: which field, which rule, how to fix it.

Which subject a file belongs to:
  --subject S                    every file (one record type) goes to S
  --topic T                      <T>-<full name>   (topic_record_name, the default with --topic)
  --topic T --subject-strategy topic_name    <T>-value (one record type per topic)
  (neither)                      <full name>       (record_name)
  --key                          key subjects: <T>-key, <full name>-key
A file whose types other files use (a shared com.acme.Money.avsc) always
goes to its record_name subject and becomes a schema reference.

Exit status: 0 compatible, 1 incompatible or invalid schema, 2 usage error
or the check could not run (registry unreachable, unknown git revision).`

// schemaTarget is where the files go and what they are checked against.
type schemaTarget struct {
	registry   string
	subject    string
	topic      string
	strategy   string
	key        bool
	timeout    time.Duration
	against    string
	againstGit string
	level      string
	output     string
}

func (t *schemaTarget) registerSubjectFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	def := os.Getenv("ORDO_REGISTRY_URL")
	if def == "" {
		def = "http://127.0.0.1:8081"
	}
	fl.StringVar(&t.registry, "registry", def, "schema registry URL (default $ORDO_REGISTRY_URL, else http://127.0.0.1:8081); http://user:password@host for basic auth")
	fl.StringVar(&t.subject, "subject", "", "put the file(s) under this subject (all must declare the same record type)")
	fl.StringVar(&t.topic, "topic", "", "the topic the records go to (subject <topic>-<full name>, or <topic>-value with --subject-strategy topic_name)")
	fl.StringVar(&t.strategy, "subject-strategy", "", "topic_name, record_name or topic_record_name (default: topic_record_name with --topic, else record_name)")
	fl.BoolVar(&t.key, "key", false, "the schemas are record keys (subjects end in -key)")
	fl.DurationVar(&t.timeout, "timeout", 10*time.Second, "timeout of each registry request")
}

func (t *schemaTarget) registerAgainstFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&t.against, "against", "", "compare with the .avsc files in this directory (matched by full name) instead of the registry")
	fl.StringVar(&t.againstGit, "against-git", "", "compare with the same paths at this git revision (e.g. origin/main) instead of the registry")
}

func (t *schemaTarget) local() bool { return t.against != "" || t.againstGit != "" }

func (t *schemaTarget) validate() error {
	if t.against != "" && t.againstGit != "" {
		return usageErr("--against and --against-git exclude each other")
	}
	if t.output != "" && t.output != "text" && t.output != "json" {
		return usageErr("--output %q: use text or json", t.output)
	}
	return nil
}

// subjects maps every parsed file to its subject (see schemasLong).
func (t *schemaTarget) subjects(files []*schemaFile) (map[*schemaFile]string, error) {
	var strategy schemas.SubjectStrategy
	switch {
	case t.strategy != "":
		s, err := schemas.ParseSubjectStrategy(t.strategy)
		if err != nil {
			return nil, usageErr("--subject-strategy: %v", err)
		}
		strategy = s
	case t.topic != "":
		strategy = schemas.TopicRecordName
	default:
		strategy = schemas.RecordName
	}
	if t.subject == "" && strategy != schemas.RecordName && t.topic == "" {
		return nil, usageErr("--subject-strategy %s needs --topic (fix: pass --topic T, or --subject S)", strategy)
	}
	types := map[string]bool{}
	out := map[*schemaFile]string{}
	for _, f := range files {
		if f.schema == nil {
			continue
		}
		name := f.schema.FullName
		switch {
		case f.shared:
			out[f] = schemas.RecordName.Subject("", name, false)
			continue
		case t.subject != "":
			out[f] = t.subject
		default:
			out[f] = strategy.Subject(t.topic, name, t.key)
		}
		types[name] = true
	}
	if len(types) > 1 && (t.subject != "" || strategy == schemas.TopicName && t.subject == "") {
		what := "--subject " + t.subject
		if t.subject == "" {
			what = "topic_name (subject " + t.topic + "-value)"
		}
		return nil, usageErr("%s would put %d record types under one subject, and a subject holds one record type (fix: check one type at a time, or use --topic T with the default topic_record_name strategy)", what, len(types))
	}
	return out, nil
}

func newSchemasCmd(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schemas",
		Short: "Check, register and diff Avro schema files against a schema registry (the CI gate)",
		Long:  schemasLong,
		Example: `  ordo schemas check --registry http://127.0.0.1:8081 --topic payments.v1 schemas/payments/
  ordo schemas check --against-git origin/main --level FULL schemas/
  ordo schemas register --topic payments.v1 schemas/payments/
  ordo schemas diff --topic payments.v1 schemas/payments/com.acme.payments.PaymentAuthorized.avsc`,
	}
	cmd.AddCommand(newSchemasCheckCmd(o), newSchemasRegisterCmd(o), newSchemasDiffCmd(o))
	return cmd
}

// usageArgs makes cobra's argument and flag errors exit status 2.
func usageArgs(cmd *cobra.Command) {
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr("%v (see --help)", err) })
	cmd.Args = func(_ *cobra.Command, args []string) error {
		if len(args) == 0 {
			return usageErr("no schema files given (fix: pass .avsc files or directories, e.g. %s schemas/avro)", cmd.CommandPath())
		}
		return nil
	}
}

type issueJSON struct {
	Rule      string `json:"rule"`
	Path      string `json:"path"`
	Direction string `json:"direction"`
	Version   int    `json:"version,omitempty"`
	Message   string `json:"message"`
	Fix       string `json:"fix"`
}

type checkResult struct {
	File    string      `json:"file"`
	Type    string      `json:"type,omitempty"`
	Subject string      `json:"subject,omitempty"`
	Status  string      `json:"status"` // compatible, incompatible, new, invalid
	Level   string      `json:"level,omitempty"`
	Against string      `json:"against,omitempty"`
	Note    string      `json:"note,omitempty"`
	Issues  []issueJSON `json:"incompatibilities,omitempty"`
}

func toIssues(found []schemas.Incompatibility) []issueJSON {
	out := make([]issueJSON, len(found))
	for i, in := range found {
		out[i] = issueJSON{Rule: in.Rule, Path: in.Path, Direction: in.Direction.String(), Version: in.Version, Message: in.Message, Fix: in.Fix}
	}
	return out
}

func newSchemasCheckCmd(o *options) *cobra.Command {
	var t schemaTarget
	cmd := &cobra.Command{
		Use:   "check [flags] FILE.avsc|DIR...",
		Short: "Check schema files against their subjects' versions under the subject's compatibility level",
		Long: `Checks each schema file against the versions of its subject in the registry
(under the subject's compatibility level, or --level), or against the
previous version of the same type in a directory (--against) or a git
revision (--against-git, e.g. in CI: --against-git origin/main). A subject
that does not exist yet passes: the file would be its version 1.

` + schemasLong,
		Example: `  # CI gate: every schema under schemas/ against the registry
  ordo schemas check --registry http://registry:8081 --topic payments.v1 schemas/payments/

  # against the main branch, without a registry, under FULL
  ordo schemas check --against-git origin/main --level FULL schemas/

  # what it prints for a new field without a default (exit status 1):
  FAIL  schemas/PaymentAuthorized.avsc → payments.v1-com.acme.payments.PaymentAuthorized (BACKWARD against version 1)
        1. field 'channel' (string) is new and has no default: the new schema cannot read records written with version 1, which lack it
           rule: READER_FIELD_MISSING_DEFAULT_VALUE (backward)
           fix:  add a default to field 'channel', e.g. "default": "", or make it optional: "type": ["null", "string"], "default": null`,
		RunE: func(cmd *cobra.Command, args []string) error { return runSchemasCheck(cmd.Context(), o, &t, args) },
	}
	usageArgs(cmd)
	t.registerSubjectFlags(cmd)
	t.registerAgainstFlags(cmd)
	cmd.Flags().StringVar(&t.level, "level", "", "compatibility level to check under (default: the subject's level in the registry; BACKWARD with --against/--against-git)")
	cmd.Flags().StringVar(&t.output, "output", "text", "text or json")
	return cmd
}

func runSchemasCheck(ctx context.Context, o *options, t *schemaTarget, args []string) error {
	if err := t.validate(); err != nil {
		return err
	}
	var level sr.CompatibilityLevel
	if t.level != "" {
		l, err := schemas.ParseLevel(t.level)
		if err != nil {
			return usageErr("--level: %v", err)
		}
		level = l
	}
	files, err := readSchemaFiles(args)
	if err != nil {
		return err
	}
	parseSchemaSet(files)
	subjects, err := t.subjects(files)
	if err != nil {
		return err
	}
	var (
		idx    map[string]*schemaFile
		reg    *registrySource
		source string
	)
	switch {
	case t.against != "":
		if idx, err = previousFromDir(t.against); err != nil {
			return err
		}
		source = t.against
	case t.againstGit != "":
		if idx, err = previousFromGit(ctx, t.againstGit, args); err != nil {
			return err
		}
		source = "git " + t.againstGit
	default:
		if reg, err = newRegistrySource(t.registry, t.timeout); err != nil {
			return err
		}
		source = reg.url
	}
	results := make([]checkResult, 0, len(files))
	for _, f := range files {
		r := checkResult{File: f.path, Subject: subjects[f]}
		if f.err != nil {
			r.Status, r.Note = "invalid", f.err.Error()
			results = append(results, r)
			continue
		}
		r.Type = f.schema.FullName
		lv := level
		var prev []schemas.Version
		if reg == nil {
			if lv == 0 {
				lv = sr.CompatBackward
			}
			p := previousOf(idx, f.schema)
			if p == nil {
				r.Status, r.Level = "new", lv.String()
				r.Note = fmt.Sprintf("%s has no previous version in %s: a new type, compatible by definition", f.schema.FullName, source)
				results = append(results, r)
				continue
			}
			prev = []schemas.Version{{Schema: p.schema}}
			r.Against = p.path
		} else {
			if lv == 0 {
				if lv, err = reg.level(ctx, r.Subject); err != nil {
					return err
				}
			}
			_, _, transitive := schemas.LevelChecks(lv)
			var exists bool
			if prev, exists, err = reg.versions(ctx, r.Subject, transitive); err != nil {
				return err
			}
			if !exists || len(prev) == 0 {
				r.Status, r.Level = "new", lv.String()
				r.Note = fmt.Sprintf("subject %q does not exist in the registry yet: this file would be its version 1, compatible by definition", r.Subject)
				if s := reg.suggest(ctx, r.Subject, f.schema.FullName); len(s) > 0 {
					r.Note += fmt.Sprintf(" (the registry has %s: if one of those is meant, pass --subject, or --topic/--subject-strategy to match it)", strings.Join(s, ", "))
				}
				results = append(results, r)
				continue
			}
			r.Against = versionList(prev)
		}
		r.Level = lv.String()
		if lv == sr.CompatNone {
			r.Status, r.Note = "compatible", "level NONE: any schema is accepted"
			results = append(results, r)
			continue
		}
		found := schemas.CheckCompatibility(lv, f.schema, prev)
		r.Status = "compatible"
		if len(found) > 0 {
			r.Status, r.Issues = "incompatible", toIssues(found)
		}
		results = append(results, r)
	}
	bad := 0
	for _, r := range results {
		if r.Status == "incompatible" || r.Status == "invalid" {
			bad++
		}
	}
	if t.output == "json" {
		enc := json.NewEncoder(o.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"ok": bad == 0, "against": source, "results": results}); err != nil {
			return err
		}
	} else {
		printCheck(o.stdout, results, source)
	}
	if bad > 0 {
		return &statusError{msg: fmt.Sprintf("%d of %d schema files failed the check", bad, len(results)), code: 1}
	}
	return nil
}

func versionList(prev []schemas.Version) string {
	if len(prev) == 1 {
		return "version " + strconv.Itoa(prev[0].Version)
	}
	return fmt.Sprintf("versions %d-%d", prev[0].Version, prev[len(prev)-1].Version)
}

func printCheck(w io.Writer, results []checkResult, source string) {
	counts := map[string]int{}
	for _, r := range results {
		counts[r.Status]++
		to := ""
		if r.Subject != "" {
			to = " → " + r.Subject
		}
		switch r.Status {
		case "invalid":
			fmt.Fprintf(w, "FAIL  %s: invalid schema: %s\n", r.File, r.Note)
		case "new":
			fmt.Fprintf(w, "NEW   %s%s: %s\n", r.File, to, r.Note)
		case "compatible":
			if r.Note != "" {
				fmt.Fprintf(w, "ok    %s%s (%s)\n", r.File, to, r.Note)
			} else {
				fmt.Fprintf(w, "ok    %s%s (%s against %s)\n", r.File, to, r.Level, r.Against)
			}
		case "incompatible":
			fmt.Fprintf(w, "FAIL  %s%s (%s against %s)\n", r.File, to, r.Level, r.Against)
			printIssues(w, r.Issues, "      ")
		}
	}
	fmt.Fprintf(w, "%d checked against %s: %d compatible, %d incompatible, %d invalid, %d new\n",
		len(results), source, counts["compatible"], counts["incompatible"], counts["invalid"], counts["new"])
}

func printIssues(w io.Writer, issues []issueJSON, indent string) {
	for i, in := range issues {
		fmt.Fprintf(w, "%s%d. %s\n", indent, i+1, in.Message)
		fmt.Fprintf(w, "%s   rule: %s (%s)\n", indent, in.Rule, in.Direction)
		fmt.Fprintf(w, "%s   fix:  %s\n", indent, in.Fix)
	}
}

func newSchemasRegisterCmd(o *options) *cobra.Command {
	var t schemaTarget
	cmd := &cobra.Command{
		Use:   "register [flags] FILE.avsc|DIR...",
		Short: "Register schema files under their subjects, after checking them",
		Long: `Registers each schema file under its subject (see ordo schemas --help),
files whose types others use first, as schema references of those others.
Each file is checked first like ordo schemas check does (against the
registry's versions under the subject's level); an incompatible file, and
the files that use its types, are not registered. Registering a schema the
subject already has is a no-op that prints its version and id.

` + schemasLong,
		Example: `  ordo schemas register --registry http://127.0.0.1:8081 --topic payments.v1 schemas/payments/
  registered  schemas/payments/PaymentAuthorized.avsc → payments.v1-com.acme.payments.PaymentAuthorized: version 1 (id 4)
  unchanged   schemas/payments/PaymentDeclined.avsc → payments.v1-com.acme.payments.PaymentDeclined: already version 1 (id 5)`,
		RunE: func(cmd *cobra.Command, args []string) error { return runSchemasRegister(cmd.Context(), o, &t, args) },
	}
	usageArgs(cmd)
	t.registerSubjectFlags(cmd)
	return cmd
}

func runSchemasRegister(ctx context.Context, o *options, t *schemaTarget, args []string) error {
	files, err := readSchemaFiles(args)
	if err != nil {
		return err
	}
	parseSchemaSet(files)
	w := o.stdout
	invalid := 0
	for _, f := range files {
		if f.err != nil {
			fmt.Fprintf(w, "FAIL  %s: invalid schema: %v\n", f.path, f.err)
			invalid++
		}
	}
	if invalid > 0 {
		return &statusError{msg: fmt.Sprintf("%d invalid schema files: nothing registered", invalid), code: 1}
	}
	subjects, err := t.subjects(files)
	if err != nil {
		return err
	}
	reg, err := newRegistrySource(t.registry, t.timeout)
	if err != nil {
		return err
	}
	version := map[int]int{} // file index -> registered version
	failed := map[int]bool{}
	nFailed := 0
	for _, i := range dependencyOrder(files) {
		f := files[i]
		subject := subjects[f]
		var blocked []string
		for _, d := range f.deps {
			if failed[d] {
				blocked = append(blocked, files[d].path)
			}
		}
		if len(blocked) > 0 {
			fmt.Fprintf(w, "SKIP  %s → %s: it uses types of %s, which failed\n", f.path, subject, strings.Join(blocked, ", "))
			failed[i] = true
			nFailed++
			continue
		}
		lv, err := reg.level(ctx, subject)
		if err != nil {
			return err
		}
		_, _, transitive := schemas.LevelChecks(lv)
		prev, _, err := reg.versions(ctx, subject, transitive)
		if err != nil {
			return err
		}
		if found := schemas.CheckCompatibility(lv, f.schema, prev); len(found) > 0 {
			fmt.Fprintf(w, "FAIL  %s → %s: incompatible (%s against %s), not registered\n", f.path, subject, lv, versionList(prev))
			printIssues(w, toIssues(found), "      ")
			failed[i] = true
			nFailed++
			continue
		}
		latest := 0
		if len(prev) > 0 {
			latest = prev[len(prev)-1].Version
		}
		var refs []sr.SchemaReference
		for _, d := range f.deps {
			refs = append(refs, sr.SchemaReference{Name: files[d].schema.FullName, Subject: subjects[files[d]], Version: version[d]})
		}
		ss, err := reg.cl.CreateSchema(ctx, subject, sr.Schema{Schema: f.text, Type: sr.TypeAvro, References: refs})
		if err != nil {
			var re *sr.ResponseError
			if errors.As(err, &re) && (re.StatusCode == http.StatusConflict || re.StatusCode == http.StatusUnprocessableEntity) {
				fmt.Fprintf(w, "FAIL  %s → %s: the registry refused it: HTTP %d: %s\n", f.path, subject, re.StatusCode, re.Message)
				failed[i] = true
				nFailed++
				continue
			}
			return reg.failed("register under "+subject, err)
		}
		version[i] = ss.Version
		if ss.Version <= latest {
			fmt.Fprintf(w, "unchanged   %s → %s: already version %d (id %d)\n", f.path, subject, ss.Version, ss.ID)
		} else {
			fmt.Fprintf(w, "registered  %s → %s: version %d (id %d)\n", f.path, subject, ss.Version, ss.ID)
		}
	}
	if nFailed > 0 {
		return &statusError{msg: fmt.Sprintf("%d of %d schema files were not registered", nFailed, len(files)), code: 1}
	}
	return nil
}

func newSchemasDiffCmd(o *options) *cobra.Command {
	var (
		t       schemaTarget
		version int
	)
	cmd := &cobra.Command{
		Use:   "diff [flags] FILE.avsc|DIR...",
		Short: "Show what changed in schema files against a registered version, and which levels the change passes",
		Long: `Lists the structural changes of each file against the latest version of its
subject (or --version N, or the previous file with --against/--against-git):
fields added, removed or renamed, type and default changes, enum symbols,
union branches; then whether the change is backward compatible (the new
schema reads old data) and forward compatible (old schemas read new data),
with the reasons, and which compatibility levels it would pass.

` + schemasLong,
		Example: `  ordo schemas diff --topic payments.v1 schemas/payments/PaymentAuthorized.avsc
  schemas/payments/PaymentAuthorized.avsc (com.acme.payments.PaymentAuthorized) against payments.v1-com.acme.payments.PaymentAuthorized version 1:
    + channel: field channel: union[null,string], default null
    backward (this schema reads data written with version 1): yes
    forward (version 1 reads data written with this schema): yes
    passes: NONE, BACKWARD, FORWARD, FULL (the _TRANSITIVE levels also check older versions)`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSchemasDiff(cmd.Context(), o, &t, version, args)
		},
	}
	usageArgs(cmd)
	t.registerSubjectFlags(cmd)
	t.registerAgainstFlags(cmd)
	cmd.Flags().IntVar(&version, "version", 0, "compare with this version of the subject (default: the latest)")
	return cmd
}

func runSchemasDiff(ctx context.Context, o *options, t *schemaTarget, version int, args []string) error {
	if err := t.validate(); err != nil {
		return err
	}
	if version < 0 || version > 0 && t.local() {
		return usageErr("--version: a positive version number, and only against the registry")
	}
	files, err := readSchemaFiles(args)
	if err != nil {
		return err
	}
	parseSchemaSet(files)
	for _, f := range files {
		if f.err != nil {
			return fmt.Errorf("%s: invalid schema: %w", f.path, f.err)
		}
	}
	subjects, err := t.subjects(files)
	if err != nil {
		return err
	}
	var (
		idx map[string]*schemaFile
		reg *registrySource
	)
	switch {
	case t.against != "":
		idx, err = previousFromDir(t.against)
	case t.againstGit != "":
		idx, err = previousFromGit(ctx, t.againstGit, args)
	default:
		reg, err = newRegistrySource(t.registry, t.timeout)
	}
	if err != nil {
		return err
	}
	w := o.stdout
	for _, f := range files {
		var (
			old         *schemas.Schema
			what, label string
			oldVersion  int
		)
		if reg == nil {
			p := previousOf(idx, f.schema)
			if p == nil {
				return fmt.Errorf("%s: %s has no previous version in %s%s: nothing to diff against", f.path, f.schema.FullName, t.against, t.againstGit)
			}
			old, what, label = p.schema, p.path, "the previous schema"
		} else {
			subject := subjects[f]
			nums, err := reg.cl.SubjectVersions(ctx, subject)
			if notFound(err) || err == nil && len(nums) == 0 {
				msg := fmt.Sprintf("%s: subject %q does not exist in the registry at %s: nothing to diff against (it would become version 1)", f.path, subject, reg.url)
				if s := reg.suggest(ctx, subject, f.schema.FullName); len(s) > 0 {
					msg += fmt.Sprintf("; the registry has %s (fix: pass --subject, or --topic/--subject-strategy to match)", strings.Join(s, ", "))
				}
				return errors.New(msg)
			}
			if err != nil {
				return reg.failed("versions of "+subject, err)
			}
			v := nums[len(nums)-1]
			if version > 0 {
				if !slices.Contains(nums, version) {
					return fmt.Errorf("%s: subject %q has no version %d (it has %v)", f.path, subject, version, nums)
				}
				v = version
			}
			if old, err = reg.version(ctx, subject, v); err != nil {
				return err
			}
			if old == nil {
				return fmt.Errorf("%s: subject %q version %d is not an Avro schema", f.path, subject, v)
			}
			what, label, oldVersion = fmt.Sprintf("%s version %d", subject, v), "version "+strconv.Itoa(v), v
		}
		fmt.Fprintf(w, "%s (%s) against %s:\n", f.path, f.schema.FullName, what)
		changes := schemas.Diff(old, f.schema)
		if len(changes) == 0 {
			fmt.Fprintln(w, "  no structural changes")
		}
		for _, c := range changes {
			fmt.Fprintf(w, "  %s\n", c)
		}
		prev := []schemas.Version{{Version: oldVersion, Schema: old}}
		back := schemas.CheckCompatibility(sr.CompatBackward, f.schema, prev)
		fwd := schemas.CheckCompatibility(sr.CompatForward, f.schema, prev)
		verdict := func(title string, found []schemas.Incompatibility) {
			if len(found) == 0 {
				fmt.Fprintf(w, "  %s: yes\n", title)
				return
			}
			fmt.Fprintf(w, "  %s: NO\n", title)
			for _, in := range found {
				fmt.Fprintf(w, "    - %s [%s]\n      fix: %s\n", in.Message, in.Rule, in.Fix)
			}
		}
		verdict(fmt.Sprintf("backward (this schema reads data written with %s)", label), back)
		verdict(fmt.Sprintf("forward (%s reads data written with this schema)", label), fwd)
		passes := []string{"NONE"}
		if len(back) == 0 {
			passes = append(passes, "BACKWARD")
		}
		if len(fwd) == 0 {
			passes = append(passes, "FORWARD")
		}
		if len(back) == 0 && len(fwd) == 0 {
			passes = append(passes, "FULL")
		}
		fmt.Fprintf(w, "  passes: %s (the _TRANSITIVE levels also check older versions)\n", strings.Join(passes, ", "))
	}
	return nil
}
