//! Reproducible generator of kmb-like histories (the shape of a Jepsen-style run:
//! many clients, few keys, heavily contended counters, timeouts).
//!
//! A linearizable server is simulated: each operation gets a linearization point
//! strictly between its call and its return, the server applies operations in the order
//! of those points and numbers them (op numbers, as kmb's replies carry). Unknown
//! outcomes (timeouts) take effect at a random later point or never; they consume an op
//! number when they take effect but, as in kmb, the client never sees it. Failed
//! requests (`fail`) never take effect. So the history is linearizable by construction,
//! unless [`GenOptions::violate`] plants one stale read.
//!
//! Workload (per operation, by a seeded SplitMix64 stream):
//!
//! * 60 %: `incrby` on a hot counter (the first `min(3, keys)` keys), delta 1 (90 %) or
//!   2..=5; 12 %: `get` of a hot counter. Hot counters are only incremented and read,
//!   so their values only grow.
//! * 0.2 %: `scan` over the other keys (limit 1..=10).
//! * the rest on the other keys ("registers"): `set` of a fresh value (35 %), `get`
//!   (35 %), `cas` from the last value a client wrote there or from absent, to a fresh
//!   value (15 %), `del` (8 %), `incrby` (7 %, mostly an `error` reply).
//!
//! Timing: each client runs one operation at a time; latency 50..450, think time
//! 0..20, so every operation overlaps those of most other clients. After an unknown
//! outcome the client waits a 5 000 timeout and continues under a new client id (id +
//! `clients`), as Jepsen does with a new process.

use std::collections::{BTreeMap, BinaryHeap};

use crate::hash::mix64;
use crate::kv::{apply, KvInput, KvOp, KvOutput, KvReply, KvValue, Record};
use crate::Operation;

/// Generator parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenOptions {
    /// Operations to generate (including `fail` records).
    pub ops: usize,
    /// Concurrent clients.
    pub clients: u64,
    /// Number of keys.
    pub keys: usize,
    /// Seed of the random stream.
    pub seed: u64,
    /// Probability that an operation's outcome is unknown (half of those take effect).
    pub unknown_rate: f64,
    /// Probability that an operation fails (does not take effect).
    pub fail_rate: f64,
    /// Plant one stale read of a hot counter in the second half of the history.
    pub violate: bool,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            ops: 10_000,
            clients: 16,
            keys: 20,
            seed: 1,
            unknown_rate: 0.002,
            fail_rate: 0.005,
            violate: false,
        }
    }
}

const TIMEOUT: u64 = 5_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Completed,
    Unknown,
    Failed,
}

struct Planned {
    client: u64,
    call: u64,
    ret: u64,
    /// Linearization point, `None` if it never takes effect.
    lin: Option<u64>,
    input: KvInput,
    fate: Fate,
}

/// The key names: `k00`, `k01`, ... (zero-padded so that they sort by number).
pub fn key_name(i: usize, keys: usize) -> String {
    let width = keys.saturating_sub(1).to_string().len().max(2);
    format!("k{i:0width$}")
}

