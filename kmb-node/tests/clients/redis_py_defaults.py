"""redis-py with its default settings against a running kmb cluster (kmb-node/tests/clients_real.rs).

Usage: python3 redis_py_defaults.py <primary-port> <backup-port>
Exits non-zero (an AssertionError or exception) on the first difference; prints one line per
step so a failure says where it stopped.
"""

import asyncio
import sys

import redis
import redis.asyncio


def step(name):
    print("redis-py:", name, flush=True)


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
    assert r.incrby("py:n", 5) == 5
    assert r.delete("py:nx") == 1
    assert r.dbsize() >= 2
    assert r.wait(1, 100) == 1
    assert len(r.time()) == 2
    assert r.config_get("save") == {"save": ""}, r.config_get("save")
    assert r.role()[0] == b"master"

    step("pipeline without a transaction")
    p = r.pipeline(transaction=False)
    p.set("py:p", "1")
    p.incr("py:p")
    p.get("py:p")
    assert p.execute() == [True, 2, b"2"]

    step("a transaction is refused and applies nothing")
    p = r.pipeline()
    p.set("py:t1", "a")
    p.incrby("py:t2", 5)
    try:
        p.execute()
        raise AssertionError("MULTI/EXEC should be refused")
    except redis.ResponseError as e:
        assert "MULTI is not supported yet" in str(e), e
    assert r.get("py:t1") is None and r.get("py:t2") is None
    assert r.get("py:k") == b"v"  # the connection still works

    step("unknown commands answer an error and keep the connection")
    try:
        r.publish("chan", "m")
        raise AssertionError("PUBLISH should be unknown")
    except redis.ResponseError as e:
        assert str(e).startswith("unknown command 'PUBLISH'"), e
    assert r.get("py:k") == b"v"

    step("a backup redirects")
    b = redis.Redis(port=backup)
    try:
        b.get("py:k")
        raise AssertionError("a backup should redirect")
    except redis.ResponseError as e:
        assert str(e).startswith("REDIRECT"), e
    assert b.info("replication")["role"] == "slave"

    step("asyncio client")

    async def run_async():
        a = redis.asyncio.Redis(port=primary)
        assert await a.set("py:async", "1") is True
        assert await a.get("py:async") == b"1"
        assert (await a.execute_command("HELLO"))[b"proto"] == 3
        await a.aclose()

    asyncio.run(run_async())
    print("redis-py", redis.__version__, "ok")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
