// node-redis and ioredis with their default settings against a running kmb cluster
// (kmb-node/tests/clients_real.rs). Usage: node node_defaults.mjs <primary-port> <backup-port>
// Needs the npm packages `redis` and `ioredis` (scripts/test.sh installs them into
// kmb-node/tests/clients/node_modules). Exits non-zero on the first difference.
import assert from "node:assert/strict";
import { createClient } from "redis";
import Redis from "ioredis";

const [primary, backup] = process.argv.slice(2).map(Number);
const step = (s) => console.log(s);

async function nodeRedis() {
  step("node-redis: connect, SET/GET");
  const c = createClient({ url: `redis://127.0.0.1:${primary}` });
  c.on("error", () => {});
  await c.connect();
  assert.equal(await c.set("js:k", "v"), "OK");
  assert.equal(await c.get("js:k"), "v");
  assert.equal(await c.ping(), "PONG");
  step("node-redis: INFO, CLIENT, keyspace");
  assert.match(await c.info("replication"), /role:master/);
  assert.equal(await c.clientGetName(), null);
  assert.equal(await c.clientSetName("js"), "OK");
  assert.equal(await c.clientGetName(), "js");
  assert.equal(await c.exists("js:k"), 1);
  assert.equal(Number(await c.setNX("js:k", "x")), 0);
  assert.equal(await c.incrBy("js:n", 3), 3);
  step("node-redis: a transaction is refused and applies nothing");
  await assert.rejects(c.multi().set("js:t", "1").incr("js:t2").exec());
  assert.equal(await c.get("js:t"), null);
  assert.equal(await c.get("js:t2"), null);
  step("node-redis: unknown command keeps the connection");
  await assert.rejects(c.publish("chan", "m"), /unknown command/);
  assert.equal(await c.get("js:k"), "v");
  step("node-redis: a backup redirects");
  const b = createClient({ url: `redis://127.0.0.1:${backup}` });
  b.on("error", () => {});
  await b.connect();
  await assert.rejects(b.get("js:k"), /REDIRECT/);
  await b.quit();
  await c.quit();
}

async function ioredis() {
  step("ioredis: connect, SET/GET");
  const r = new Redis({ port: primary, lazyConnect: true });
  r.on("error", () => {});
  await r.connect();
  assert.equal(await r.set("io:k", "v"), "OK");
  assert.equal(await r.get("io:k"), "v");
  step("ioredis: INFO, CLIENT, keyspace");
  assert.match(await r.info(), /role:master/);
  assert.equal(await r.client("SETNAME", "io"), "OK");
  assert.equal(await r.client("GETNAME"), "io");
  assert.equal(await r.exists("io:k"), 1);
  assert.equal(await r.set("io:nx", "1", "NX"), "OK");
  assert.equal(await r.set("io:nx", "1", "NX"), null);
  step("ioredis: pipeline without a transaction");
  const res = await r.pipeline().set("io:p", "1").incr("io:p").get("io:p").exec();
  assert.deepEqual(res.map(([, v]) => v), ["OK", 2, "2"]);
  step("ioredis: a transaction is refused and applies nothing");
  await assert.rejects(r.multi().set("io:t", "1").incr("io:t2").exec());
  assert.equal(await r.get("io:t"), null);
  assert.equal(await r.get("io:t2"), null);
  assert.equal(await r.get("io:k"), "v");
  r.disconnect();
}

await nodeRedis();
await ioredis();
console.log("node clients ok");
