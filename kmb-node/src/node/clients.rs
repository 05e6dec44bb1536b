//! Client connections: RESP over TCP within the client bounds; each command is parsed
//! incrementally, handed to the driver, and waits for its committed reply.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::{Event, Limits, REPLY_TIMEOUT};
use crate::commands::Shape;
use crate::connection::{self, Connection, Context, Settings, Step};
use crate::ratelimit::{WarnLimiter, WARN_PERIOD};
use crate::resp::{self, Value};
use crate::{commands, kv};
use sim_runtime::net::{TcpListener, TcpStream};
use sim_runtime::time::{self, Duration};

/// The reply to a client over `client_connections_max`, as Redis words it.
const MAX_CLIENTS_REPLY: &[u8] = b"-ERR max number of clients reached\r\n";

pub(super) async fn client_listener_task(
    listener: TcpListener,
    inbox: mpsc::Sender<Event>,
    limits: Limits,
    settings: Settings,
) {
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.client_connections_max));
    let node = Arc::new(NodeInfo {
        settings: Arc::new(settings),
        started: time::Instant::now(),
        next_id: AtomicU64::new(1),
        connections: connections.clone(),
    });
    let refusals = WarnLimiter::<()>::new(WARN_PERIOD);
    let refusals = Arc::new(Mutex::new(refusals));
    let mut accept_errors = WarnLimiter::<()>::new(WARN_PERIOD);
    loop {
        let (mut stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors cannot happen within the bounds `kmb-node start` checks
                // against the open-file limit; anything else is logged, not hidden.
                if let Some(suppressed) = accept_errors.check(&(), time::Instant::now()) {
                    tracing::warn!(error = %e, suppressed, "client accept failed");
                }
                time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            let logged = refusals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .check(&(), time::Instant::now());
            if let Some(suppressed) = logged {
                tracing::warn!(
                    client = %addr,
                    max = limits.client_connections_max,
                    suppressed,
                    "client refused: client_connections_max reached"
                );
            }
            // Say why, briefly, off the accept loop; the connection closes when dropped.
            sim_runtime::task::spawn(async move {
                let _ = time::timeout(Duration::from_secs(1), async {
                    let _ = stream.write_all(MAX_CLIENTS_REPLY).await;
                    let _ = stream.flush().await;
                })
                .await;
            });
            continue;
        };
        let inbox = inbox.clone();
        let limits = limits.clone();
        let node = node.clone();
        let id = node.next_id.fetch_add(1, Ordering::Relaxed);
        sim_runtime::task::spawn(async move {
            let state = Connection::new(node.settings.clone(), id, Some(addr));
            client_connection(stream, inbox, &limits, &node, state).await;
            drop(permit);
        });
    }
}

/// What every connection of this node shares.
struct NodeInfo {
    settings: Arc<Settings>,
    started: time::Instant,
    /// `CLIENT ID`s, from 1.
    next_id: AtomicU64,
    /// The connection permits: their use is the number of connected clients.
    connections: Arc<tokio::sync::Semaphore>,
}

/// What a connection command needs: the replica's state (asked of the driver, which reads it
/// between steps) if the command reports it, and the clock.
async fn context(inbox: &mpsc::Sender<Event>, node: &NodeInfo, needs_status: bool) -> Context {
    let status = if needs_status {
        let (tx, rx) = oneshot::channel();
        if inbox.send(Event::Status { reply: tx }).await.is_ok() {
            time::timeout(REPLY_TIMEOUT, rx)
                .await
                .ok()
                .and_then(|r| r.ok())
        } else {
            None
        }
    } else {
        None
    };
    let max = node.settings.client_connections_max;
    let unix_micros = u128::from(time::unix_micros());
    Context {
        status,
        connected_clients: max.saturating_sub(node.connections.available_permits()),
        uptime_secs: node.started.elapsed().as_secs(),
        unix_micros,
    }
}

/// Most commands one pipelined batch carries.
const BATCH_COMMANDS_MAX: usize = 64;
/// Bytes a `Request::Batch` adds to its commands' encodings (tag, count).
const BATCH_OVERHEAD: usize = 5;
/// The most reply bytes one batch may produce at worst ([`reply_bound`]): the state machine
/// refuses a command of a batch whose reply could pass this budget (`kv::MULTI_REPLY_BYTES_MAX`:
/// the client table keeps each session's last reply, and checkpoints carry it), so batches
/// are sized to stay within it and no pipelined command is refused for its batch's sake.
const BATCH_REPLY_MAX: usize = kv::MULTI_REPLY_BYTES_MAX;
/// Replies held before they are written even though more pipelined commands wait.
const OUT_FLUSH_BYTES: usize = 64 * 1024;

