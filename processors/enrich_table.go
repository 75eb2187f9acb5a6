package processors

// enrich_table: joins each event with a static lookup table loaded at start.
//
//	- type: enrich_table
//	  config:
//	    file: customers.csv        # required; relative to the config file's directory
//	    format: csv                # optional: csv, yaml or json; default from the extension
//	    key_column: customer_id    # CSV only: column holding the key (default: the first column)
//	    key: event.customer_id     # required CEL expression giving the lookup key
//	    into: customer             # required: the attrs key to set (CEL: attrs.customer)
//	    default: {tier: standard}  # optional row used for keys not in the table
//	    on_missing: default        # default | error | skip; default "default" when
//	                               # `default` is set, "skip" otherwise
//
// Table formats:
//   - CSV with a header row: every row becomes a record of column -> string
//     (the key column included); values are strings, as CSV has no types.
//     Duplicate keys are a config error.
//   - YAML or JSON: a mapping of key -> record, e.g. `cust-7: {tier: gold}`.
//     Values keep their types (ints are int64, floats float64).
//
// The key expression may yield a string or an int (compared as its decimal
// text); null counts as missing. When the key is found, attrs[into] is set to a
// copy of the row as a *schemas.Record (fields in name order; CEL reads it as
// attrs.customer.tier, Go code with processors.Field(ev.Attrs["customer"],
// "tier") or Record.Get; Natural() gives it as a map). Changes to the copy
// stay with the event. When it is missing: on_missing: default
// sets a copy of `default`; skip leaves attrs[into] unset (test it in CEL with
// has(attrs.customer)); error fails the event permanently (dead-letter).
//
// The table is read once, at build time; restart ordo to pick up changes. The
// lookup is a pure function of the event and the file, so re-runs after an
// abort enrich identically.

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ordo-dev/ordo/internal/arena"
	"github.com/ordo-dev/ordo/schemas"

	"gopkg.in/yaml.v3"
)

type enrichTableConfig struct {
	File      string         `yaml:"file"`
	Format    string         `yaml:"format"`
	KeyColumn string         `yaml:"key_column"`
	Key       string         `yaml:"key"`
	Into      string         `yaml:"into"`
	Default   map[string]any `yaml:"default"`
	OnMissing string         `yaml:"on_missing"`
}

type tableEnricher struct {
	key       *celExpr
	into      string
	rows      map[string]*schemas.Record
	def       *schemas.Record
	onMissing string
	// blocks are where events' copies of rows take their records and
	// slots from (internal/arena).
	blocks arena.Blocks[schemas.Record]
}

// tableRows lays out every row as a record once, at build time (field
// names sorted; rows with the same columns share one names slice). An event
// gets a copy of its row (copyRow): the table stays as loaded whatever a
// processor does to its copy.
func tableRows(rows map[string]map[string]any) map[string]*schemas.Record {
	names := map[string][]string{} // shared layouts, by their joined names
	out := make(map[string]*schemas.Record, len(rows))
	for k, m := range rows {
		out[k] = rowOf(m, names)
	}
	return out
}

func rowOf(m map[string]any, layouts map[string][]string) *schemas.Record {
	if m == nil {
		return nil
	}
	ns := slices.Sorted(maps.Keys(m))
	id := strings.Join(ns, "\x00")
	if shared, ok := layouts[id]; ok {
		ns = shared
	} else {
		layouts[id] = ns
	}
	row := &schemas.Record{Names: ns, Values: make([]any, len(ns))}
	for i, n := range ns {
		row.Values[i] = m[n]
	}
	return row
}

// copyRow returns the event's copy of row: its own record and slots
// (carved from shared blocks), the scalars shared (they are immutable),
// maps and lists of YAML/JSON tables cloned (CloneNatural).
func (t *tableEnricher) copyRow(row *schemas.Record) *schemas.Record {
	r, vals := t.blocks.Take(len(row.Values))
	for i, v := range row.Values {
		vals[i] = schemas.CloneNatural(v)
	}
	*r = schemas.Record{Names: row.Names, Values: vals}
	return r
}

