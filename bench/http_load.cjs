// HTTP GET load with autocannon (npm), run as its own node process by bench/run.py.
//
// Usage: node bench/http_load.cjs URL CONNECTIONS PIPELINING SECONDS
// with autocannon where node finds it (bench/run.py sets NODE_PATH to its npm folder).
// Prints one JSON line: requests/s, p50/p99 latency in ms, errors, and this
// process's own CPU seconds and wall seconds over the run (all its threads).
"use strict";

const autocannon = require("autocannon");

const [url, connections, pipelining, seconds] = process.argv.slice(2);
// autocannon's own latency histogram counts whole milliseconds; keep every
// response's time (a float of ms) for sub-millisecond percentiles.
const latencies = [];
const cpuBefore = process.cpuUsage();
const began = process.hrtime.bigint();
const run = autocannon(
  {
    url,
    connections: Number(connections),
    pipelining: Number(pipelining),
    duration: Number(seconds),
  },
  (err, result) => {
    if (err) throw err;
    const cpu = process.cpuUsage(cpuBefore);
    const wall = Number(process.hrtime.bigint() - began) / 1e9;
    latencies.sort((a, b) => a - b);
    const at = (q) => latencies[Math.max(0, Math.ceil(latencies.length * q) - 1)];
    console.log(
      JSON.stringify({
        rps: result.requests.total / result.duration,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        errors: result.errors + result.timeouts + result.non2xx,
        load_cpu_s: (cpu.user + cpu.system) / 1e6,
        wall_s: wall,
      }),
    );
  },
);
run.on("response", (client, statusCode, bytes, ms) => latencies.push(ms));
