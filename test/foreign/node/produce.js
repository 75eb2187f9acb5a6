// Foreign producer: kafkajs + @confluentinc/schemaregistry AvroSerializer.
//
// Called through test/foreign/produce.sh node ... . Writes with a NEWER,
// backward-compatible version of com.acme.checkout.OrderPlaced: ordo's current
// schema plus `channel` (string, default "web") and `referrer` (optional
// string), registered under the TopicNameStrategy subject <topic>-value. ordo
// reads it with its own (older) reader schema, which drops both fields.
//
// The event data is a pure function of (prefix, seq); test/foreign/events.go
// holds the same function in Go and python/produce.py in Python.
'use strict';

const fs = require('fs');
const path = require('path');
const { Kafka, Partitioners, logLevel } = require('kafkajs');
const { SchemaRegistryClient, AvroSerializer, SerdeType } = require('@confluentinc/schemaregistry');

const ROOT = path.resolve(__dirname, '..', '..', '..');
const SCHEMA = path.join(ROOT, 'examples', 'orders', 'schemas', 'com.acme.checkout.OrderPlaced.avsc');
const BASE_MS = 1767225600000; // 2026-01-01T00:00:00Z
const CURRENCIES = ['EUR', 'USD', 'GBP'];
const COUNTRIES = ['DE', 'US', 'GB'];
const CHANNELS = ['web', 'mobile', 'store'];

// newerSchema is ordo's current OrderPlaced plus two fields with defaults.
function newerSchema() {
  const s = JSON.parse(fs.readFileSync(SCHEMA, 'utf8'));
  s.fields.push(
    { name: 'channel', type: 'string', default: 'web', doc: 'v2: where the order was placed' },
    { name: 'referrer', type: ['null', 'string'], default: null, doc: 'v2: optional referrer' },
  );
  return s;
}

// decimalBytes encodes an integer number of cents (BigInt) as Avro
// bytes.decimal: the unscaled value in big-endian two's complement, minimal
// length. The serializer has no decimal logical type of its own (avsc treats
// it as plain bytes unless a LogicalType class is registered), so this is
// what any JS producer has to do by hand.
function decimalBytes(unscaled) {
  let v = BigInt(unscaled);
  const out = [];
  for (;;) {
    out.unshift(Number(v & 0xffn));
    const rest = v >> 8n; // arithmetic shift: keeps the sign
    const sign = out[0] & 0x80;
    if ((rest === 0n && !sign) || (rest === -1n && sign)) break;
    v = rest;
  }
  return Buffer.from(out);
}

function event(prefix, seq, source) {
  const order = `${prefix}-ord-${seq % 50}`;
  let items;
  let total;
  if (seq % 10 === 9) {
    // the top of decimal(12,2): 9999999999.99
    items = [{ sku: `SKU-${seq % 5}`, qty: 1, unit_price: decimalBytes(999999999999n) }];
    total = 999999999999n;
  } else {
    const qty = 1 + (seq % 3);
    const unit = 1999n + 37n * BigInt(seq);
    items = [
      { sku: `SKU-${seq % 5}`, qty, unit_price: decimalBytes(unit) },
      { sku: 'SKU-GIFT', qty: 1, unit_price: decimalBytes(128n) }, // 1.28 needs a leading 0x00
    ];
    total = BigInt(qty) * unit + 128n;
  }
  return {
    envelope: {
      id: `${prefix}-${seq}`,
      type: 'com.acme.checkout.OrderPlaced',
      source,
      time: BASE_MS + seq, // timestamp-millis as a plain long
      correlation_id: order,
      causation_id: null,
    },
    order_id: order,
    customer_id: `cust-${seq % 13}`,
    total: decimalBytes(total),
    currency: CURRENCIES[seq % 3],
    items,
    shipping_country: COUNTRIES[seq % 3],
    note: seq % 2 === 0 ? null : `gift ${seq}: \u00fcn\u00efc\u00f8d\u00e9 \u2713`,
    channel: CHANNELS[seq % 3],
    referrer: seq % 4 === 0 ? `ref-${seq}` : null,
  };
}

function parseArgs(argv) {
  const a = {};
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i];
    if (!k.startsWith('--') || i + 1 >= argv.length) throw new Error(`bad argument ${k}`);
    a[k.slice(2)] = argv[i + 1];
  }
  for (const k of ['brokers', 'registry', 'topic', 'count', 'prefix']) {
    if (a[k] === undefined) throw new Error(`--${k} is required`);
  }
  a.count = Number(a.count);
  return a;
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const sr = new SchemaRegistryClient({ baseURLs: [a.registry] });
  const subject = `${a.topic}-value`;
  const id = await sr.register(subject, { schemaType: 'AVRO', schema: JSON.stringify(newerSchema()) });
  // useSchemaId pins the v2 id (useLatestVersion would pick up whatever was
  // registered last under the subject, e.g. by a concurrent python producer).
  const ser = new AvroSerializer(sr, SerdeType.VALUE, { useSchemaId: id, autoRegisterSchemas: false });

  const kafka = new Kafka({
    clientId: 'ordo-foreign-node',
    brokers: a.brokers.split(','),
    logLevel: logLevel.WARN,
  });
  const producer = kafka.producer({
    idempotent: true, // acks=all, one in-flight request, sequence numbers
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner, // murmur2, Java-compatible
  });
  await producer.connect();
  let acked = 0;
  try {
    const batch = 500;
    for (let start = 0; start < a.count; start += batch) {
      const messages = [];
      for (let seq = start; seq < Math.min(a.count, start + batch); seq++) {
        const ev = event(a.prefix, seq, 'foreign-node');
        messages.push({ key: ev.order_id, value: await ser.serialize(a.topic, ev) });
      }
      const res = await producer.send({ topic: a.topic, acks: -1, messages });
      for (const r of res) {
        if (r.errorCode !== 0) throw new Error(`partition ${r.partition}: error code ${r.errorCode}`);
      }
      acked += messages.length;
    }
  } finally {
    await producer.disconnect();
  }
  if (acked !== a.count) throw new Error(`${acked}/${a.count} acknowledged`);
  console.log(`produced ${acked}`);
}

// A bound on the whole run: the idempotent producer retries for ever
// (kafkajs' default with idempotent: true), a test must not hang.
setTimeout(() => {
  console.error('produce.js: not all events were acknowledged within 5 minutes');
  process.exit(1);
}, 5 * 60 * 1000).unref();

main().catch((e) => {
  console.error(`produce.js: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
