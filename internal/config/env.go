package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ordo-dev/ordo/internal/config/yamlcheck"
)

// EnvVars lists every ORDO_* override with its key path, e.g.
// ORDO_KAFKA_BROKERS → kafka.brokers. Scalars and string lists (comma
// separated) can be overridden; the pipeline cannot (it lives in the file).
// ORDO_REPLICA_ID is an alias of ORDO_KAFKA_REPLICA_ID, ORDO_KAFKA_TLS of
// ORDO_KAFKA_TLS_ENABLED.
func EnvVars() map[string]string {
	out := map[string]string{}
	walkEnv(reflect.TypeFor[Config](), "", func(path string, _ []int) {
		out[envName(path)] = path
	})
	out["ORDO_STATE_DIR"] = "state.dir" // the optional state: block (see applyEnv)
	return out
}

func envName(path string) string {
	return "ORDO_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(path))
}

// walkEnv calls fn for every key that an ORDO_* variable can set.
func walkEnv(t reflect.Type, prefix string, fn func(path string, index []int)) {
	walkKeys(t, prefix, func(path string, index []int, settable bool) {
		if settable {
			fn(path, index)
		}
	})
}

// walkKeys calls fn for every key of struct t, blocks included, saying
// whether a string can set it (scalars, durations, string lists).
func walkKeys(t reflect.Type, prefix string, fn func(path string, index []int, settable bool)) {
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" || !f.IsExported() {
				continue
			}
			path := tag
			if prefix != "" {
				path = prefix + "." + tag
			}
			idx := append(append([]int{}, index...), i)
			ft := f.Type
			switch {
			case ft == reflect.TypeFor[Duration]():
				fn(path, idx, true)
			case ft.Kind() == reflect.Struct:
				fn(path, idx, false)
				walk(ft, path, idx)
			default:
				fn(path, idx, envSettable(ft))
			}
		}
	}
	walk(t, prefix, nil)
}

// OtherEnvVars are the ORDO_* variables that are not config keys, with what
// reads them. ordo accepts them in its environment; any other ORDO_* name
// that is not a config key (EnvVars) is an error, so a typo such as
// ORDO_KAFKA_BROKRES cannot be silently ignored. Names starting with
// ORDO_TEST are reserved for tests and accepted too. Add a variable here (and
// to docs/config.md) when a script or test starts exporting a new one.
func OtherEnvVars() map[string]string {
	return map[string]string{
		"ORDO_REPLICA_ID":     "alias of ORDO_KAFKA_REPLICA_ID",
		"ORDO_KAFKA_TLS":      "alias of ORDO_KAFKA_TLS_ENABLED (kafka.tls was a boolean)",
		"ORDO_CACHE_DIR":      "cache root of the test and benchmark scripts (Kafka jars, Jaeger, foreign clients)",
		"ORDO_DEBUG_LOG_DIR":  "consumer tests: keep each replica's log there",
		"ORDO_TESTKIT_DOCKER": "internal/testkit: 0 or false never starts Docker",
	}
}

// reservedEnvPrefix marks test-only variables (ORDO_TESTKIT_DOCKER, ...).
const reservedEnvPrefix = "ORDO_TEST"

