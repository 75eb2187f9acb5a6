package processes

// State keys. Every key of a correlation id contains it, so it lives in that
// id's process-log partition (and key lane). A correlation id and an event
// id are escaped (`%` → %25, `/` → %2F) so that `/` separates the parts
// unambiguously: the buffer of cid "a" can never range over the keys of cid
// "a/b". Process, state and timer names cannot contain `/` (checked at
// Build). Times are Unix milliseconds, 8 bytes big-endian, so they sort.
//
//	i/<cid>/<process>                         instance (Instance, encoded)
//	d/<cid>/<event id>                        dedupe mark: seen-at time
//	t/<due>/<cid>/<process>/<timer>           timer row: version
//	b/<cid>/<process>/<offset 8 bytes BE>     buffered early event
//	x/<expiry>/<key>                          expiry index entry for key
//	m/def/<process>/<version>                 definition fingerprint

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"
)

const (
	prefixInstance = "i/"
	prefixDedupe   = "d/"
	prefixTimer    = "t/"
	prefixBuffer   = "b/"
	prefixExpiry   = "x/"
	prefixDef      = "m/def/"
)

// escape makes s safe as one `/`-separated key part.
func escape(s string) string {
	if !strings.ContainsAny(s, "%/") {
		return s
	}
	return strings.NewReplacer("%", "%25", "/", "%2F").Replace(s)
}

func unescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	return strings.NewReplacer("%2F", "/", "%25", "%").Replace(s)
}

func appendMillis(dst []byte, t time.Time) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(t.UnixMilli()))
}

func millisAt(b []byte) time.Time {
	return time.UnixMilli(int64(binary.BigEndian.Uint64(b))).UTC()
}

// InstanceKey is the state key of the instance of process for cid.
func InstanceKey(cid, process string) []byte {
	return []byte(prefixInstance + escape(cid) + "/" + process)
}

// InstancesRange is the key range [lower, upper) of every instance of cid
// ("" : of every correlation id), for `ordo process show/list`.
func InstancesRange(cid string) (lower, upper []byte) {
	if cid == "" {
		return []byte(prefixInstance), []byte("i0") // '0' follows '/'
	}
	p := prefixInstance + escape(cid)
	return []byte(p + "/"), []byte(p + "0")
}

func dedupeKey(cid, eventID string) []byte {
	return []byte(prefixDedupe + escape(cid) + "/" + escape(eventID))
}

func timerKey(due time.Time, cid, process, name string) []byte {
	k := appendMillis([]byte(prefixTimer), due)
	return append(k, "/"+escape(cid)+"/"+process+"/"+name...)
}

func bufferPrefix(cid, process string) []byte {
	return []byte(prefixBuffer + escape(cid) + "/" + process + "/")
}

func bufferKey(cid, process string, offset int64) []byte {
	return binary.BigEndian.AppendUint64(bufferPrefix(cid, process), uint64(offset))
}

func expiryKey(at time.Time, target []byte) []byte {
	k := appendMillis([]byte(prefixExpiry), at)
	k = append(k, '/')
	return append(k, target...)
}

func defKey(process string, version int) []byte {
	return []byte(prefixDef + process + "/" + strconv.Itoa(version))
}

// prefixEnd is the smallest key greater than every key starting with p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// Key is a parsed state key (see ParseKey).
type Key struct {
	// Kind is "instance", "dedupe", "timer", "buffer", "expiry" or
	// "definition".
	Kind          string
	CorrelationID string
	Process       string
	// Name is the timer name.
	Name string
	// EventID of a dedupe mark.
	EventID string
	// Time is a timer's due time or an expiry entry's expiry.
	Time time.Time
	// Offset is a buffered event's process-log offset.
	Offset int64
	// Version of a definition fingerprint.
	Version int
	// Target is the key an expiry entry is for.
	Target []byte
}

// ParseKey parses a state key of the processes package (for tools such as
// `ordo process show`).
func ParseKey(key []byte) (Key, error) {
	s := string(key)
	bad := func() (Key, error) { return Key{}, fmt.Errorf("processes: unknown state key %q", key) }
	switch {
	case strings.HasPrefix(s, prefixInstance):
		cid, proc, ok := strings.Cut(s[len(prefixInstance):], "/")
		if !ok {
			return bad()
		}
		return Key{Kind: "instance", CorrelationID: unescape(cid), Process: proc}, nil
	case strings.HasPrefix(s, prefixDedupe):
		cid, id, ok := strings.Cut(s[len(prefixDedupe):], "/")
		if !ok {
			return bad()
		}
		return Key{Kind: "dedupe", CorrelationID: unescape(cid), EventID: unescape(id)}, nil
	case strings.HasPrefix(s, prefixTimer):
		rest := key[len(prefixTimer):]
		if len(rest) < 9 || rest[8] != '/' {
			return bad()
		}
		parts := strings.Split(string(rest[9:]), "/")
		if len(parts) != 3 {
			return bad()
		}
		return Key{Kind: "timer", Time: millisAt(rest[:8]), CorrelationID: unescape(parts[0]), Process: parts[1], Name: parts[2]}, nil
	case strings.HasPrefix(s, prefixBuffer):
		rest := key[len(prefixBuffer):]
		if len(rest) < 8 {
			return bad()
		}
		head := string(rest[:len(rest)-8])
		parts := strings.Split(strings.TrimSuffix(head, "/"), "/")
		if len(parts) != 2 || !strings.HasSuffix(head, "/") {
			return bad()
		}
		return Key{Kind: "buffer", CorrelationID: unescape(parts[0]), Process: parts[1], Offset: int64(binary.BigEndian.Uint64(rest[len(rest)-8:]))}, nil
	case strings.HasPrefix(s, prefixExpiry):
		rest := key[len(prefixExpiry):]
		if len(rest) < 9 || rest[8] != '/' {
			return bad()
		}
		return Key{Kind: "expiry", Time: millisAt(rest[:8]), Target: bytes.Clone(rest[9:])}, nil
	case strings.HasPrefix(s, prefixDef):
		proc, v, ok := strings.Cut(s[len(prefixDef):], "/")
		n, err := strconv.Atoi(v)
		if !ok || err != nil {
			return bad()
		}
		return Key{Kind: "definition", Process: proc, Version: n}, nil
	}
	return bad()
}