/// A plain connection's own session (a random id, request numbers counted), registered before
/// its first command and again after the client table evicted it.
struct PlainSession {
    client: u128,
    next_request: u64,
    registered: bool,
}

impl PlainSession {
    fn new() -> PlainSession {
        PlainSession {
            client: sim_runtime::rand::random::<u128>() | 1,
            next_request: 0,
            registered: false,
        }
    }

    /// Send one request body of this session and wait for its reply; `None` if the node is
    /// stopping. Sending a request anew after an eviction is safe: the connection never
    /// resends a request, so an eviction reply proves this one did not execute.
    async fn submit(&mut self, inbox: &mpsc::Sender<Event>, body: Vec<u8>) -> Option<Value> {
        let mut value = Value::Error(kv::EVICTED_PREFIX.into());
        for _ in 0..2 {
            if !self.registered {
                self.next_request += 1;
                let register = kv::Request::Register.encode();
                // With its op (a session reply): later requests number above it
                // (docs/protocol.md, "Sessions").
                match submit(inbox, self.client, self.next_request, register, true).await? {
                    Value::Array(v) => match v.as_slice() {
                        [Value::Integer(op), Value::Simple(ok)] if ok == "OK" => {
                            self.next_request = self.next_request.max(*op as u64);
                            self.registered = true;
                        }
                        [_, other] => return Some(other.clone()),
                        _ => return Some(Value::err("malformed registration reply")),
                    },
                    other => return Some(other),
                }
            }
            self.next_request += 1;
            match submit(inbox, self.client, self.next_request, body.clone(), false).await? {
                Value::Error(e) if e.starts_with(kv::EVICTED_PREFIX) => {
                    self.registered = false;
                    value = Value::Error(e);
                }
                other => return Some(other),
            }
        }
        Some(value)
    }
}

/// An upper bound on the encoded size of `request`'s reply: a value read is at most
/// [`kv::VALUE_SIZE_MAX`], a multi-key read or scan stops at about [`kv::REPLY_BYTES_MAX`],
/// anything else is an integer, a status or an error.
fn reply_bound(request: &kv::Request) -> usize {
    use kv::Request as R;
    const SMALL: usize = 64 + kv::ERROR_SIZE_MAX;
    const VALUE: usize = 16 + kv::VALUE_SIZE_MAX;
    const LIST: usize = 2 * kv::REPLY_BYTES_MAX;
    match request {
        R::Get { .. } | R::GetDel { .. } | R::SetWith { .. } | R::IncrByFloat { .. } => VALUE,
        R::MGet { keys } => (keys.len() * VALUE).min(LIST),
        R::Scan { .. } | R::Keys { .. } | R::ScanCursor { .. } => LIST,
        R::Multi { commands, .. } | R::Batch { commands } => {
            SMALL + commands.iter().map(reply_bound).sum::<usize>()
        }
        _ => SMALL,
    }
}

/// One pipelined command of a plain connection waiting in the batch.
enum Pending {
    /// A key-value command: its request, reply shape and encoded body.
    Kv {
        request: kv::Request,
        shape: Shape,
        body: Vec<u8>,
    },
    /// A command already answered (refused at admission): its reply keeps its place.
    Answered(Value),
}

/// The key-value commands a client pipelined on a plain connection, gathered while more
/// commands are buffered and sent as one `Request::Batch` (one log entry, one request of the
/// connection's session): at most [`BATCH_COMMANDS_MAX`] commands within one request's size.
#[derive(Default)]
struct Batch {
    items: Vec<Pending>,
    commands: usize,
    /// Encoded bytes of the commands.
    bytes: usize,
    /// The sum of their [`reply_bound`]s.
    reply_bytes: usize,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether a command of `body` bytes whose reply takes at most `reply` bytes still fits.
    fn fits(&self, body: usize, reply: usize, body_max: usize) -> bool {
        self.commands == 0
            || (self.commands < BATCH_COMMANDS_MAX
                && BATCH_OVERHEAD + self.bytes + body <= body_max
                && self.reply_bytes + reply <= BATCH_REPLY_MAX)
    }

