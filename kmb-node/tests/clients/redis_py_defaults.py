"""redis-py with its default settings against a running kmb cluster (kmb-node/tests/clients_real.rs).

Usage: python3 redis_py_defaults.py <primary-port> <backup-port>
Exits non-zero (an AssertionError or exception) on the first difference; prints one line per
step so a failure says where it stopped.
"""

import asyncio
import sys
import time

import redis
import redis.asyncio


def step(name):
    print("redis-py:", name, flush=True)


def follow_redirect(client, *command):
    """Run a command; on a backup's `REDIRECT <replica> <host:port>`, run it at that address."""
    try:
        return client.execute_command(*command)
    except redis.ResponseError as e:
        words = str(e).split()
        if len(words) < 3 or words[0] != "REDIRECT":
            raise
        host, port = words[2].rsplit(":", 1)
        return redis.Redis(host=host, port=int(port)).execute_command(*command)


def main(primary, backup):
    r = redis.Redis(port=primary)  # defaults: RESP3 (HELLO 3), CLIENT SETINFO
    step("connect, SET/GET")
    assert r.set("py:k", "v") is True
    assert r.get("py:k") == b"v"
    assert r.ping() is True

    step("the handshake chose RESP3")
    hello = r.execute_command("HELLO")
    assert hello[b"proto"] == 3, hello
    assert r.execute_command("HELLO", 3)[b"proto"] == 3

    step("INFO")
    info = r.info()
    assert info["role"] == "master", info
    assert info["kmb_replica_count"] == 3, info
    assert "kmb_view" in info and "kmb_commit" in info, info
    assert r.info("keyspace")["db0"]["keys"] >= 1

    step("CLIENT SETNAME/GETNAME/ID/INFO")
    assert r.client_getname() is None
    assert r.client_setname("py-test") is True
    assert r.client_getname() == "py-test"
    assert isinstance(r.client_id(), int)
    ci = r.client_info()
    assert ci["name"] == "py-test" and ci["lib-name"].startswith("redis-py"), ci

    step("keyspace commands")
    assert r.exists("py:k") == 1 and r.exists("py:none") == 0
    assert r.type("py:k") == b"string" and r.type("py:none") == b"none"
    assert r.strlen("py:k") == 1
    assert r.setnx("py:k", "x") is False
    assert r.set("py:nx", "1", nx=True) is True
    assert r.set("py:nx", "2", nx=True) is None
    assert r.set("py:nx", "3", xx=True) is True
    assert r.set("py:nx", "4", get=True) == b"3"
    assert r.incrby("py:n", 5) == 5
    assert r.delete("py:nx") == 1
    assert r.getset("py:gs", "a") is None and r.getset("py:gs", "b") == b"a"
    assert r.getdel("py:gs") == b"b" and r.get("py:gs") is None
    assert r.append("py:ap", "ab") == 2 and r.append("py:ap", "cd") == 4
    assert r.getrange("py:ap", 1, -2) == b"bc"
    assert r.incrbyfloat("py:f", 0.5) == 0.5
    assert r.incrbyfloat("py:f", 1.25) == 1.75
    assert r.dbsize() >= 2
    assert r.wait(1, 100) == 1
    secs, _ = r.time()
    assert abs(secs - time.time()) < 60, secs
    assert r.config_get("save") == {"save": ""}, r.config_get("save")
    assert r.role()[0] == b"master"

    step("multi-key commands")
    assert r.mset({"py:m1": "1", "py:m2": "2"}) is True
    assert r.mget("py:m1", "py:m2", "py:none") == [b"1", b"2", None]
    assert r.msetnx({"py:m1": "x", "py:m3": "3"}) is False
    assert r.get("py:m3") is None and r.get("py:m1") == b"1"
    assert r.exists("py:m1", "py:m2", "py:none") == 2
    assert r.delete("py:m1", "py:m2", "py:none") == 2

    step("expiry: SET NX PX (a lock), TTL, EXPIRE, PERSIST")
    assert r.set("py:lock", "me", nx=True, px=30000) is True
    assert r.set("py:lock", "other", nx=True, px=30000) is None
    assert 29000 <= r.pttl("py:lock") <= 30000, r.pttl("py:lock")
    assert 29 <= r.ttl("py:lock") <= 30
    assert r.expire("py:lock", 100) is True
    assert 99 <= r.ttl("py:lock") <= 100
    assert abs(r.expiretime("py:lock") - (time.time() + 100)) < 60
    assert r.expire("py:lock", 50, gt=True) is False
    assert r.persist("py:lock") is True and r.ttl("py:lock") == -1
    assert r.ttl("py:none") == -2
    assert r.expire("py:none", 10) is False
    assert r.set("py:short", "x", px=200) is True
    assert r.execute_command("SETEX", "py:setex", 100, "v") is True
    assert 99 <= r.ttl("py:setex") <= 100
    assert r.getex("py:setex", persist=True) == b"v" and r.ttl("py:setex") == -1
    time.sleep(0.5)
    assert r.get("py:short") is None and r.exists("py:short") == 0

    step("pipeline without a transaction: batched, replies in order")
    p = r.pipeline(transaction=False)
    p.set("py:p", "1")
    p.incr("py:p")
    p.get("py:p")
    p.execute_command("NOSUCH")
    p.get("py:p")
    results = p.execute(raise_on_error=False)
    assert results[:3] == [True, 2, b"2"], results
    assert isinstance(results[3], redis.ResponseError), results
    assert results[4] == b"2", results
    p = r.pipeline(transaction=False)
    for _ in range(200):
        p.incr("py:pipe")
    assert p.execute() == list(range(1, 201))

    step("the default pipeline is a transaction: applied atomically")
    p = r.pipeline()
    p.set("py:t1", "a")
    p.incrby("py:t2", 5)
    p.get("py:t1")
    p.ttl("py:t1")
    assert p.execute() == [True, 5, b"a", -1]
    assert r.get("py:t1") == b"a" and r.get("py:t2") == b"5"

    step("a transaction with a refused command applies nothing")
    p = r.pipeline()
    p.set("py:t3", "a")
    p.execute_command("SET", "py:t3")  # wrong number of arguments: refused when queued
    try:
        p.execute()
        raise AssertionError("EXEC should abort")
    except redis.ResponseError as e:
        assert "EXECABORT" in str(e) or "wrong number" in str(e), e
    assert r.get("py:t3") is None

    step("WATCH: another connection's change aborts the transaction")
    other = redis.Redis(port=primary)
    r.set("py:w", "0")
    with r.pipeline() as p:
        p.watch("py:w")
        assert p.get("py:w") == b"0"
        other.set("py:w", "changed")
        p.multi()
        p.set("py:w", "mine")
        try:
            p.execute()
            raise AssertionError("EXEC should abort: a watched key changed")
        except redis.WatchError:
            pass
    assert r.get("py:w") == b"changed"

    step("WATCH: an unchanged key lets the transaction apply (r.transaction)")

    def bump(pipe):
        current = int(pipe.get("py:w2") or 0)
        pipe.multi()
        pipe.set("py:w2", current + 1)

    r.transaction(bump, "py:w2")
    r.transaction(bump, "py:w2")
    assert r.get("py:w2") == b"2"

    step("SCAN (scan_iter) and KEYS")
    r.mset({f"py:s:{i}": i for i in range(30)})
    keys = set(r.scan_iter(match="py:s:*", count=7))
    assert keys == {f"py:s:{i}".encode() for i in range(30)}, keys
    assert sorted(r.keys("py:s:1*")) == sorted(
        f"py:s:{i}".encode() for i in [1] + list(range(10, 20))
    )

    step("unknown commands answer an error and keep the connection")
    try:
        r.publish("chan", "m")
        raise AssertionError("PUBLISH should be unknown")
    except redis.ResponseError as e:
        assert str(e).startswith("unknown command 'PUBLISH'"), e
    assert r.get("py:k") == b"v"

    step("a backup redirects; the client follows the redirect to the primary")
    b = redis.Redis(port=backup)
    try:
        b.get("py:k")
        raise AssertionError("a backup should redirect")
    except redis.ResponseError as e:
        assert str(e).startswith("REDIRECT"), e
    assert follow_redirect(b, "GET", "py:k") == b"v"
    assert b.info("replication")["role"] == "slave"

    step("FLUSHDB, DBSIZE")
    assert r.flushdb() is True
    assert r.dbsize() == 0
    r.set("py:k", "v")

    step("asyncio client")

    async def run_async():
        a = redis.asyncio.Redis(port=primary)
        assert await a.set("py:async", "1") is True
        assert await a.get("py:async") == b"1"
        assert (await a.execute_command("HELLO"))[b"proto"] == 3
        assert await a.set("py:async:ex", "1", ex=100) is True
        assert 99 <= await a.ttl("py:async:ex") <= 100
        async with a.pipeline() as p:  # a transaction
            p.incr("py:async:n")
            p.incr("py:async:n")
            p.mget("py:async", "py:async:n")
            assert await p.execute() == [1, 2, [b"1", b"2"]]
        async with a.pipeline(transaction=False) as p:
            for _ in range(50):
                p.incr("py:async:m")
            assert await p.execute() == list(range(1, 51))
        b2 = redis.asyncio.Redis(port=primary)
        async with a.pipeline() as p:
            await p.watch("py:async")
            await b2.set("py:async", "changed")
            p.multi()
            p.set("py:async", "mine")
            try:
                await p.execute()
                raise AssertionError("EXEC should abort: a watched key changed")
            except redis.WatchError:
                pass
        assert await a.get("py:async") == b"changed"
        await b2.aclose()
        await a.aclose()

    asyncio.run(run_async())
    print("redis-py", redis.__version__, "ok")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
