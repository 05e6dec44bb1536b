// node-redis and ioredis with their default settings against a running kmb cluster
// (kmb-node/tests/clients_real.rs). Usage: node node_defaults.mjs <primary-port> <backup-port>
// Needs the npm packages `redis` and `ioredis` (scripts/test.sh installs them into
// kmb-node/tests/clients/node_modules). Exits non-zero on the first difference.
import assert from "node:assert/strict";
import { createClient, WatchError } from "redis";
import Redis from "ioredis";

const [primary, backup] = process.argv.slice(2).map(Number);
const step = (s) => console.log(s);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A backup answers `REDIRECT <replica> <host:port>`: the port of the primary it names.
const redirectPort = (error) => {
  const m = /^REDIRECT \d+ [^ ]+:(\d+)/.exec(error.message);
  assert.ok(m, `not a redirect: ${error.message}`);
  return Number(m[1]);
};

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
  assert.equal(await c.mSet({ "js:m1": "1", "js:m2": "2" }), "OK");
  assert.deepEqual(await c.mGet(["js:m1", "js:m2", "js:none"]), ["1", "2", null]);
  assert.equal(await c.del(["js:m1", "js:m2"]), 2);
  step("node-redis: expiry");
  assert.equal(await c.set("js:lock", "me", { NX: true, PX: 30000 }), "OK");
  assert.equal(await c.set("js:lock", "me", { NX: true, PX: 30000 }), null);
  const pttl = await c.pTTL("js:lock");
  assert.ok(pttl > 29000 && pttl <= 30000, `${pttl}`);
  assert.equal(await c.expire("js:lock", 100), 1);
  assert.ok((await c.ttl("js:lock")) >= 99);
  assert.equal(await c.persist("js:lock"), 1);
  assert.equal(await c.ttl("js:lock"), -1);
  await c.set("js:short", "x", { PX: 150 });
  await sleep(400);
  assert.equal(await c.get("js:short"), null);
  step("node-redis: a transaction (MULTI/EXEC) applies atomically");
  assert.deepEqual(
    await c.multi().set("js:t", "1").incr("js:t2").get("js:t").exec(),
    ["OK", 1, "1"],
  );
  assert.equal(await c.get("js:t2"), "1");
  step("node-redis: pipeline (no transaction)");
  const many = c.multi();
  for (let i = 0; i < 100; i++) many.incr("js:pipe");
  const counts = await many.execAsPipeline();
  assert.deepEqual(counts, Array.from({ length: 100 }, (_, i) => i + 1));
  step("node-redis: WATCH, another connection's change aborts EXEC");
  const other = createClient({ url: `redis://127.0.0.1:${primary}` });
  other.on("error", () => {});
  await other.connect();
  await c.set("js:w", "0");
  await c.watch("js:w");
  await other.set("js:w", "changed");
  await assert.rejects(c.multi().set("js:w", "mine").exec(), WatchError);
  assert.equal(await c.get("js:w"), "changed");
  await c.watch("js:w");
  assert.deepEqual(await c.multi().set("js:w", "mine").exec(), ["OK"]);
  assert.equal(await c.get("js:w"), "mine");
  await other.quit();
  step("node-redis: unknown command keeps the connection");
  await assert.rejects(c.publish("chan", "m"), /unknown command/);
  assert.equal(await c.get("js:k"), "v");
  step("node-redis: a backup redirects; follow it");
  const b = createClient({ url: `redis://127.0.0.1:${backup}` });
  b.on("error", () => {});
  await b.connect();
  let port;
  await assert.rejects(b.get("js:k"), (e) => {
    port = redirectPort(e);
    return true;
  });
  assert.equal(port, primary);
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
  step("ioredis: expiry");
  assert.equal(await r.set("io:ex", "1", "EX", 100), "OK");
  assert.ok((await r.ttl("io:ex")) >= 99);
  assert.equal(await r.pexpire("io:ex", 150), 1);
  await sleep(400);
  assert.equal(await r.exists("io:ex"), 0);
  step("ioredis: pipeline without a transaction");
  const res = await r.pipeline().set("io:p", "1").incr("io:p").get("io:p").exec();
  assert.deepEqual(res.map(([, v]) => v), ["OK", 2, "2"]);
  step("ioredis: a transaction (MULTI/EXEC) applies atomically");
  const tx = await r.multi().set("io:t", "1").incr("io:t2").mget("io:t", "io:t2").exec();
  assert.deepEqual(tx, [[null, "OK"], [null, 1], [null, ["1", "1"]]]);
  step("ioredis: WATCH, another connection's change aborts EXEC");
  const other = new Redis({ port: primary, lazyConnect: true });
  other.on("error", () => {});
  await other.connect();
  await r.set("io:w", "0");
  await r.watch("io:w");
  await other.set("io:w", "changed");
  assert.equal(await r.multi().set("io:w", "mine").exec(), null);
  assert.equal(await r.get("io:w"), "changed");
  other.disconnect();
  step("ioredis: a backup redirects; follow it");
  const b = new Redis({ port: backup, lazyConnect: true });
  b.on("error", () => {});
  await b.connect();
  let port;
  await assert.rejects(b.get("io:k"), (e) => {
    port = redirectPort(e);
    return true;
  });
  b.disconnect();
  const followed = new Redis({ port, lazyConnect: true });
  followed.on("error", () => {});
  await followed.connect();
  assert.equal(await followed.get("io:k"), "v");
  followed.disconnect();
  r.disconnect();
}

await nodeRedis();
await ioredis();
console.log("node clients ok");
