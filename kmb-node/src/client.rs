//! The kmb client library: RESP over TCP with kmb's session extension.
//!
//! Every request is sent as `KMB.REQ <client-id> <request-number> <command> <args>...`; the
//! reply is a two-element array `[op-number, reply]`, where `op-number` is the op at which the
//! cluster ordered the request (the simulator's checkers use it) — or, for a read the primary
//! served without a log entry, `[op-number, reply, "read"]`: the reply reads the state after
//! op `op-number` (`Reply::read`). The client:
//!
//! * follows the primary: a `-REDIRECT <replica> <address>` error moves it there;
//! * retries a request on timeout, connection loss or redirect **with the same request
//!   number**, so the cluster executes it exactly once (its client table returns the cached
//!   reply of a retried request);
//! * reports a request that never reached any replica as [`ClientError::Failed`] (certainly
//!   not executed) and one that was sent but got no reply before the deadline as
//!   [`ClientError::Unknown`] (it may or may not take effect, at any later time);
//! * registers its session before its first request (`KMB.REQ id n REGISTER`). The cluster's
//!   client table is bounded: when it evicts this session, the next request is answered
//!   `session evicted` and not executed. If an earlier attempt of that request may have
//!   been delivered it may have executed before the eviction, so the outcome is
//!   [`ClientError::Unknown`]; otherwise the client registers again and sends it anew.
//!
//! Requests on one `Client` are sequential (one outstanding request), as in VSR.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::connection::STOPPING;
use crate::resp::{self, Value};
use sim_runtime::net::TcpStream;
use sim_runtime::time::{self, Duration, Instant};

/// Client tuning.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// How long one attempt waits for a reply before trying another replica.
    pub attempt_timeout: Duration,
    /// How long a request is retried before it is reported as failed or unknown.
    pub request_timeout: Duration,
    /// Pause between attempts when no replica answered usefully.
    pub retry_backoff: Duration,
    /// Send the first attempt of about one request in four to a replica picked from the
    /// client id and request number instead of the last known primary (a backup redirects it;
    /// the simulator uses this to make sure backups see client requests). Default: off.
    pub first_attempt_random: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            attempt_timeout: Duration::from_millis(1000),
            request_timeout: Duration::from_secs(10),
            retry_backoff: Duration::from_millis(50),
            first_attempt_random: false,
        }
    }
}

/// Why a request did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// Certainly not executed: it never reached a replica, or a replica refused it before
    /// ordering it.
    Failed(String),
    /// Sent, but no reply before the deadline: it may take effect at any later time, or never.
    Unknown(String),
    /// Refused as invalid (too large, malformed): certainly not executed, and retrying the
    /// same request cannot succeed. The refusal is the replica's `-ERR` text.
    Rejected(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Failed(m) => write!(f, "failed: {m}"),
            ClientError::Unknown(m) => write!(f, "outcome unknown: {m}"),
            ClientError::Rejected(m) => write!(f, "rejected: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A committed reply: the op number it was ordered at and the command's reply (which may be a
/// command error such as `ERR value is not an integer`, itself committed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub op: u64,
    pub value: Value,
    /// A read served without a log entry: `op` names the state it read (the state after that
    /// op), not an op of its own.
    pub read: bool,
}

struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
    /// Where each read lands before it joins `buffer` (on the heap: in the read's future, a
    /// 4 KiB array was copied whenever the future moved and zeroed on every read).
    chunk: Box<[u8; READ_CHUNK]>,
}

/// Bytes one read of a reply takes at most.
const READ_CHUNK: usize = 4096;

/// `-ERR` replies about the replica's state rather than the request (another replica, or
/// the same one later, may take it): the node stopping, its client connections full.
fn is_transient(error: &str) -> bool {
    error.starts_with(STOPPING) || error.starts_with("ERR max number of clients")
}

/// How [`Client::send`] failed.
enum Sent {
    Done(ClientError),
    /// The cluster answered that it no longer holds this session (`kv::SESSION_EVICTED`);
    /// `maybe_executed`: an earlier attempt of the request may have been delivered.
    Evicted {
        maybe_executed: bool,
    },
}

enum Attempt {
    Reply(Reply),
    /// Try the replica at this index next; `ordered`: the redirecting replica had ordered the
    /// request (it may still take effect).
    Redirect {
        to: usize,
        ordered: bool,
    },
    /// The replica refused before ordering the request (e.g. view change, recovering).
    Refused(String),
    /// The replica refused the request itself (`-ERR …`): no replica would order it.
    Rejected(String),
    /// Connection-level failure; `sent` says whether the request may have been delivered.
    Broken {
        sent: bool,
        why: String,
    },
}

