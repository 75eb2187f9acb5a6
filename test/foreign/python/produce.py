"""Foreign producer: confluent-kafka + AvroSerializer writing OrderPlaced.

Called through test/foreign/produce.sh python ... . Writes with ordo's
*current* schema (examples/orders/schemas/com.acme.checkout.OrderPlaced.avsc), registered
under the TopicNameStrategy subject <topic>-value (auto.register.schemas).

The event data is a pure function of (prefix, seq); test/foreign/events.go
holds the same function in Go and node/produce.js in JavaScript.
"""

import argparse
import datetime
import decimal
import os
import sys

from confluent_kafka import KafkaException, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SCHEMA = os.path.join(ROOT, "examples", "orders", "schemas", "com.acme.checkout.OrderPlaced.avsc")

BASE_MS = 1767225600000  # 2026-01-01T00:00:00Z
CURRENCIES = ["EUR", "USD", "GBP"]
COUNTRIES = ["DE", "US", "GB"]


def cents(n):
    return decimal.Decimal(n).scaleb(-2)  # exact: Decimal('12.34') for 1234


def event(prefix, seq, source):
    """OrderPlaced #seq in natural Python form (Decimal, aware datetime)."""
    order = f"{prefix}-ord-{seq % 50}"
    if seq % 10 == 9:
        # the top of decimal(12,2): 9999999999.99
        items = [{"sku": f"SKU-{seq % 5}", "qty": 1, "unit_price": cents(999999999999)}]
        total = 999999999999
    else:
        qty, unit = 1 + seq % 3, 1999 + 37 * seq
        # 1.28: its two's complement needs a leading 0x00 byte
        items = [
            {"sku": f"SKU-{seq % 5}", "qty": qty, "unit_price": cents(unit)},
            {"sku": "SKU-GIFT", "qty": 1, "unit_price": cents(128)},
        ]
        total = qty * unit + 128
    return {
        "envelope": {
            "id": f"{prefix}-{seq}",
            "type": "com.acme.checkout.OrderPlaced",
            "source": source,
            "time": datetime.datetime.fromtimestamp((BASE_MS + seq) / 1000, tz=datetime.timezone.utc),
            "correlation_id": order,
            "causation_id": None,
        },
        "order_id": order,
        "customer_id": f"cust-{seq % 13}",
        "total": cents(total),
        "currency": CURRENCIES[seq % 3],
        "items": items,
        "shipping_country": COUNTRIES[seq % 3],
        "note": None if seq % 2 == 0 else f"gift {seq}: \u00fcn\u00efc\u00f8d\u00e9 \u2713",
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--prefix", required=True)
    a = ap.parse_args()

    with open(SCHEMA, encoding="utf-8") as f:
        schema_str = f.read()
    sr = SchemaRegistryClient({"url": a.registry})
    ser = AvroSerializer(sr, schema_str, conf={"auto.register.schemas": True})
    p = Producer({
        "bootstrap.servers": a.brokers,
        "enable.idempotence": True,  # implies acks=all, bounded in-flight, retries
        "linger.ms": 5,
        "client.id": "ordo-foreign-python",
        "message.timeout.ms": 120000,  # per message, retries included
        # murmur2 like the Java client, franz-go and kafkajs: a key lands on
        # the same partition whichever client wrote it (librdkafka's default
        # is CRC32)
        "partitioner": "murmur2_random",
        "enable.metrics.push": False,  # no KIP-714 telemetry chatter
    })

    acked, errors = 0, []

    def on_delivery(err, msg):
        nonlocal acked
        if err is not None:
            errors.append(f"{msg.key()}: {err}")
        else:
            acked += 1

    for seq in range(a.count):
        ev = event(a.prefix, seq, "foreign-python")
        value = ser(ev, SerializationContext(a.topic, MessageField.VALUE))
        key = ev["order_id"].encode()
        while True:
            try:
                p.produce(a.topic, key=key, value=value, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    left = p.flush(120)
    if left or errors or acked != a.count:
        print(f"produce.py: {acked}/{a.count} acknowledged, {left} unflushed, errors: {errors[:5]}", file=sys.stderr)
        return 1
    print(f"produced {acked}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KafkaException as e:
        print(f"produce.py: {e}", file=sys.stderr)
        sys.exit(1)
