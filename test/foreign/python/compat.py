"""Drives confluent-kafka's SchemaRegistryClient against a registry.

Reads a JSON list of operations on stdin and prints a JSON list of results,
one per operation: {"value": ...} or {"error": {"status", "code", "message"}}.

  {"op": "set_level", "subject": S or null, "level": "FULL"}
  {"op": "get_level", "subject": S or null}
  {"op": "test", "subject": S, "schema": TEXT, "version": "latest" or N, "references": [...]}
  {"op": "test_all", "subject": S, "schema": TEXT}
  {"op": "register", "subject": S, "schema": TEXT, "references": [{"name", "subject", "version"}]}

Used by test/foreign/compat_test.go to compare the client's view of
compatibility with `ordo schemas check`.
"""

import argparse
import json
import sys

from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError


def schema(op):
    refs = [SchemaReference(r["name"], r["subject"], r["version"]) for r in op.get("references") or []]
    return Schema(op["schema"], "AVRO", refs)


def run(sr, op):
    kind = op["op"]
    if kind == "set_level":
        r = sr.set_compatibility(op.get("subject"), op["level"])
        # the client returns the response body, {"compatibility": LEVEL}
        return r.get("compatibility") if isinstance(r, dict) else r
    if kind == "get_level":
        return sr.get_compatibility(op.get("subject"))
    if kind == "test":
        return sr.test_compatibility(op["subject"], schema(op), op.get("version", "latest"), verbose=True)
    if kind == "test_all":
        return sr.test_compatibility_all_versions(op["subject"], schema(op), verbose=True)
    if kind == "register":
        return sr.register_schema(op["subject"], schema(op))
    raise ValueError("unknown op " + kind)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--registry", required=True)
    a = p.parse_args()
    sr = SchemaRegistryClient({"url": a.registry})
    out = []
    for op in json.load(sys.stdin):
        try:
            out.append({"value": run(sr, op)})
        except SchemaRegistryError as e:
            out.append({"error": {"status": e.http_status_code, "code": e.error_code, "message": e.error_message}})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
