package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
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
	return out
}

func envName(path string) string {
	return "ORDO_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(path))
}

func walkEnv(t reflect.Type, prefix string, fn func(path string, index []int)) {
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
				fn(path, idx)
			case ft.Kind() == reflect.Struct:
				walk(ft, path, idx)
			case ft.Kind() == reflect.String, ft.Kind() == reflect.Int, ft.Kind() == reflect.Int32, ft.Kind() == reflect.Bool,
				ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.String,
				ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Bool:
				fn(path, idx)
			}
		}
	}
	walk(t, prefix, nil)
}

// applyEnv sets fields from ORDO_* variables (env is os.Environ() form).
func applyEnv(c *Config, env []string) error {
	vals := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "ORDO_") {
			vals[k] = v
		}
	}
	if v, ok := vals["ORDO_REPLICA_ID"]; ok {
		if _, set := vals["ORDO_KAFKA_REPLICA_ID"]; !set {
			vals["ORDO_KAFKA_REPLICA_ID"] = v
		}
	}
	// kafka.tls was a bool; it is now a block whose switch is enabled.
	if v, ok := vals["ORDO_KAFKA_TLS"]; ok {
		if _, set := vals["ORDO_KAFKA_TLS_ENABLED"]; !set {
			vals["ORDO_KAFKA_TLS_ENABLED"] = v
		}
	}
	var errs []string
	root := reflect.ValueOf(c).Elem()
	walkEnv(root.Type(), "", func(path string, index []int) {
		name := envName(path)
		raw, ok := vals[name]
		if !ok {
			return
		}
		f := root.FieldByIndex(index)
		if err := setFromString(f, raw); err != nil {
			errs = append(errs, fmt.Sprintf("%s (overrides %s): %v", name, path, err))
		}
	})
	if len(errs) > 0 {
		sort.Strings(errs)
		return &Error{File: "environment", Key: "ORDO_*", Msg: strings.Join(errs, "; "), Fix: "unset the variable or give a value of the right type"}
	}
	return nil
}

func setFromString(f reflect.Value, raw string) error {
	switch {
	case f.Type() == reflect.TypeFor[Duration]():
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("%q is not a duration (e.g. 100ms, 45s)", raw)
		}
		f.SetInt(int64(d))
	case f.Kind() == reflect.String:
		f.SetString(raw)
	case f.Kind() == reflect.Int, f.Kind() == reflect.Int32:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", raw)
		}
		f.SetInt(n)
	case f.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%q is not true/false", raw)
		}
		f.SetBool(b)
	case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%q is not true/false", raw)
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