/// A kmb client session.
pub struct Client {
    addresses: Vec<SocketAddr>,
    client_id: u128,
    request: u64,
    /// Whether the cluster holds this session (it registered and was not evicted since).
    registered: bool,
    primary: usize,
    config: ClientConfig,
    connection: Option<(usize, Connection)>,
    /// With [`Client::keep_sent`], every request this session sent, encoded, since
    /// [`Client::take_sent`] (the VOPR replays them much later, as a network delivering old
    /// segments would).
    sent: Option<Vec<Vec<u8>>>,
}

impl Client {
    /// A client of the cluster whose replicas serve clients at `addresses`, with a unique
    /// `client_id` (draw it from `sim_runtime::rand`).
    pub fn new(addresses: Vec<SocketAddr>, client_id: u128, config: ClientConfig) -> Client {
        assert!(!addresses.is_empty(), "a client needs at least one address");
        Client {
            addresses,
            client_id,
            request: 0,
            registered: false,
            primary: 0,
            config,
            connection: None,
            sent: None,
        }
    }

    /// Keep a copy of every request sent from now on, for [`Client::take_sent`] (off unless
    /// asked: the VOPR asks).
    pub fn keep_sent(&mut self) {
        self.sent.get_or_insert_with(Vec::new);
    }

    /// The encoded requests this session sent since the last call, in order (empty unless
    /// [`Client::keep_sent`]): the bytes a delayed segment of one of its connections could
    /// still deliver.
    pub fn take_sent(&mut self) -> Vec<Vec<u8>> {
        self.sent.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// This session's client id.
    pub fn client_id(&self) -> u128 {
        self.client_id
    }

    /// The request number the next request will carry.
    pub fn next_request(&self) -> u64 {
        // An unregistered session registers first.
        self.request + 1 + u64::from(!self.registered)
    }

    /// Execute one command (e.g. `["SET", "k", "v"]`) exactly once. The first command of a
    /// session (and the first after the cluster evicted it from its client table) registers
    /// the session first (`KMB.REQ id n REGISTER`).
    pub async fn execute(&mut self, command: &[&[u8]]) -> Result<Reply, ClientError> {
        let deadline = Instant::now() + self.config.request_timeout;
        loop {
            if !self.registered {
                match self.send(&[b"REGISTER"], deadline).await {
                    // The session numbers its requests above the registration's op
                    // (docs/protocol.md, "Sessions").
                    Ok(reply) => {
                        self.registered = true;
                        self.request = self.request.max(reply.op);
                    }
                    // The command was not sent: it certainly did not execute.
                    Err(Sent::Done(e)) => {
                        return Err(ClientError::Failed(format!("could not register: {e}")))
                    }
                    Err(Sent::Evicted { .. }) => {
                        return Err(ClientError::Failed(
                            "could not register: evicted at once".into(),
                        ))
                    }
                }
            }
            match self.send(command, deadline).await {
                Ok(reply) => return Ok(reply),
                Err(Sent::Done(e)) => return Err(e),
                Err(Sent::Evicted { maybe_executed }) => {
                    // The cluster no longer holds this session: an earlier attempt may have
                    // executed before the eviction, and a retry must not run it again.
                    self.registered = false;
                    if maybe_executed {
                        return Err(ClientError::Unknown(
                            "the session was evicted from the client table while the request was in flight".into(),
                        ));
                    }
                    // This was the only attempt, and the eviction reply proves it did not
                    // execute: register again and send the command anew.
                }
            }
        }
    }

    /// Send one request (a new request number), retrying it until `deadline`.
    async fn send(&mut self, command: &[&[u8]], deadline: Instant) -> Result<Reply, Sent> {
        self.request += 1;
        let mut args: Vec<Vec<u8>> = vec![
            b"KMB.REQ".to_vec(),
            self.client_id.to_string().into_bytes(),
            self.request.to_string().into_bytes(),
        ];
        args.extend(command.iter().map(|a| a.to_vec()));
        let encoded = Value::Array(args.into_iter().map(Value::Bulk).collect()).encode();
        if let Some(sent) = self.sent.as_mut() {
            sent.push(encoded.clone());
        }
        let mut ever_sent = false;
        let mut last_error = String::from("no attempt made");
        let mut target = self.primary;
        if self.config.first_attempt_random {
            // A deterministic draw (no shared random stream is consumed).
            let mut x = (self.client_id as u64) ^ ((self.client_id >> 64) as u64) ^ self.request;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^= x >> 31;
            if x.is_multiple_of(4) {
                target = ((x >> 8) % self.addresses.len() as u64) as usize;
            }
        }
        // Redirects followed for this request: the first is followed at once, later ones
        // after the backoff (two replicas sending the client to each other — a primary that
        // lost its quorum and a backup still following it — are asked again only after a
        // pause).
        let mut redirects = 0u32;
        while Instant::now() < deadline {
            match self.attempt(target, &encoded).await {
                Attempt::Reply(reply) => {
                    self.primary = target;
                    if matches!(&reply.value, Value::Error(e) if e.starts_with(crate::kv::EVICTED_PREFIX))
                    {
                        return Err(Sent::Evicted {
                            maybe_executed: ever_sent,
                        });
                    }
                    return Ok(reply);
                }
                Attempt::Redirect { to, ordered } => {
                    // A primary that ordered the request and then lost its view redirects it:
                    // it may still commit, so the request is no longer certainly unexecuted.
                    ever_sent |= ordered;
                    target = to;
                    redirects += 1;
                    if redirects < 2 {
                        continue;
                    }
                }
                Attempt::Refused(why) => {
                    last_error = why;
                    target = (target + 1) % self.addresses.len();
                }
                // Every replica refuses these bytes alike, so an earlier attempt was refused
                // too — unless it reached a replica that judged otherwise, which a client
                // cannot rule out once it may have delivered one.
                Attempt::Rejected(why) if !ever_sent => {
                    return Err(Sent::Done(ClientError::Rejected(why)))
                }
                Attempt::Rejected(why) => return Err(Sent::Done(ClientError::Unknown(why))),
                Attempt::Broken { sent, why } => {
                    ever_sent |= sent;
                    last_error = why;
                    self.connection = None;
                    target = (target + 1) % self.addresses.len();
                }
            }
            time::sleep(self.config.retry_backoff).await;
        }
        Err(Sent::Done(if ever_sent {
            ClientError::Unknown(last_error)
        } else {
            ClientError::Failed(last_error)
        }))
    }

    async fn attempt(&mut self, target: usize, encoded: &[u8]) -> Attempt {
        let timeout = self.config.attempt_timeout;
        if self.connection.as_ref().map(|(i, _)| *i) != Some(target) {
            self.connection = None;
            let addr = self.addresses[target];
            match time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    self.connection = Some((
                        target,
                        Connection {
                            stream,
                            buffer: Vec::new(),
                            chunk: Box::new([0u8; READ_CHUNK]),
                        },
                    ));
                }
                Ok(Err(e)) => {
                    return Attempt::Broken {
                        sent: false,
                        why: format!("connect {addr}: {e}"),
                    }
                }
                Err(_) => {
                    return Attempt::Broken {
                        sent: false,
                        why: format!("connect {addr}: timed out"),
                    }
                }
            }
        }
        let Some((_, connection)) = self.connection.as_mut() else {
            unreachable!("connected above");
        };
        if let Err(e) = connection.stream.write_all(encoded).await {
            // Part of the request may have reached the replica.
            return Attempt::Broken {
                sent: true,
                why: format!("send: {e}"),
            };
        }
        let _ = connection.stream.flush().await;
        match time::timeout(timeout, read_value(connection)).await {
            Err(_) => Attempt::Broken {
                sent: true,
                why: "reply timed out".into(),
            },
            Ok(Err(why)) => Attempt::Broken { sent: true, why },
            Ok(Ok(value)) => self.interpret(value),
        }
    }

    fn interpret(&self, value: Value) -> Attempt {
        match value {
            Value::Array(mut items) if matches!(items.len(), 2 | 3) => {
                let read = items.len() == 3;
                let marker = if read { items.pop() } else { None };
                let reply = items.pop().expect("two items");
                match items.pop() {
                    Some(Value::Integer(op))
                        if op >= 0 && (!read || marker == Some(Value::Simple("read".into()))) =>
                    {
                        Attempt::Reply(Reply {
                            op: op as u64,
                            value: reply,
                            read,
                        })
                    }
                    _ => Attempt::Broken {
                        sent: true,
                        why: "malformed session reply".into(),
                    },
                }
            }
            Value::Error(e) if e.starts_with("REDIRECT ") => {
                let replica = e
                    .split_whitespace()
                    .nth(1)
                    .and_then(|r| r.parse::<usize>().ok())
                    .filter(|&r| r < self.addresses.len());
                let ordered = e.split_whitespace().any(|t| t == "ORDERED");
                match replica {
                    Some(to) => Attempt::Redirect { to, ordered },
                    None if ordered => Attempt::Broken { sent: true, why: e },
                    None => Attempt::Refused(e),
                }
            }
            // The replica accepted the request but saw no commit in time: it may still
            // take effect.
            Value::Error(e) if e.starts_with("TIMEOUT") => Attempt::Broken { sent: true, why: e },
            // The request itself is invalid (too large, malformed): no retry can succeed.
            Value::Error(e) if e.starts_with("ERR ") && !is_transient(&e) => Attempt::Rejected(e),
            // Refusals before ordering (not primary yet, view change, recovering, busy):
            // the request was not executed, so retrying it is safe.
            Value::Error(e) => Attempt::Refused(e),
            other => Attempt::Broken {
                sent: true,
                why: format!("unexpected reply {other:?}"),
            },
        }
    }

    /// `SET key value`.
    pub async fn set(&mut self, key: &[u8], value: &[u8]) -> Result<Reply, ClientError> {
        self.execute(&[b"SET", key, value]).await
    }

    /// `GET key`.
    pub async fn get(&mut self, key: &[u8]) -> Result<Reply, ClientError> {
        self.execute(&[b"GET", key]).await
    }

    /// `DEL key`.
    pub async fn del(&mut self, key: &[u8]) -> Result<Reply, ClientError> {
        self.execute(&[b"DEL", key]).await
    }

    /// `INCRBY key delta`.
    pub async fn incrby(&mut self, key: &[u8], delta: i64) -> Result<Reply, ClientError> {
        let delta = delta.to_string();
        self.execute(&[b"INCRBY", key, delta.as_bytes()]).await
    }

    /// Compare-and-set: `CAS key IFEQ expected new` or, with `expected = None`,
    /// `CAS key IFABSENT new`. Replies `1` if it set the value, `0` if not.
    pub async fn cas(
        &mut self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<Reply, ClientError> {
        match expected {
            Some(expected) => self.execute(&[b"CAS", key, b"IFEQ", expected, new]).await,
            None => self.execute(&[b"CAS", key, b"IFABSENT", new]).await,
        }
    }

    /// Range scan: `RANGE start end LIMIT n` — keys in `[start, end)`, in order, at most `n`.
    pub async fn range(
        &mut self,
        start: &[u8],
        end: &[u8],
        limit: u32,
    ) -> Result<Reply, ClientError> {
        let limit = limit.to_string();
        self.execute(&[b"RANGE", start, end, b"LIMIT", limit.as_bytes()])
            .await
    }
}