    fn push(&mut self, request: kv::Request, shape: Shape, body: Vec<u8>, reply: usize) {
        self.commands += 1;
        self.bytes += body.len();
        self.reply_bytes += reply;
        self.items.push(Pending::Kv {
            request,
            shape,
            body,
        });
    }

    /// Send the batch and append every reply, in order, to `out`; `false` if the node is
    /// stopping. A batch of one command is sent as that command. A reply that is not the
    /// batch's array (a redirect, a timeout) is every command's reply.
    async fn run(
        &mut self,
        session: &mut PlainSession,
        inbox: &mpsc::Sender<Event>,
        body_max: usize,
        protocol: resp::Protocol,
        out: &mut Vec<u8>,
    ) -> bool {
        let items = std::mem::take(&mut self.items);
        let count = std::mem::take(&mut self.commands);
        self.bytes = 0;
        self.reply_bytes = 0;
        // Each reply's place: a key-value command's shape (its reply comes from the log), or
        // a reply already decided.
        let mut order: Vec<Result<Shape, Value>> = Vec::with_capacity(items.len());
        let mut requests = Vec::with_capacity(count);
        let mut bodies = Vec::with_capacity(count);
        for item in items {
            match item {
                Pending::Kv {
                    request,
                    shape,
                    body,
                } => {
                    order.push(Ok(shape));
                    requests.push(request);
                    bodies.push(body);
                }
                Pending::Answered(v) => order.push(Err(v)),
            }
        }
        let mut replies: Vec<Value> = Vec::with_capacity(count);
        match bodies.len() {
            0 => {}
            1 => {
                let body = bodies.pop().unwrap_or_default();
                match session.submit(inbox, body).await {
                    Some(v) => replies.push(v),
                    None => return false,
                }
            }
            n => match kv::admit(&kv::Request::Batch { commands: requests }, body_max) {
                Ok(body) => match session.submit(inbox, body).await {
                    Some(Value::Array(items)) if items.len() == n => replies = items,
                    Some(Value::Array(_)) => replies = vec![Value::err("malformed batch reply"); n],
                    Some(other) => replies = vec![other; n],
                    None => return false,
                },
                // Not expected (the batch was sized to fit): one command at a time.
                Err(_) => {
                    for body in bodies {
                        match session.submit(inbox, body).await {
                            Some(v) => replies.push(v),
                            None => return false,
                        }
                    }
                }
            },
        }
        let mut replies = replies.into_iter();
        for place in order {
            let value = match place {
                Ok(shape) => {
                    connection::shape_reply(&shape, false, replies.next().unwrap_or(Value::Null))
                }
                Err(v) => v,
            };
            value.encode_as(protocol, out);
        }
        true
    }
}

/// Bytes one read from a client connection takes at most.
const CLIENT_READ_CHUNK: usize = 16 * 1024;

