package processors

import (
	"fmt"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Helpers shared by the built-in processors for locating config errors: the
// config is decoded strictly with Spec.Decode, and the YAML node of a key is
// then looked up in Spec.Config for its line number.

// specName is the processor's name for error keys.
func specName(s Spec) string {
	if s.Name != "" {
		return s.Name
	}
	return s.Type
}

// keyPath renders the full key of a path in the spec's config block
// (strings are keys, ints are list indexes): pipeline[2].config.rules[0].expr
// for a spec from the config file (Spec.Key set), else
// pipeline[name].rules[0].expr.
func keyPath(s Spec, path ...any) string {
	k := "pipeline[" + specName(s) + "]"
	switch {
	case s.keyRoot != "":
		k = s.keyRoot
	case s.Key != "":
		k = s.Key + ".config"
	}
	for _, p := range path {
		switch x := p.(type) {
		case int:
			k += "[" + strconv.Itoa(x) + "]"
		default:
			k += fmt.Sprintf(".%v", x)
		}
	}
	return k
}

// nodeAt returns the node at path below the spec's config block, or the
// deepest existing ancestor (so a missing key still gets a useful line). For
// a mapping key it returns the value node.
func nodeAt(s Spec, path ...any) *yaml.Node {
	n := &s.Config
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, p := range path {
		var next *yaml.Node
		switch x := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == x {
						next = n.Content[i+1]
						break
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && x >= 0 && x < len(n.Content) {
				next = n.Content[x]
			}
		}
		if next == nil {
			return n
		}
		n = next
	}
	return n
}

// keyNodeAt is nodeAt for the key node of the last path element (its line is
// where the user wrote the key).
func keyNodeAt(s Spec, path ...any) *yaml.Node {
	if len(path) == 0 {
		return nodeAt(s)
	}
	parent := nodeAt(s, path[:len(path)-1]...)
	if k, ok := path[len(path)-1].(string); ok && parent.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(parent.Content); i += 2 {
			if parent.Content[i].Value == k {
				return parent.Content[i]
			}
		}
	}
	return nodeAt(s, path...)
}

// cfgErr builds a ConfigError at node n.
func cfgErr(s Spec, n *yaml.Node, key, msg, fix string) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	if line == 0 {
		line = s.configLine()
	}
	return &ConfigError{File: s.File, Line: line, Key: key, Msg: msg, Fix: fix}
}

// pathErr is cfgErr for a config path.
func pathErr(s Spec, msg, fix string, path ...any) error {
	return cfgErr(s, nodeAt(s, path...), keyPath(s, path...), msg, fix)
}

// validOnMissing checks an on_missing value.
func validOnMissing(s Spec, v string, hasDefault bool) (string, error) {
	switch v {
	case "":
		if hasDefault {
			return "default", nil
		}
		return "skip", nil
	case "default":
		if !hasDefault {
			return "", pathErr(s, "on_missing: default needs a `default` map", "add `default: {...}` or use on_missing: skip or error", "on_missing")
		}
		return v, nil
	case "error", "skip":
		return v, nil
	}
	return "", pathErr(s, fmt.Sprintf("on_missing %q is not one of default, error, skip", v), "use on_missing: default, error or skip", "on_missing")
}