async fn read_value(connection: &mut Connection) -> Result<Value, String> {
    loop {
        match resp::parse_value(&connection.buffer) {
            Err(e) => return Err(e.to_string()),
            Ok(Some((value, used))) => {
                connection.buffer.drain(..used);
                return Ok(value);
            }
            Ok(None) => {}
        }
        match connection.stream.read(&mut connection.chunk[..]).await {
            Ok(0) => return Err("connection closed".into()),
            Ok(n) => connection.buffer.extend_from_slice(&connection.chunk[..n]),
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a reply is classified as the retry rules need: a request the cluster refuses
    /// itself (too large, malformed) is not retried; a refusal about the replica's state (the
    /// node stopping, its connections full) is retried elsewhere; `TIMEOUT` may have executed.
    #[test]
    fn replies_are_classified_for_retries() {
        let c = Client::new(
            vec!["127.0.0.1:1".parse().expect("address")],
            1,
            ClientConfig::default(),
        );
        let error = |e: &str| c.interpret(Value::Error(e.into()));
        assert!(matches!(
            error("ERR value too large (max 5 bytes)"),
            Attempt::Rejected(_)
        ));
        assert!(matches!(
            error("ERR max number of clients reached"),
            Attempt::Refused(_)
        ));
        assert!(matches!(error(STOPPING), Attempt::Refused(_)));
        assert!(matches!(
            error("TIMEOUT no committed reply in time"),
            Attempt::Broken { sent: true, .. }
        ));
        assert!(matches!(
            error("REDIRECT 0 127.0.0.1:1"),
            Attempt::Redirect {
                to: 0,
                ordered: false
            }
        ));
        // A primary that ordered the request and lost its view: it may still take effect.
        assert!(matches!(
            error("REDIRECT 0 127.0.0.1:1 ORDERED"),
            Attempt::Redirect {
                to: 0,
                ordered: true
            }
        ));
    }
}