async fn client_connection(
    mut stream: TcpStream,
    inbox: mpsc::Sender<Event>,
    limits: &Limits,
    node: &NodeInfo,
    mut state: Connection,
) {
    let _ = stream.set_nodelay(true);
    let body_max = node.settings.request_size_max;
    let mut session = PlainSession::new();
    let mut batch = Batch::default();
    let mut reader = resp::CommandReader::new(limits.client_buffer_max);
    let mut out: Vec<u8> = Vec::new();
    // Reads land in its spare capacity (16 KiB each time): nothing to zero first.
    let mut chunk: Vec<u8> = Vec::with_capacity(CLIENT_READ_CHUNK);
    loop {
        let args = match reader.next_command() {
            Err(e) => {
                // The commands before the malformed bytes are answered first.
                let _ = batch
                    .run(&mut session, &inbox, body_max, state.protocol(), &mut out)
                    .await;
                out.extend_from_slice(&Value::err(e).encode_with(state.protocol()));
                let _ = stream.write_all(&out).await;
                let _ = stream.flush().await;
                return;
            }
            Ok(Some(args)) => args,
            Ok(None) => {
                // Nothing more is buffered: send what the client pipelined, then read.
                if !batch.is_empty()
                    && !batch
                        .run(&mut session, &inbox, body_max, state.protocol(), &mut out)
                        .await
                {
                    return;
                }
                if !out.is_empty() {
                    // Under madsim, bytes leave only on flush.
                    if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                    out.clear();
                }
                chunk.clear();
                match time::timeout(limits.client_idle_timeout, stream.read_buf(&mut chunk)).await {
                    Ok(Ok(0) | Err(_)) => return,
                    Ok(Ok(n)) => reader.feed(&chunk[..n]),
                    Err(_) => {
                        tracing::debug!("client idle for client_idle_timeout: closing");
                        return;
                    }
                }
                continue;
            }
        };
        if args.is_empty() {
            continue;
        }
        let step = state.step(commands::parse(&args));
        if let Step::Kv {
            session: None,
            request,
            shape,
        } = step
        {
            // One request-size limit, from the data file's geometry: what does not fit a WAL
            // slot is refused here, never ordered (issue 11: a 100 KB SET stopped the
            // primary, its retry the next one). The refusal keeps its place among the replies.
            match kv::admit(&request, body_max) {
                Ok(body) => {
                    let reply = reply_bound(&request);
                    if !batch.fits(body.len(), reply, body_max) {
                        if !batch
                            .run(&mut session, &inbox, body_max, state.protocol(), &mut out)
                            .await
                        {
                            return;
                        }
                        // A long pipeline's replies leave as its batches complete.
                        if out.len() >= OUT_FLUSH_BYTES {
                            if stream.write_all(&out).await.is_err()
                                || stream.flush().await.is_err()
                            {
                                return;
                            }
                            out.clear();
                        }
                    }
                    batch.push(request, shape, body, reply);
                }
                Err(why) => {
                    crate::mark!("request_too_large");
                    batch.items.push(Pending::Answered(Value::err(why)));
                }
            }
            continue;
        }
        // Any other command ends the batch: its replies go first, in order (and a connection
        // command may change how later replies are encoded).
        if !batch.is_empty()
            && !batch
                .run(&mut session, &inbox, body_max, state.protocol(), &mut out)
                .await
        {
            return;
        }
        if out.len() >= OUT_FLUSH_BYTES {
            if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
                return;
            }
            out.clear();
        }
        let step = match step {
            Step::Local(command) => {
                let ctx = context(&inbox, node, command.needs_status()).await;
                state.local(command, &ctx)
            }
            Step::Watch(keys) => {
                let versions = versions(&inbox, keys.clone()).await;
                Step::Reply(state.watched(keys, versions))
            }
            other => other,
        };
        let value = match step {
            Step::Reply(value) => value,
            Step::Local(_) | Step::Watch(_) => {
                Value::err("internal: unanswered connection command")
            }
            Step::Close(value) => {
                value.encode_as(state.protocol(), &mut out);
                let _ = stream.write_all(&out).await;
                let _ = stream.flush().await;
                return;
            }
            Step::Kv {
                session: Some((client, number)),
                request,
                shape,
            } => match kv::admit(&request, body_max) {
                Ok(body) => match submit(&inbox, client, number, body, true).await {
                    Some(value) => connection::shape_reply(&shape, true, value),
                    None => return,
                },
                Err(why) => {
                    crate::mark!("request_too_large");
                    Value::err(why)
                }
            },
            Step::Kv { session: None, .. } => Value::err("internal: unbatched command"),
        };
        value.encode_as(state.protocol(), &mut out);
    }
}

/// The versions of `keys` in the replica's applied state (`WATCH`), asked of the driver;
/// `None` if the node is stopping or did not answer in time.
async fn versions(inbox: &mpsc::Sender<Event>, keys: Vec<Vec<u8>>) -> Option<Vec<u64>> {
    let (tx, rx) = oneshot::channel();
    inbox.send(Event::Versions { keys, reply: tx }).await.ok()?;
    time::timeout(REPLY_TIMEOUT, rx).await.ok()?.ok()
}

/// Hand one request to the driver and wait for its committed reply: `None` if the node is
/// stopping (the driver is gone), a `TIMEOUT` error if no reply came in time.
async fn submit(
    inbox: &mpsc::Sender<Event>,
    client: u128,
    request: u64,
    body: Vec<u8>,
    session: bool,
) -> Option<Value> {
    let (tx, rx) = oneshot::channel();
    let event = Event::Client {
        client,
        request,
        body,
        reply: tx,
        session,
    };
    inbox.send(event).await.ok()?;
    Some(match time::timeout(REPLY_TIMEOUT, rx).await {
        Ok(Ok(value)) => value,
        _ => Value::Error(
            "TIMEOUT no committed reply in time: the request may still take effect".into(),
        ),
    })
}
