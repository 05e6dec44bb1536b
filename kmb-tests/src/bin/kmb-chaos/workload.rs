//! The workload: concurrent sessions of the project's client library (`kmb_node::client`:
//! primary following, exactly-once retries) on a small key set.
//!
//! Keys: three contended counters `c0..c2` (INCRBY 1..=5 and GET only, so their final value
//! can be checked against the increments) and six registers `r0..r5` (SET and CAS with
//! values unique to the run, GET), plus RANGE scans over both. A reply is recorded as `ok`
//! (or `error`) with its op number; a request the library reports as certainly not executed
//! as `fail`; a timeout or lost connection as `unknown` (after which the client starts a new
//! session, as the history format asks).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use kmb_node::client::{Client, ClientConfig, ClientError};
use kmb_tests::workload::output_of;
use lincheck::kv::{KvInput, KvOutput, KvReply, KvValue};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim_runtime::time::{Duration, Instant};

pub const COUNTERS: usize = 3;
pub const REGISTERS: usize = 6;

pub fn counter(i: usize) -> String {
    format!("c{i}")
}

pub fn register(i: usize) -> String {
    format!("r{i}")
}

#[derive(Clone, Debug)]
pub enum Outcome {
    Ok(KvReply),
    Fail,
    Unknown,
}

#[derive(Clone, Debug)]
pub struct Op {
    /// The client task (timeline lane); the final reads use one past the last.
    pub worker: u64,
    /// The session (history `client` field).
    pub session: u64,
    pub input: KvInput,
    pub call: u64,
    pub ret: u64,
    pub outcome: Outcome,
}

/// Shared by every client: the run's session counter and clock.
pub struct Shared {
    pub seed: u64,
    pub addresses: Vec<SocketAddr>,
    pub start: Instant,
    pub sessions: AtomicU64,
    pub stop: Arc<AtomicBool>,
    /// Replies whose shape did not fit the command (a protocol bug).
    pub anomalies: std::sync::Mutex<Vec<String>>,
}

impl Shared {
    pub fn micros(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    pub fn session(&self) -> (u64, Client) {
        let session = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        let id = ((self.seed as u128) << 64) | session as u128;
        let config = ClientConfig {
            attempt_timeout: Duration::from_millis(1000),
            request_timeout: Duration::from_secs(5),
            retry_backoff: Duration::from_millis(50),
            // Some first attempts go to a backup, which redirects (or, with a planted
            // read-from-backup bug, answers).
            first_attempt_random: true,
        };
        (session, Client::new(self.addresses.clone(), id, config))
    }
}

/// Execute one operation and record it.
pub async fn execute(
    shared: &Shared,
    worker: u64,
    session: u64,
    client: &mut Client,
    input: KvInput,
) -> Op {
    let call = shared.micros();
    let result = kmb_tests::workload::execute(client, &input).await;
    let ret = shared.micros();
    let outcome = match result {
        Ok(reply) => match output_of(&input, &reply.value) {
            Some(output) => Outcome::Ok(KvReply {
                output,
                op_number: Some(reply.op),
                read: reply.read,
            }),
            None => {
                shared.anomalies.lock().expect("lock").push(format!(
                    "unexpected reply {:?} to {input:?} (op {})",
                    reply.value, reply.op
                ));
                Outcome::Unknown
            }
        },
        Err(ClientError::Failed(_) | ClientError::Rejected(_)) => Outcome::Fail,
        Err(ClientError::Unknown(_)) => Outcome::Unknown,
    };
    Op {
        worker,
        session,
        input,
        call,
        ret,
        outcome,
    }
}

/// Client number `c`: operations until `stop`.
pub async fn run_client(shared: Arc<Shared>, c: u64) -> Vec<Op> {
    let mut rng = ChaCha8Rng::seed_from_u64(shared.seed.wrapping_mul(0x9E37_79B9).wrapping_add(c));
    let (mut session, mut client) = shared.session();
    let mut seen: HashMap<String, Option<KvValue>> = HashMap::new();
    let mut ops = Vec::new();
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        let r = rng.gen_range(0..100);
        let input = if r < 35 {
            let key = counter(rng.gen_range(0..COUNTERS));
            if rng.gen_bool(0.7) {
                KvInput::IncrBy {
                    key,
                    delta: rng.gen_range(1..=5),
                }
            } else {
                KvInput::Get { key }
            }
        } else if r < 95 {
            let key = register(rng.gen_range(0..REGISTERS));
            let value: KvValue = format!("v{c}.{n}").into();
            match rng.gen_range(0..100) {
                0..40 => KvInput::Set { key, value },
                40..70 => KvInput::Get { key },
                _ => KvInput::Cas {
                    expected: seen.get(&key).cloned().flatten(),
                    key,
                    new: value,
                },
            }
        } else {
            KvInput::Scan {
                start: "c".into(),
                end: "s".into(),
                limit: rng.gen_range(3..12),
            }
        };
        let op = execute(&shared, c, session, &mut client, input).await;
        match (&op.input, &op.outcome) {
            (KvInput::Get { key }, Outcome::Ok(reply)) => {
                if let KvOutput::Value(v) = &reply.output {
                    seen.insert(key.clone(), v.clone());
                }
            }
            (KvInput::Set { key, value }, Outcome::Ok(_)) => {
                seen.insert(key.clone(), Some(value.clone()));
            }
            (KvInput::Cas { key, new, .. }, Outcome::Ok(reply))
                if reply.output == KvOutput::Swapped(true) =>
            {
                seen.insert(key.clone(), Some(new.clone()));
            }
            (_, Outcome::Unknown) => {
                // A new session: the old one may still have a request in flight.
                (session, client) = shared.session();
            }
            _ => {}
        }
        ops.push(op);
    }
    ops
}