/// Generates a history: one [`Record`] per operation, in call order.
pub fn generate(opts: &GenOptions) -> Vec<Record> {
    let mut rng = Rng(opts.seed ^ 0x6b6d_625f_6c69_6e63);
    let keys = opts.keys.max(1);
    let hot = keys.min(3);
    let clients = opts.clients.max(1);
    let name = |i: usize| key_name(i, keys);
    // Per register key: the last value a client wrote (what a cas expects).
    let mut last_written: Vec<Option<KvValue>> = vec![None; keys];
    let mut heap: BinaryHeap<std::cmp::Reverse<(u64, u64)>> = (0..clients)
        .map(|c| std::cmp::Reverse((c * 7, c)))
        .collect();
    let mut incarnation = vec![0u64; clients as usize];
    let mut plan: Vec<Planned> = Vec::with_capacity(opts.ops);
    for seq in 0..opts.ops {
        let Some(std::cmp::Reverse((call, thread))) = heap.pop() else {
            break;
        };
        let r = rng.below(1000);
        let input = if r < 600 {
            let delta = if rng.below(10) < 9 {
                1
            } else {
                2 + rng.below(4) as i64
            };
            KvInput::IncrBy {
                key: name(rng.below(hot as u64) as usize),
                delta,
            }
        } else if r < 720 || hot == keys {
            KvInput::Get {
                key: name(rng.below(hot as u64) as usize),
            }
        } else if r < 722 {
            let a = hot + rng.below((keys - hot) as u64) as usize;
            let b = a + 1 + rng.below(6) as usize;
            KvInput::Scan {
                start: name(a),
                end: if b >= keys { "l".to_string() } else { name(b) },
                limit: 1 + rng.below(10),
            }
        } else {
            let k = hot + rng.below((keys - hot) as u64) as usize;
            let key = name(k);
            match rng.below(100) {
                0..35 => {
                    let value = KvValue::from(format!("v{seq}"));
                    last_written[k] = Some(value.clone());
                    KvInput::Set { key, value }
                }
                35..70 => KvInput::Get { key },
                70..85 => {
                    let expected = if rng.below(4) == 0 {
                        None
                    } else {
                        last_written[k].clone()
                    };
                    let new = KvValue::from(format!("c{seq}"));
                    last_written[k] = Some(new.clone());
                    KvInput::Cas { key, expected, new }
                }
                85..93 => KvInput::Del { key },
                _ => KvInput::IncrBy {
                    key,
                    delta: 1 + rng.below(3) as i64,
                },
            }
        };
        let latency = 50 + rng.below(400);
        let ret = call + latency;
        let lin_in_flight = call + 1 + rng.below(latency - 1);
        let client = thread + clients * incarnation[thread as usize];
        let (fate, lin, next_call) = if rng.chance(opts.fail_rate) {
            (Fate::Failed, None, ret + rng.below(20))
        } else if rng.chance(opts.unknown_rate) {
            incarnation[thread as usize] += 1;
            let lin = rng.chance(0.5).then(|| call + 1 + rng.below(2 * TIMEOUT));
            (Fate::Unknown, lin, call + TIMEOUT + rng.below(20))
        } else {
            (Fate::Completed, Some(lin_in_flight), ret + rng.below(20))
        };
        plan.push(Planned {
            client,
            call,
            ret,
            lin,
            input,
            fate,
        });
        heap.push(std::cmp::Reverse((next_call, thread)));
    }

    // The server: apply in linearization order, numbering as it goes.
    let mut order: Vec<(u64, usize)> = plan
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((p.lin?, i)))
        .collect();
    order.sort_unstable();
    let mut replies: Vec<Option<KvReply>> = vec![None; plan.len()];
    let mut store: BTreeMap<String, KvValue> = BTreeMap::new();
    for (num, &(_, i)) in order.iter().enumerate() {
        let output = apply(&mut store, &plan[i].input);
        replies[i] = Some(KvReply {
            output,
            op_number: Some(num as u64 + 1),
            read: false,
        });
    }

    if opts.violate {
        plant_stale_read(&plan, &mut replies, hot, keys);
    }

    plan.iter()
        .zip(replies)
        .map(|(p, reply)| match p.fate {
            Fate::Failed => Record::failed(p.client, p.call, Some(p.ret), &p.input),
            Fate::Unknown => Record::from_op(&Operation {
                client: p.client,
                input: p.input.clone(),
                output: None,
                call: p.call,
                ret: u64::MAX,
            }),
            Fate::Completed => Record::from_op(&KvOp {
                client: p.client,
                input: p.input.clone(),
                output: reply,
                call: p.call,
                ret: p.ret,
            }),
        })
        .collect()
}

/// Makes one completed `get` of a hot counter in the second half return a value lower
/// than what a completed increment that returned before the get was called had
/// already produced. Counters only grow, so no order explains it.
fn plant_stale_read(plan: &[Planned], replies: &mut [Option<KvReply>], hot: usize, keys: usize) {
    let hot_keys: Vec<String> = (0..hot).map(|i| key_name(i, keys)).collect();
    // Completed increments of hot keys by return time.
    let mut incrs: Vec<(u64, usize, i64)> = Vec::new();
    for (i, p) in plan.iter().enumerate() {
        if let (Fate::Completed, KvInput::IncrBy { key, .. }) = (p.fate, &p.input) {
            if let Some(KvReply {
                output: KvOutput::Int(n),
                ..
            }) = &replies[i]
            {
                if let Some(k) = hot_keys.iter().position(|h| h == key) {
                    incrs.push((p.ret, k, *n));
                }
            }
        }
    }
    incrs.sort_unstable();
    for (g, p) in plan.iter().enumerate().skip(plan.len() / 2) {
        let KvInput::Get { key } = &p.input else {
            continue;
        };
        let Some(k) = hot_keys.iter().position(|h| h == key) else {
            continue;
        };
        if p.fate != Fate::Completed {
            continue;
        }
        let floor = incrs
            .iter()
            .take_while(|&&(ret, _, _)| ret < p.call)
            .filter(|&&(_, kk, _)| kk == k)
            .map(|&(_, _, n)| n)
            .max();
        if let (Some(n), Some(reply)) = (floor, replies[g].as_mut()) {
            if n >= 1 {
                reply.output = KvOutput::Value(Some((n - 1).to_string().into()));
                return;
            }
        }
    }
}

/// Renders records as NDJSON lines.
pub fn to_ndjson(records: &[Record]) -> String {
    let mut out = String::with_capacity(records.len() * 120);
    for r in records {
        out.push_str(&r.to_line());
        out.push('\n');
    }
    out
}
