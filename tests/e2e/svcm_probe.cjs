// Lists NATS micro services with nats.js's own ADR-32 client, Svcm of @nats-io/services.
//
// Usage: node svcm_probe.cjs <nats url> [service name]
// Prints one JSON object: {"ping": [...], "info": [...], "stats": [...]}, each the
// answers of every instance (of the named service only, when one is given).
// Run by tests/e2e/test_micro_service.py from the folder the packages are installed in.
"use strict";

const { connect } = require("@nats-io/transport-node");
const { Svcm } = require("@nats-io/services");

async function collect(answers) {
  const all = [];
  for await (const answer of await answers) {
    all.push(answer);
  }
  return all;
}

async function main() {
  const [url, name = ""] = process.argv.slice(2);
  const nc = await connect({ servers: url });
  try {
    const client = new Svcm(nc).client();
    const result = {
      ping: await collect(client.ping(name)),
      info: await collect(client.info(name)),
      stats: await collect(client.stats(name)),
    };
    process.stdout.write(JSON.stringify(result) + "\n");
  } finally {
    await nc.close();
  }
}

main().catch((err) => {
  process.stderr.write(`svcm_probe failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
