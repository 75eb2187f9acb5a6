package processes

// Versioning as in Zeebe and Temporal (notes §3): an instance finishes under
// the definition version it started with; a changed definition is a new
// `version:` and applies to new instances (the highest version starts
// them). The first instance of a version stores the version's fingerprint
// (m/def/<process>/<version>); CheckState refuses a state whose running
// instances would continue under a different definition than they started
// with.

import (
	"errors"
	"fmt"
	"sort"

	"github.com/ordo-dev/ordo/internal/state"
)

// CheckState checks a partition's state against the configured
// definitions; run it after the partition's restore, before processing.
// It fails (naming process, version and the fix) when a stored fingerprint
// differs from the configured definition of that version, or when running
// instances have a version that is no longer configured.
func (e *Engine) CheckState(r state.Reader) error {
	type pv struct {
		process string
		version int
	}
	var errs []error
	missing := map[pv]bool{}
	var perr error
	err := r.Range([]byte(prefixDef), prefixEnd([]byte(prefixDef)), func(k, v []byte) bool {
		pk, err := ParseKey(k)
		if err != nil {
			perr = err
			return false
		}
		d := e.def(pk.Process, pk.Version)
		if d == nil {
			missing[pv{pk.Process, pk.Version}] = true
			return true
		}
		if string(v) != d.fingerprint {
			next := e.latest(pk.Process).version + 1
			errs = append(errs, fmt.Errorf("process %s version %d: the configured definition differs from the one its instances started with (fingerprint %s at first use, %s now); a definition cannot change under its instances: "+
				"fix: restore version %d as it was and add the changed definition as `version: %d` (new instances use the highest version; `ordo process list` shows the running ones)",
				pk.Process, pk.Version, v, d.fingerprint, pk.Version, next))
		}
		return true
	})
	if err == nil {
		err = perr
	}
	if err != nil {
		return fmt.Errorf("processes: checking state: %w", err)
	}
	if len(missing) > 0 {
		count := map[pv]int{}
		example := map[pv]string{}
		lo, hi := InstancesRange("")
		err := r.Range(lo, hi, func(_, v []byte) bool {
			in, err := DecodeInstance(v)
			if err != nil || in.Finished() {
				return true
			}
			k := pv{in.Process, in.Version}
			if missing[k] {
				count[k]++
				if example[k] == "" {
					example[k] = in.CorrelationID
				}
			}
			return true
		})
		if err != nil {
			return fmt.Errorf("processes: checking state: %w", err)
		}
		keys := make([]pv, 0, len(count))
		for k := range count {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			return keys[i].process < keys[j].process || keys[i].process == keys[j].process && keys[i].version < keys[j].version
		})
		for _, k := range keys {
			errs = append(errs, fmt.Errorf("process %s version %d is not configured, but %d instance(s) of it are running (e.g. correlation id %q): "+
				"fix: keep the version %d definition under processes: (unchanged) until they finish, then remove it",
				k.process, k.version, count[k], example[k], k.version))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("processes: the state does not fit the configured definitions: %w", errors.Join(errs...))
	}
	return nil
}
