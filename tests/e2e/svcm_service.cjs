// A NATS micro service written with nats.js's Svcm (@nats-io/services), for the
// router to find on the bus.
//
// Usage: node svcm_service.cjs <nats url> <name> <version>
// Prints one JSON line, {"id": ...}, once the service answers, then runs until killed.
// Run by tests/e2e/test_micro_discovery.py from the folder the packages are installed in.
"use strict";

const { connect } = require("@nats-io/transport-node");
const { Svcm } = require("@nats-io/services");

async function main() {
  const [url, name, version] = process.argv.slice(2);
  const nc = await connect({ servers: url });
  const service = await new Svcm(nc).add({
    name,
    version,
    description: "Looks prices up (nats.js)",
    metadata: { language: "javascript" },
  });
  service.addEndpoint("lookup", {
    subject: `${name}.lookup`,
    handler: (err, msg) => {
      if (!err) msg.respond("42");
    },
  });
  await nc.flush();
  process.stdout.write(JSON.stringify({ id: service.info().id }) + "\n");
  await nc.closed();
}

main().catch((err) => {
  process.stderr.write(`svcm_service failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