func newEnrichTable(spec Spec, deps Deps) (Processor, error) {
	var cfg enrichTableConfig
	if err := spec.Decode(&cfg); err != nil {
		return nil, err
	}
	if cfg.File == "" {
		return nil, pathErr(spec, "no `file`", "set `file:` to a CSV (with header), YAML or JSON table, relative to the config file", "file")
	}
	if cfg.Into == "" {
		return nil, pathErr(spec, "no `into`", "set `into:` to the attrs key for the looked-up row, e.g. into: customer (CEL: attrs.customer)", "into")
	}
	if cfg.Key == "" {
		return nil, pathErr(spec, "no `key`", "set `key:` to a CEL expression giving the lookup key, e.g. event.customer_id", "key")
	}
	onMissing, err := validOnMissing(spec, cfg.OnMissing, cfg.Default != nil)
	if err != nil {
		return nil, err
	}
	keyExpr, err := compileCEL(spec, nodeAt(spec, "key"), keyPath(spec, "key"), cfg.Key, anyResult)
	if err != nil {
		return nil, err
	}
	path := cfg.File
	if !filepath.IsAbs(path) && deps.BaseDir != "" {
		path = filepath.Join(deps.BaseDir, path)
	}
	format := strings.ToLower(cfg.Format)
	if format == "" {
		switch strings.ToLower(filepath.Ext(path)) {
		case ".csv":
			format = "csv"
		case ".yaml", ".yml":
			format = "yaml"
		case ".json":
			format = "json"
		default:
			return nil, pathErr(spec, fmt.Sprintf("cannot tell the format of %q from its extension", cfg.File), "set `format:` to csv, yaml or json", "file")
		}
	}
	if cfg.KeyColumn != "" && format != "csv" {
		return nil, pathErr(spec, "key_column applies to CSV tables only", "remove `key_column:`; YAML/JSON tables are keyed by their top-level map keys", "key_column")
	}
	f, err := deps.open(cfg.File)
	if err != nil {
		return nil, pathErr(spec, fmt.Sprintf("cannot open table: %v", err), "check the path; relative paths are resolved against the config file's directory", "file")
	}
	defer f.Close()
	var rows map[string]map[string]any
	var lerr error
	switch format {
	case "csv":
		rows, lerr = loadCSVTable(f, cfg.KeyColumn)
	case "yaml", "json":
		rows, lerr = loadYAMLTable(f)
	default:
		return nil, pathErr(spec, fmt.Sprintf("unknown format %q", cfg.Format), "use csv, yaml or json", "format")
	}
	if lerr != nil {
		return nil, pathErr(spec, fmt.Sprintf("table %s: %v", cfg.File, lerr), "fix the table file", "file")
	}
	def := normalizeYAML(cfg.Default)
	var defMap map[string]any
	if def != nil {
		defMap = def.(map[string]any)
	}
	return &tableEnricher{key: keyExpr, into: cfg.Into, rows: tableRows(rows), def: rowOf(defMap, map[string][]string{}), onMissing: onMissing}, nil
}

func loadCSVTable(r io.Reader, keyColumn string) (map[string]map[string]any, error) {
	cr := csv.NewReader(r)
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil, errors.New("empty CSV, want a header row")
	}
	if err != nil {
		return nil, err
	}
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\ufeff")
	}
	keyIdx := 0
	if keyColumn != "" {
		keyIdx = -1
		for i, h := range header {
			if h == keyColumn {
				keyIdx = i
			}
		}
		if keyIdx < 0 {
			return nil, fmt.Errorf("no column %q in header %v", keyColumn, header)
		}
	}
	rows := map[string]map[string]any{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return nil, err
		}
		line, _ := cr.FieldPos(0)
		k := rec[keyIdx]
		if _, dup := rows[k]; dup {
			return nil, fmt.Errorf("line %d: duplicate key %q", line, k)
		}
		row := make(map[string]any, len(header))
		for i, h := range header {
			row[h] = rec[i]
		}
		rows[k] = row
	}
}

func loadYAMLTable(r io.Reader) (map[string]map[string]any, error) {
	var raw map[string]any
	if err := yaml.NewDecoder(r).Decode(&raw); err != nil {
		if err == io.EOF {
			return map[string]map[string]any{}, nil
		}
		return nil, err
	}
	rows := make(map[string]map[string]any, len(raw))
	for k, v := range raw {
		m, ok := normalizeYAML(v).(map[string]any)
		if !ok {
			return nil, fmt.Errorf("entry %q is %T, want a record (key: {field: value, ...})", k, v)
		}
		rows[k] = m
	}
	return rows, nil
}

// normalizeYAML converts yaml.v3 decoded values to natural Go: int -> int64,
// map[any]any / map[string]any -> map[string]any, nested.
func normalizeYAML(v any) any {
	switch x := v.(type) {
	case map[string]any:
		if x == nil {
			return nil
		}
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = normalizeYAML(e)
		}
		return m
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = normalizeYAML(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = normalizeYAML(e)
		}
		return l
	case int:
		return int64(x)
	case uint64:
		return int64(x)
	}
	return v
}

// ReadsRecords: the event is read through CEL only (see RecordReader).
func (t *tableEnricher) ReadsRecords() bool { return true }

func (t *tableEnricher) Process(_ context.Context, ev *Event) ([]Command, error) {
	k, ok, err := t.key.evalKey(newVars(ev))
	if err != nil {
		return nil, Permanent(fmt.Errorf("key: %v", err))
	}
	var row *schemas.Record
	if ok {
		row = t.rows[k]
	}
	if row == nil {
		switch t.onMissing {
		case "skip":
			return nil, nil
		case "error":
			return nil, Permanent(fmt.Errorf("no table row for key %q", k))
		}
		row = t.def
	}
	if ev.Attrs == nil {
		ev.Attrs = map[string]any{}
	}
	ev.Attrs[t.into] = t.copyRow(row)
	return nil, nil
}