// applyEnv sets fields from ORDO_* variables (env is os.Environ() form). It
// returns one error per bad variable: a value of the wrong type, a key that
// cannot be set from the environment, or an unknown name (with did-you-mean).
// The keys it set are recorded in c.env.
func applyEnv(c *Config, env []string) []*Error {
	vals := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "ORDO_") {
			vals[k] = v
		}
	}
	aliased := false
	if v, ok := vals["ORDO_REPLICA_ID"]; ok {
		if _, set := vals["ORDO_KAFKA_REPLICA_ID"]; !set {
			vals["ORDO_KAFKA_REPLICA_ID"] = v
			aliased = true
		}
	}
	// kafka.tls was a bool; it is now a block whose switch is enabled.
	if v, ok := vals["ORDO_KAFKA_TLS"]; ok {
		if _, set := vals["ORDO_KAFKA_TLS_ENABLED"]; !set {
			vals["ORDO_KAFKA_TLS_ENABLED"] = v
		}
	}
	if c.env == nil {
		c.env = map[string]string{}
	}
	var errs []*Error
	known := map[string]bool{"ORDO_KAFKA_TLS": true, "ORDO_STATE_DIR": true}
	root := reflect.ValueOf(c).Elem()
	walkEnv(root.Type(), "", func(path string, index []int) {
		name := envName(path)
		known[name] = true
		raw, ok := vals[name]
		if !ok {
			return
		}
		f := root.FieldByIndex(index)
		if aliased && name == "ORDO_KAFKA_REPLICA_ID" {
			name = "ORDO_REPLICA_ID"
		}
		if err := setFromString(f, raw); err != nil {
			errs = append(errs, &Error{File: "environment", Key: name, Msg: fmt.Sprintf("%q is not %s (overrides %s)", raw, err.what, path),
				Fix: fmt.Sprintf("set %s=%s or unset it", name, err.example)})
			return
		}
		c.env[path] = name
	})
	// state: is an optional block (a pointer), which the walk above does
	// not enter; its directory is what deployments set per replica. Without
	// a state: block it is ignored (a deployment template may set it for
	// every config).
	if v, ok := vals["ORDO_STATE_DIR"]; ok && c.State != nil {
		c.State.Dir = v
		c.env["state.dir"] = "ORDO_STATE_DIR"
	}
	other := OtherEnvVars()
	blocks := nonEnvKeys()
	names := make([]string, 0, len(vals))
	for n := range vals {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if known[name] || other[name] != "" || strings.HasPrefix(name, reservedEnvPrefix) {
			continue
		}
		if path, ok := blocks[name]; ok {
			errs = append(errs, &Error{File: "environment", Key: name, Msg: fmt.Sprintf("cannot be set from the environment (%s is a block or a map)", path),
				Fix: fmt.Sprintf("set %s in the config file; `ordo config env` lists the variables", path)})
			continue
		}
		msg := "unknown variable"
		if s := suggestEnv(name, known); s != "" {
			msg = fmt.Sprintf("unknown variable (did you mean %s?)", s)
		}
		errs = append(errs, &Error{File: "environment", Key: name, Msg: msg,
			Fix: "rename or unset it; `ordo config env` lists the ORDO_* variables ordo reads"})
	}
	return errs
}

// suggestEnv finds the known name closest to name, comparing the parts
// after ORDO_ (the shared prefix would make every name look close).
func suggestEnv(name string, known map[string]bool) string {
	var cands []string
	for k := range known {
		cands = append(cands, strings.TrimPrefix(k, "ORDO_"))
	}
	for k := range OtherEnvVars() {
		cands = append(cands, strings.TrimPrefix(k, "ORDO_"))
	}
	sort.Strings(cands)
	if s := yamlcheck.Suggest(strings.TrimPrefix(name, "ORDO_"), cands); s != "" {
		return "ORDO_" + s
	}
	return ""
}

// nonEnvKeys maps ORDO_* names of keys that exist but cannot be set from
// the environment (blocks, maps, the pipeline) to their key.
func nonEnvKeys() map[string]string {
	out := map[string]string{}
	walkKeys(reflect.TypeFor[Config](), "", func(path string, _ []int, settable bool) {
		if !settable {
			out[envName(path)] = path
		}
	})
	return out
}

// envSettable reports whether a field of type t can be set from a string.
func envSettable(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String, reflect.Int, reflect.Int32, reflect.Int64, reflect.Bool, reflect.Float64:
		return true
	case reflect.Slice:
		return t.Elem().Kind() == reflect.String
	case reflect.Pointer:
		return t.Elem().Kind() == reflect.Bool
	}
	return false
}

// envError is a value that does not parse, with what was expected.
type envError struct{ what, example string }

// setFromString sets f from raw; on a bad value it leaves f as it was and
// says what was expected, with the current value (the default or the file's)
// as the example.
func setFromString(f reflect.Value, raw string) *envError {
	switch {
	case f.Type() == reflect.TypeFor[Duration]():
		d, err := time.ParseDuration(raw)
		if err != nil {
			ex := "100ms"
			if f.Int() != 0 {
				ex = time.Duration(f.Int()).String()
			}
			return &envError{"a duration", ex}
		}
		f.SetInt(int64(d))
	case f.Kind() == reflect.String:
		f.SetString(raw)
	case f.Kind() == reflect.Int, f.Kind() == reflect.Int32, f.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, f.Type().Bits())
		if err != nil {
			ex := "10"
			if f.Int() != 0 {
				ex = strconv.FormatInt(f.Int(), 10)
			}
			return &envError{"an integer", ex}
		}
		f.SetInt(n)
	case f.Kind() == reflect.Float64:
		x, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return &envError{"a number", "0.5"}
		}
		f.SetFloat(x)
	case f.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return &envError{"true or false", "true"}
		}
		f.SetBool(b)
	case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return &envError{"true or false", "true"}
		}
		f.Set(reflect.ValueOf(&b))
	case f.Kind() == reflect.Slice:
		var items []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		f.Set(reflect.ValueOf(items))
	}
	return nil
}
