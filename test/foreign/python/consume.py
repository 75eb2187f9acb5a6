"""Foreign consumer: confluent-kafka + AvroDeserializer reading ordo's output.

  consume.py --brokers B --registry URL --topic T --count N [--timeout S]

Reads T from the beginning with isolation.level=read_committed until N
records have arrived (or --timeout seconds pass), decodes each value with the
writer schema from the registry and prints one JSON object per record:
{"topic","partition","offset","key","headers":{...},"value":{...}}, with
decimals as strings ("12.34") and timestamp-millis as epoch milliseconds.
Exits 0 when N records were read, 1 otherwise (after printing what it got).
"""

import argparse
import datetime
import decimal
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def plain(v):
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, datetime.datetime):
        return int(v.timestamp() * 1000)
    if isinstance(v, bytes):
        return v.hex()
    raise TypeError(f"{type(v)} is not JSON serializable")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args()

    de = AvroDeserializer(SchemaRegistryClient({"url": a.registry}))
    c = Consumer({
        "bootstrap.servers": a.brokers,
        "group.id": f"ordo-foreign-python-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "enable.metrics.push": False,
    })
    c.subscribe([a.topic])
    got, deadline = 0, time.monotonic() + a.timeout
    try:
        while got < a.count and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                print(f"consume.py: {m.error()}", file=sys.stderr)
                return 1
            v = de(m.value(), SerializationContext(m.topic(), MessageField.VALUE))
            print(json.dumps({
                "topic": m.topic(),
                "partition": m.partition(),
                "offset": m.offset(),
                "key": m.key().decode() if m.key() is not None else None,
                "headers": {k: (h.decode() if h is not None else None) for k, h in (m.headers() or [])},
                "value": v,
            }, default=plain, ensure_ascii=False), flush=True)
            got += 1
    finally:
        c.close()
    if got < a.count:
        print(f"consume.py: read {got}/{a.count} records from {a.topic} within {a.timeout}s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
