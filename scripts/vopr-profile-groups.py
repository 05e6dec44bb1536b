#!/usr/bin/env python3
"""Group a callgrind profile of the VOPR by component (exclusive instructions): the table in
docs/vopr-speed.md. Usage: vopr-profile-groups.py callgrind.out (needs callgrind_annotate)."""
import re
import subprocess
import sys

f=sys.argv[1]
out=subprocess.run(['callgrind_annotate','--auto=no','--threshold=100',f],capture_output=True,text=True).stdout
tot=None; rows=[]
for l in out.split('\n'):
    m=re.match(r'\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)',l)
    if not m: continue
    c=int(m.group(1).replace(',','')); rest=m.group(2)
    if 'PROGRAM TOTALS' in rest: tot=c; continue
    rest=re.sub(r' \[[^\]]*\]$','',rest)
    file,_,fn=rest.partition(':')
    rows.append((c,file,fn))
rules=[
 ('MAC: HMAC-SHA-256 of peer frames', lambda f,n: 'sha2' in f or 'sha2::' in n or 'hmac' in f or 'digest' in f or 'block-buffer' in f or 'kmb_node::auth' in n),
 ('allocator (malloc/free/realloc)', lambda f,n: 'malloc' in f or 'arena.c' in f or 'mimalloc' in f or '__rdl_' in n or '__rust_alloc' in n or '__rust_dealloc' in n or '__rust_realloc' in n or 'finish_grow' in n or 'do_reserve_and_handle' in n or 'grow_one' in n or 'alloc::alloc::' in n),
 ('memcpy/memset/memcmp', lambda f,n: re.search(r'mem(move|cpy|set|cmp)',n) is not None),
 ('framing and checksums (sim_runtime::net frames)', lambda f,n: 'sim_runtime::net::' in n and 'stream' not in n and 'faults' not in n),
 ('checkers (kmb_tests::checkers, lincheck)', lambda f,n: 'kmb_tests::checkers' in n or 'lincheck' in n or 'checkers/' in f or 'lincheck/' in f),
 ('trace/inspect', lambda f,n: 'kmb_tests::trace' in n or 'kmb_node::inspect' in n or 'timeline' in n or 'inspect.rs' in f or 'trace.rs' in f),
 ('harness (vopr, workload, faults, cluster)', lambda f,n: 'kmb_tests::' in n or 'kmb-tests/' in f),
 ('simulated network and disk (sim_runtime fault/stream/disk)', lambda f,n: 'sim_runtime::' in n or 'sim-runtime/' in f),
 ('madsim runtime (executor, timers, net, context TLS)', lambda f,n: 'madsim' in n or 'madsim' in f or 'naive_timer' in n or 'async_task' in n or 'async-task' in f or 'std::thread::local' in n or 'tokio::' in n or 'futures' in n or 'concurrent_queue' in n or 'async_stream' in n),
 ('storage engine (kmb_node::storage)', lambda f,n: 'kmb_node::storage' in n or 'storage/' in f),
 ('kv/core (replica, kv, entries, codec)', lambda f,n: 'kmb_node::core' in n or 'kmb_node::kv' in n or 'kmb_node::entry' in n or 'core/' in f and 'kmb-node' in f or 'kv.rs' in f or 'entry.rs' in f),
 ('node driver, connections, RESP, client', lambda f,n: 'kmb_node::' in n or 'kmb-node/' in f),
 ('std generic (btree, SipHash, fmt, ...)', lambda f,n: True),
]
g={}
for c,file,fn in rows:
    for name,r in rules:
        if r(file,fn): g[name]=g.get(name,0)+c; break
print(f"total {tot:,} Ir")
for name,c in sorted(g.items(),key=lambda x:-x[1]):
    print(f"{c/tot*100:6.2f}%  {c/1e9:6.2f} G  {name}")
