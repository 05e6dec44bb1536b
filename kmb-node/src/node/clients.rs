//! Client connections: RESP over TCP within the client bounds; each command is parsed
//! incrementally, handed to the driver, and waits for its committed reply.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::{Event, Limits, REPLY_TIMEOUT};
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
    let unix_micros = time::now_wall()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    Context {
        status,
        connected_clients: max.saturating_sub(node.connections.available_permits()),
        uptime_secs: node.started.elapsed().as_secs(),
        unix_micros,
    }
}

async fn client_connection(
    mut stream: TcpStream,
    inbox: mpsc::Sender<Event>,
    limits: &Limits,
    node: &NodeInfo,
    mut state: Connection,
) {
    let _ = stream.set_nodelay(true);
    // Plain Redis clients get a session of their own: a random id, request numbers counted.
    let connection_client: u128 = sim_runtime::rand::random::<u128>() | 1;
    let mut next_request: u64 = 0;
    let mut registered = false;
    let mut reader = resp::CommandReader::new(limits.client_buffer_max);
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let args = match reader.next_command() {
            Err(e) => {
                out.extend_from_slice(&Value::err(e).encode_with(state.protocol()));
                let _ = stream.write_all(&out).await;
                let _ = stream.flush().await;
                return;
            }
            Ok(Some(args)) => args,
            Ok(None) => {
                if !out.is_empty() {
                    // Under madsim, bytes leave only on flush.
                    if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                    out.clear();
                }
                match time::timeout(limits.client_idle_timeout, stream.read(&mut chunk)).await {
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
        let mut step = state.step(commands::parse(&args));
        if let Step::Local(command) = step {
            let ctx = context(&inbox, node, command.needs_status()).await;
            step = state.local(command, &ctx);
        }
        let value = match step {
            Step::Reply(value) => value,
            Step::Local(_) => Value::err("internal: unanswered connection command"),
            Step::Close(value) => {
                value.encode_as(state.protocol(), &mut out);
                let _ = stream.write_all(&out).await;
                let _ = stream.flush().await;
                return;
            }
            Step::Kv {
                session,
                request,
                shape,
            } => {
                // One request-size limit, from the data file's geometry: what does not fit a
                // WAL slot is refused here, never ordered (issue 11: a 100 KB SET stopped the
                // primary, its retry the next one).
                let body = match kv::admit(&request, node.settings.request_size_max) {
                    Ok(body) => body,
                    Err(why) => {
                        crate::mark!("request_too_large");
                        Value::err(why).encode_as(state.protocol(), &mut out);
                        continue;
                    }
                };
                match session {
                    Some((client, number)) => {
                        match submit(&inbox, client, number, body, true).await {
                            Some(value) => connection::shape_reply(shape, true, value),
                            None => return,
                        }
                    }
                    None => {
                        // A plain connection is a session of its own, registered before its
                        // first command and again after the client table evicted it. Sending
                        // the command anew is safe: the connection never resends a command,
                        // so an eviction reply proves this one did not execute.
                        let mut value = Value::Error(kv::EVICTED_PREFIX.into());
                        for _ in 0..2 {
                            if !registered {
                                next_request += 1;
                                let register = kv::Request::Register.encode();
                                // With its op (a session reply): later requests number
                                // above it (docs/protocol.md, "Sessions").
                                match submit(
                                    &inbox,
                                    connection_client,
                                    next_request,
                                    register,
                                    true,
                                )
                                .await
                                {
                                    Some(Value::Array(v)) => match v.as_slice() {
                                        [Value::Integer(op), Value::Simple(ok)] if ok == "OK" => {
                                            next_request = next_request.max(*op as u64);
                                            registered = true;
                                        }
                                        [_, other] => {
                                            value = other.clone();
                                            break;
                                        }
                                        _ => {
                                            value = Value::err("malformed registration reply");
                                            break;
                                        }
                                    },
                                    Some(other) => {
                                        value = other;
                                        break;
                                    }
                                    None => return,
                                }
                            }
                            next_request += 1;
                            match submit(
                                &inbox,
                                connection_client,
                                next_request,
                                body.clone(),
                                false,
                            )
                            .await
                            {
                                Some(Value::Error(e)) if e.starts_with(kv::EVICTED_PREFIX) => {
                                    registered = false;
                                    value = Value::Error(e);
                                }
                                Some(other) => {
                                    value = other;
                                    break;
                                }
                                None => return,
                            }
                        }
                        connection::shape_reply(shape, false, value)
                    }
                }
            }
        };
        value.encode_as(state.protocol(), &mut out);
    }
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
