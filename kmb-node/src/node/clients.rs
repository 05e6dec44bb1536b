//! Client connections: RESP over TCP within the client bounds; each command is parsed
//! incrementally, handed to the driver, and waits for its committed reply.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::{Event, Limits, REPLY_TIMEOUT};
use crate::commands::{self, Command};
use crate::ratelimit::{WarnLimiter, WARN_PERIOD};
use crate::resp::{self, Value};
use sim_runtime::net::{TcpListener, TcpStream};
use sim_runtime::time::{self, Duration};

/// The reply to a client over `client_connections_max`, as Redis words it.
const MAX_CLIENTS_REPLY: &[u8] = b"-ERR max number of clients reached\r\n";

pub(super) async fn client_listener_task(
    listener: TcpListener,
    inbox: mpsc::Sender<Event>,
    limits: Limits,
) {
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.client_connections_max));
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
        sim_runtime::task::spawn(async move {
            client_connection(stream, inbox, &limits).await;
            drop(permit);
        });
    }
}

async fn client_connection(mut stream: TcpStream, inbox: mpsc::Sender<Event>, limits: &Limits) {
    let _ = stream.set_nodelay(true);
    // Plain Redis clients get a session of their own: a random id, request numbers counted.
    let connection_client: u128 = sim_runtime::rand::random::<u128>() | 1;
    let mut next_request: u64 = 0;
    let mut reader = resp::CommandReader::new(limits.client_buffer_max);
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let args = match reader.next_command() {
            Err(e) => {
                let _ = stream.write_all(&Value::err(e).encode()).await;
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
        let value = match commands::parse(&args) {
            Err(error) => error,
            Ok(Command::Local(value)) => value,
            Ok(Command::Quit) => {
                out.extend_from_slice(&Value::ok().encode());
                let _ = stream.write_all(&out).await;
                let _ = stream.flush().await;
                return;
            }
            Ok(Command::Kv { session, request }) => {
                let (client, number, is_session) = match session {
                    Some((client, number)) => (client, number, true),
                    None => {
                        next_request += 1;
                        (connection_client, next_request, false)
                    }
                };
                let (tx, rx) = oneshot::channel();
                let event = Event::Client {
                    client,
                    request: number,
                    body: request.encode(),
                    reply: tx,
                    session: is_session,
                };
                if inbox.send(event).await.is_err() {
                    return;
                }
                match time::timeout(REPLY_TIMEOUT, rx).await {
                    Ok(Ok(value)) => value,
                    _ => Value::Error(
                        "TIMEOUT no committed reply in time: the request may still take effect"
                            .into(),
                    ),
                }
            }
        };
        value.encode_into(&mut out);
    }
}
