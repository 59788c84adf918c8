// Tool-call round trips with the TypeScript MCP SDK's Client over stdio: the client the MCP
// hosts are built on. Driven by bench/bench_toolcall.py, which passes one JSON argument:
//   {"sdk": "<dir holding node_modules/@modelcontextprotocol/client>",
//    "baseline": SERVER, "subjects": [SERVER, ...], "calls": N, "warmup": W}
//   SERVER = {"command", "args", "env", "cwd", "tool", "arguments"}
// Subjects take turns; every subject call is paired with a baseline call made right before
// or after it (the order flips each round), as in bench_toolcall.py. Prints
// {"samples": [[baseline_s[], subject_s[]], ...]} (seconds) on stdout.
"use strict";

const { createRequire } = require("node:module");
const path = require("node:path");

async function main() {
  const config = JSON.parse(process.argv[2]);
  const load = createRequire(path.join(config.sdk, "package.json"));
  const { Client } = load("@modelcontextprotocol/client");
  const { StdioClientTransport } = load("@modelcontextprotocol/client/stdio");

  async function connect(server) {
    const client = new Client({ name: "charter-bench", version: "1.0.0" });
    const transport = new StdioClientTransport({
      command: server.command,
      args: server.args,
      env: server.env,
      cwd: server.cwd,
      stderr: "inherit",
    });
    await client.connect(transport);
    return client;
  }

  async function timed(client, server) {
    const t0 = process.hrtime.bigint();
    const result = await client.callTool({ name: server.tool, arguments: server.arguments });
    const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
    if (result.isError) {
      throw new Error(`${server.tool} failed: ${JSON.stringify(result.content)}`);
    }
    return elapsed;
  }

  const baseline = await connect(config.baseline);
  const clients = [];
  for (const server of config.subjects) clients.push(await connect(server));
  try {
    // Subjects take turns, one whole run each, so that the subject and the baseline are
    // called equally often (see _compare in bench_toolcall.py).
    const samples = config.subjects.map(() => [[], []]);
    for (let k = 0; k < clients.length; k++) {
      for (let i = 0; i < config.warmup; i++) {
        await timed(baseline, config.baseline);
        await timed(clients[k], config.subjects[k]);
      }
      const [base, subj] = samples[k];
      for (let i = 0; i < config.calls; i++) {
        if (i % 2 === 0) {
          base.push(await timed(baseline, config.baseline));
          subj.push(await timed(clients[k], config.subjects[k]));
        } else {
          subj.push(await timed(clients[k], config.subjects[k]));
          base.push(await timed(baseline, config.baseline));
        }
      }
    }
    process.stdout.write(JSON.stringify({ samples }) + "\n");
  } finally {
    await baseline.close();
    for (const client of clients) await client.close();
  }
}

main().catch((error) => {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
