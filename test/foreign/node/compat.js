// Drives @confluentinc/schemaregistry's SchemaRegistryClient against a
// registry, like python/compat.py: a JSON list of operations on stdin, a
// JSON list of results on stdout ({value} or {error: {status, code,
// message}}). Used by test/foreign/compat_test.go.
'use strict';

const { SchemaRegistryClient } = require('@confluentinc/schemaregistry');

function info(op) {
  return { schemaType: 'AVRO', schema: op.schema, references: op.references || [] };
}

async function run(sr, op) {
  switch (op.op) {
    case 'set_level':
      return op.subject ? sr.updateCompatibility(op.subject, op.level) : sr.updateDefaultCompatibility(op.level);
    case 'get_level':
      return op.subject ? sr.getCompatibility(op.subject) : sr.getDefaultCompatibility();
    case 'test':
      if (op.version === undefined || op.version === 'latest') return sr.testSubjectCompatibility(op.subject, info(op));
      return sr.testCompatibility(op.subject, op.version, info(op));
    case 'register':
      return sr.register(op.subject, info(op));
    default:
      throw new Error(`unknown op ${op.op}`);
  }
}

async function main() {
  const i = process.argv.indexOf('--registry');
  if (i < 0) throw new Error('usage: compat.js --registry URL < ops.json');
  const sr = new SchemaRegistryClient({ baseURLs: [process.argv[i + 1]] });
  let input = '';
  for await (const chunk of process.stdin) input += chunk;
  const out = [];
  for (const op of JSON.parse(input)) {
    try {
      out.push({ value: await run(sr, op) });
    } catch (e) {
      if (e.status === undefined) throw e;
      out.push({ error: { status: e.status, code: e.errorCode, message: e.message } });
    }
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
