//! One client connection's state and the connection-level commands. Pure: the glue
//! (`node/clients.rs`) reads the node's state, the clock and the socket, and hands them in.
//!
//! A connection has a protocol (RESP2 until `HELLO 3`), a name and library info (`CLIENT
//! SETNAME` / `SETINFO`), whether it has authenticated (`AUTH`, when the node has a password),
//! its `WATCH`ed keys with their versions, and inside `MULTI` the queued transaction.
//!
//! **Transactions.** `MULTI` queues key-value commands (`+QUEUED`) and `PING`/`ECHO`-like
//! replies the connection answers itself; `EXEC` sends the queued commands and the watched
//! keys' versions as one [`Request::Multi`] — one log entry, all or nothing — whose reply is the
//! array of the commands' replies (each shaped as its command, local replies merged in order),
//! or a null array if a watched key changed. A command refused while queuing (unknown, wrong
//! arity, a syntax error, too large, a connection command) answers its error and makes `EXEC`
//! answer `EXECABORT` and apply nothing. `WATCH` reads each key's version from the replica's
//! applied state (the glue asks the driver: [`Step::Watch`], then [`Connection::watched`]);
//! `UNWATCH`, `EXEC`, `DISCARD` and `RESET` forget them.
//!
//! [`Connection::step`] gates each parsed command (authentication, the transaction) and says
//! what to do with it: reply at once, send a key-value request through the log, read watched
//! keys' versions, or answer a connection command with [`Connection::local`] given a
//! [`Context`] (the node's state read by the glue).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::commands::{Command, Conn, Shape, Transaction};
use crate::kv::{self, Request, KEYS_MAX, KEY_SIZE_MAX};
use crate::resp::{Protocol, Value};

/// The Redis version whose command semantics kmb follows (what `HELLO`, `INFO` and clients
/// that check a server version see).
pub const REDIS_VERSION: &str = "7.2.0";

/// A client password (`requirepass`), kept out of debug output and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Vec<u8>);

impl Password {
    pub fn new(p: impl Into<Vec<u8>>) -> Password {
        Password(p.into())
    }

    /// Compare in time independent of where the first difference is.
    pub fn matches(&self, given: &[u8]) -> bool {
        let mut diff = (self.0.len() != given.len()) as u8;
        for (i, &b) in self.0.iter().enumerate() {
            diff |= b ^ given.get(i).copied().unwrap_or(0);
        }
        diff == 0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// The node's settings a connection reports (`CONFIG GET`, `INFO`) or enforces (`AUTH`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where this node listens for clients.
    pub listen: SocketAddr,
    /// `requirepass`: commands need `AUTH` first when set.
    pub requirepass: Option<Password>,
    pub client_connections_max: usize,
    pub client_idle_timeout_secs: u64,
    pub client_buffer_max: usize,
    /// The largest encoded kv request (one WAL slot's body): `kv::admit`.
    pub request_size_max: usize,
}

/// The replica's role in its current view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaStatus {
    Normal,
    ViewChange,
    Recovering,
}

/// The replica's state as the driver reads it for `INFO`, `ROLE`, `HELLO`, `WAIT`, `DBSIZE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub replica: u8,
    pub replica_count: u8,
    pub status: ReplicaStatus,
    pub view: u64,
    /// The primary of `view`.
    pub primary: u8,
    pub is_primary: bool,
    pub op: u64,
    pub commit: u64,
    pub commit_max: u64,
    pub checkpoint_op: u64,
    /// Keys in the replica's applied state (committed ops applied so far).
    pub keys: usize,
    /// How many of them have an expiry (`INFO keyspace`'s `expires`).
    pub expires: usize,
    /// The applied state's clock: the largest cluster timestamp applied (milliseconds since
    /// the Unix epoch; `kv::KvState::clock`).
    pub clock: u64,
    /// Every replica's client address, by index.
    pub client_addresses: Vec<SocketAddr>,
}

impl NodeStatus {
    /// Replicas besides the primary that hold every committed op: a commit needs a quorum.
    pub fn replicas_acknowledging(&self) -> i64 {
        (self.replica_count as i64 / 2 + 1) - 1
    }
}

/// What the glue read for a connection command.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// `None` when the node is stopping (its driver no longer answers).
    pub status: Option<NodeStatus>,
    pub connected_clients: usize,
    pub uptime_secs: u64,
    /// Wall-clock time since the Unix epoch, in microseconds (`TIME`).
    pub unix_micros: u128,
}

/// What to do with one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this reply.
    Reply(Value),
    /// Send this reply, then close the connection.
    Close(Value),
    /// Send the request through the replicated log; shape its reply with [`shape_reply`].
    Kv {
        session: Option<(u128, u64)>,
        request: Request,
        shape: Shape,
    },
    /// Answer with [`Connection::local`] (reading the node's state first if
    /// [`Conn::needs_status`]).
    Local(Conn),
    /// `WATCH`: read these keys' versions from the replica's applied state and answer with
    /// [`Connection::watched`].
    Watch(Vec<Vec<u8>>),
}

/// One client connection's state.
#[derive(Clone, Debug)]
pub struct Connection {
    settings: Arc<Settings>,
    id: u64,
    peer: Option<SocketAddr>,
    protocol: Protocol,
    name: Option<Vec<u8>>,
    lib_name: Option<Vec<u8>>,
    lib_ver: Option<Vec<u8>>,
    authenticated: bool,
    /// Inside `MULTI`: what is queued.
    multi: Option<Queued>,
    /// `WATCH`ed keys, each with its version when first watched.
    watches: Vec<(Vec<u8>, u64)>,
}

/// A transaction being queued.
#[derive(Clone, Debug, Default)]
struct Queued {
    tx: Transaction,
    /// A command was refused while queuing: `EXEC` aborts.
    failed: bool,
}

const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";
/// Bytes a `Request::Multi` adds to its commands' encodings besides the watches (tag, two
/// counts).
const MULTI_OVERHEAD: usize = 9;
const NOAUTH: &str = "NOAUTH Authentication required.";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

fn is_default_user(user: &[u8]) -> bool {
    user == b"default"
}

/// Whether a client name is acceptable: printable ASCII without spaces, as Redis requires.
fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

impl Connection {
    pub fn new(settings: Arc<Settings>, id: u64, peer: Option<SocketAddr>) -> Connection {
        let authenticated = settings.requirepass.is_none();
        Connection {
            settings,
            id,
            peer,
            protocol: Protocol::Resp2,
            name: None,
            lib_name: None,
            lib_ver: None,
            authenticated,
            multi: None,
            watches: Vec::new(),
        }
    }

    /// The reply encoding this connection has chosen.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Gate a parsed command and say what to do with it.
    pub fn step(&mut self, parsed: Result<Command, Value>) -> Step {
        if !self.authenticated {
            match &parsed {
                Ok(Command::Conn(Conn::Auth { .. } | Conn::Hello { .. } | Conn::Reset))
                | Ok(Command::Quit) => {}
                // Redis checks the command's name and arity before authentication.
                Err(Value::Error(e))
                    if e.starts_with("ERR unknown command")
                        || e.starts_with("ERR wrong number of arguments") => {}
                _ => return Step::Reply(Value::Error(NOAUTH.into())),
            }
        }
        if self.multi.is_some() {
            return self.queue(parsed);
        }
        match parsed {
            Err(e) => Step::Reply(e),
            Ok(Command::Local(v)) => Step::Reply(v),
            Ok(Command::Quit) => Step::Close(Value::ok()),
            Ok(Command::Kv {
                session,
                request,
                shape,
            }) => Step::Kv {
                session,
                request,
                shape,
            },
            Ok(Command::Conn(Conn::Multi)) => {
                self.multi = Some(Queued::default());
                Step::Reply(Value::ok())
            }
            Ok(Command::Conn(Conn::Exec)) => Step::Reply(Value::err("EXEC without MULTI")),
            Ok(Command::Conn(Conn::Discard)) => Step::Reply(Value::err("DISCARD without MULTI")),
            Ok(Command::Conn(Conn::Watch(keys))) => {
                if self.watches.len() + keys.len() > KEYS_MAX {
                    Step::Reply(Value::err(format!(
                        "too many watched keys (at most {KEYS_MAX})"
                    )))
                } else if keys.iter().any(|k| k.len() > KEY_SIZE_MAX) {
                    Step::Reply(Value::err(format!(
                        "key too large (at most {KEY_SIZE_MAX} bytes)"
                    )))
                } else {
                    Step::Watch(keys)
                }
            }
            Ok(Command::Conn(Conn::Unwatch)) => {
                self.watches.clear();
                Step::Reply(Value::ok())
            }
            Ok(Command::Conn(c)) => Step::Local(c),
        }
    }

    /// A command inside `MULTI`: queued, refused (the transaction then aborts), or one of the
    /// commands that act at once.
    fn queue(&mut self, parsed: Result<Command, Value>) -> Step {
        let body_max = self
            .settings
            .request_size_max
            .saturating_sub(MULTI_OVERHEAD);
        let Some(queued) = self.multi.as_mut() else {
            return Step::Reply(Value::err("internal: no transaction"));
        };
        let queued_reply = || Step::Reply(Value::Simple("QUEUED".into()));
        let refused = match parsed {
            Ok(Command::Conn(Conn::Exec)) => return self.exec(),
            Ok(Command::Conn(Conn::Discard)) => {
                self.multi = None;
                self.watches.clear();
                return Step::Reply(Value::ok());
            }
            Ok(Command::Conn(Conn::Multi)) => {
                return Step::Reply(Value::err("MULTI calls can not be nested"))
            }
            Ok(Command::Conn(Conn::Watch(_))) => {
                return Step::Reply(Value::err("WATCH inside MULTI is not allowed"))
            }
            Ok(Command::Conn(Conn::Reset)) => return Step::Local(Conn::Reset),
            Ok(Command::Quit) => return Step::Close(Value::ok()),
            // Queued as in Redis, where it runs at EXEC, which forgets the watches anyway.
            Ok(Command::Conn(Conn::Unwatch)) => {
                queued.tx.push_local(Value::ok());
                return queued_reply();
            }
            Ok(Command::Local(v)) => {
                queued.tx.push_local(v);
                return queued_reply();
            }
            Ok(Command::Kv {
                session: None,
                request,
                shape,
            }) => match kv::admit(&request, self.settings.request_size_max) {
                Err(why) => Value::err(why),
                Ok(_) => match queued.tx.push(request, shape, body_max) {
                    Ok(()) => return queued_reply(),
                    Err(e) => e,
                },
            },
            Ok(Command::Kv {
                session: Some(_), ..
            }) => Value::err(
                "KMB.REQ inside MULTI is not supported: send the transaction as KMB.REQ … KMB.TX",
            ),
            Ok(Command::Conn(c)) => Value::err(format!(
                "{} inside MULTI is not supported by kmb: the transaction is discarded",
                c.name()
            )),
            Err(e) => e,
        };
        queued.failed = true;
        Step::Reply(refused)
    }

    /// `EXEC`: the queued transaction as one request, or `EXECABORT` if a command was refused.
    fn exec(&mut self) -> Step {
        let queued = self.multi.take().unwrap_or_default();
        let watches = std::mem::take(&mut self.watches);
        if queued.failed {
            return Step::Reply(Value::Error(EXECABORT.into()));
        }
        if queued.tx.commands.is_empty() && watches.is_empty() {
            return Step::Reply(queued.tx.local_replies());
        }
        let (request, shape) = queued.tx.into_request(watches);
        Step::Kv {
            session: None,
            request,
            shape,
        }
    }

    /// The versions of the keys a [`Step::Watch`] named, read from the replica's applied
    /// state (`None` if the node could not answer). A key already watched keeps its first
    /// version, as in Redis.
    pub fn watched(&mut self, keys: Vec<Vec<u8>>, versions: Option<Vec<u64>>) -> Value {
        let Some(versions) = versions.filter(|v| v.len() == keys.len()) else {
            return stopping();
        };
        for (key, version) in keys.into_iter().zip(versions) {
            if !self.watches.iter().any(|(k, _)| *k == key) {
                self.watches.push((key, version));
            }
        }
        Value::ok()
    }

    /// Answer a connection command; `Close` for `QUIT`-like commands.
    pub fn local(&mut self, command: Conn, ctx: &Context) -> Step {
        let reply = match command {
            Conn::Hello {
                protocol,
                auth,
                setname,
            } => return Step::Reply(self.hello(protocol, auth, setname, ctx)),
            Conn::Auth { user, password } => self.auth(user.as_deref(), &password),
            Conn::Reset => {
                let settings = self.settings.clone();
                *self = Connection::new(settings, self.id, self.peer);
                Value::Simple("RESET".into())
            }
            Conn::ClientId => Value::Integer(self.id as i64),
            Conn::ClientSetName(name) => {
                if !valid_name(&name) {
                    Value::err(
                        "Client names cannot contain spaces, newlines or special characters.",
                    )
                } else {
                    self.name = (!name.is_empty()).then_some(name);
                    Value::ok()
                }
            }
            Conn::ClientGetName => match &self.name {
                Some(n) => Value::Bulk(n.clone()),
                None => Value::Null,
            },
            Conn::ClientInfo => Value::Verbatim("txt".into(), self.client_line()),
            Conn::ClientList => Value::Verbatim("txt".into(), self.client_line()),
            Conn::ClientSetInfo { attribute, value } => {
                if !valid_name(&value) && !value.is_empty() {
                    Value::err(format!(
                        "{attribute} cannot contain spaces, newlines or special characters."
                    ))
                } else {
                    let value = (!value.is_empty()).then_some(value);
                    if attribute == "lib-name" {
                        self.lib_name = value;
                    } else {
                        self.lib_ver = value;
                    }
                    Value::ok()
                }
            }
            Conn::Info(sections) => Value::Verbatim("txt".into(), self.info(&sections, ctx)),
            Conn::Role => match &ctx.status {
                Some(s) => role(s),
                None => stopping(),
            },
            Conn::Wait => match &ctx.status {
                Some(s) => Value::Integer(s.replicas_acknowledging()),
                None => stopping(),
            },
            Conn::Time => {
                // Never before the cluster timestamp of the last op this replica applied.
                let applied = ctx.status.as_ref().map_or(0, |s| s.clock as u128 * 1000);
                let now = ctx.unix_micros.max(applied);
                let secs = now / 1_000_000;
                let micros = now % 1_000_000;
                Value::Array(vec![
                    Value::text(secs.to_string()),
                    Value::text(micros.to_string()),
                ])
            }
            Conn::ConfigGet(patterns) => self.config_get(&patterns),
            // Gated in `step`; answered here only if a caller skips it.
            c @ (Conn::Watch(_) | Conn::Multi | Conn::Exec | Conn::Discard | Conn::Unwatch) => {
                Value::err(format!("{} is answered by the connection's step", c.name()))
            }
        };
        Step::Reply(reply)
    }

    fn auth(&mut self, user: Option<&[u8]>, password: &[u8]) -> Value {
        match (&self.settings.requirepass, user) {
            (None, None) => Value::err(
                "AUTH <password> called without any password configured for the default user. \
                 Are you sure your configuration is correct?",
            ),
            // The default user without a password accepts any password, as in Redis.
            (None, Some(u)) if is_default_user(u) => {
                self.authenticated = true;
                Value::ok()
            }
            (Some(p), u) if u.is_none_or(is_default_user) && p.matches(password) => {
                self.authenticated = true;
                Value::ok()
            }
            _ => Value::Error(WRONGPASS.into()),
        }
    }

    fn hello(
        &mut self,
        protocol: Option<Protocol>,
        auth: Option<(Vec<u8>, Vec<u8>)>,
        setname: Option<Vec<u8>>,
        ctx: &Context,
    ) -> Value {
        if let Some((user, password)) = auth {
            let reply = self.auth(Some(&user), &password);
            if matches!(reply, Value::Error(_)) {
                return reply;
            }
        }
        if !self.authenticated {
            return Value::Error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise \
                 the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the \
                 client and select the RESP protocol version at the same time"
                    .into(),
            );
        }
        if let Some(name) = setname {
            if !valid_name(&name) {
                return Value::err(
                    "Client names cannot contain spaces, newlines or special characters.",
                );
            }
            self.name = (!name.is_empty()).then_some(name);
        }
        if let Some(p) = protocol {
            self.protocol = p;
        }
        let role = match &ctx.status {
            Some(s) if !s.is_primary => "replica",
            _ => "master",
        };
        Value::Map(vec![
            (Value::text("server"), Value::text("kmb")),
            (Value::text("version"), Value::text(REDIS_VERSION)),
            (
                Value::text("proto"),
                Value::Integer(self.protocol.version()),
            ),
            (Value::text("id"), Value::Integer(self.id as i64)),
            (Value::text("mode"), Value::text("standalone")),
            (Value::text("role"), Value::text(role)),
            (Value::text("modules"), Value::Array(Vec::new())),
        ])
    }

    /// This connection's `CLIENT INFO` line.
    fn client_line(&self) -> Vec<u8> {
        let text = |v: &Option<Vec<u8>>| {
            v.as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let addr = self.peer.map(|a| a.to_string()).unwrap_or_default();
        format!(
            "id={} addr={} laddr={} name={} db=0 multi={} resp={} lib-name={} lib-ver={}\n",
            self.id,
            addr,
            self.settings.listen,
            text(&self.name),
            self.multi
                .as_ref()
                .map_or(-1, |q| q.tx.commands.len() as i64),
            self.protocol.version(),
            text(&self.lib_name),
            text(&self.lib_ver),
        )
        .into_bytes()
    }

    /// The settings `CONFIG GET` knows, by Redis name.
    fn config(&self) -> Vec<(&'static str, String)> {
        let s = &self.settings;
        vec![
            ("appendfsync", "always".into()),
            ("appendonly", "yes".into()),
            ("bind", s.listen.ip().to_string()),
            ("databases", "1".into()),
            ("maxclients", s.client_connections_max.to_string()),
            ("maxmemory", "0".into()),
            ("port", s.listen.port().to_string()),
            ("proto-max-bulk-len", crate::resp::ARG_SIZE_MAX.to_string()),
            ("client-query-buffer-limit", s.client_buffer_max.to_string()),
            ("save", String::new()),
            ("timeout", s.client_idle_timeout_secs.to_string()),
        ]
    }

    fn config_get(&self, patterns: &[Vec<u8>]) -> Value {
        let pairs = self
            .config()
            .into_iter()
            .filter(|(name, _)| {
                patterns
                    .iter()
                    .any(|p| crate::glob::glob_match(p, name.as_bytes(), true))
            })
            .map(|(name, value)| (Value::text(name), Value::text(value)))
            .collect();
        Value::Map(pairs)
    }

    fn info(&self, sections: &[String], ctx: &Context) -> Vec<u8> {
        let all = sections.is_empty()
            || sections
                .iter()
                .any(|s| matches!(s.as_str(), "all" | "default" | "everything"));
        let wanted = |name: &str| all || sections.iter().any(|s| s == name);
        let mut out: Vec<String> = Vec::new();
        let mut section = |title: &str, lines: Vec<String>| {
            if !out.is_empty() {
                out.push(String::new());
            }
            out.push(format!("# {title}"));
            out.extend(lines);
        };
        if wanted("server") {
            section(
                "Server",
                vec![
                    format!("redis_version:{REDIS_VERSION}"),
                    format!("kmb_version:{}", env!("CARGO_PKG_VERSION")),
                    "redis_mode:standalone".into(),
                    "arch_bits:64".into(),
                    format!("tcp_port:{}", self.settings.listen.port()),
                    format!("uptime_in_seconds:{}", ctx.uptime_secs),
                    format!("uptime_in_days:{}", ctx.uptime_secs / 86_400),
                ],
            );
        }
        if wanted("clients") {
            section(
                "Clients",
                vec![
                    format!("connected_clients:{}", ctx.connected_clients),
                    format!("maxclients:{}", self.settings.client_connections_max),
                ],
            );
        }
        if let Some(s) = &ctx.status {
            if wanted("replication") {
                let mut lines = vec![format!(
                    "role:{}",
                    if s.is_primary { "master" } else { "slave" }
                )];
                if !s.is_primary {
                    if let Some(a) = s.client_addresses.get(s.primary as usize) {
                        lines.push(format!("master_host:{}", a.ip()));
                        lines.push(format!("master_port:{}", a.port()));
                    }
                    let up = s.status == ReplicaStatus::Normal;
                    lines.push(format!(
                        "master_link_status:{}",
                        if up { "up" } else { "down" }
                    ));
                } else {
                    lines.push(format!(
                        "connected_slaves:{}",
                        s.replica_count.saturating_sub(1)
                    ));
                }
                lines.push(format!("master_repl_offset:{}", s.commit));
                lines.extend([
                    format!("kmb_replica:{}", s.replica),
                    format!("kmb_replica_count:{}", s.replica_count),
                    format!(
                        "kmb_status:{}",
                        match s.status {
                            ReplicaStatus::Normal => "normal",
                            ReplicaStatus::ViewChange => "view_change",
                            ReplicaStatus::Recovering => "recovering",
                        }
                    ),
                    format!("kmb_view:{}", s.view),
                    format!("kmb_primary:{}", s.primary),
                    format!("kmb_op:{}", s.op),
                    format!("kmb_commit:{}", s.commit),
                    format!("kmb_commit_max:{}", s.commit_max),
                ]);
                section("Replication", lines);
            }
            if wanted("persistence") {
                section(
                    "Persistence",
                    vec![
                        format!("loading:{}", (s.status == ReplicaStatus::Recovering) as u8),
                        "aof_enabled:1".into(),
                        "kmb_durability:every reply follows an fsync on a quorum".into(),
                        format!("kmb_checkpoint_op:{}", s.checkpoint_op),
                    ],
                );
            }
            if wanted("keyspace") {
                let mut lines = Vec::new();
                if s.keys > 0 {
                    lines.push(format!(
                        "db0:keys={},expires={},avg_ttl=0",
                        s.keys, s.expires
                    ));
                }
                section("Keyspace", lines);
            }
        }
        let mut text = out.join("\r\n");
        text.push_str("\r\n");
        text.into_bytes()
    }
}

/// What a connection command gets while the node stops (another replica may serve it).
pub const STOPPING: &str = "ERR the node is stopping";

fn stopping() -> Value {
    Value::Error(STOPPING.into())
}

fn role(s: &NodeStatus) -> Value {
    if s.is_primary {
        let replicas = s
            .client_addresses
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != s.replica as usize)
            .map(|(_, a)| {
                Value::Array(vec![
                    Value::text(a.ip().to_string()),
                    Value::text(a.port().to_string()),
                    Value::text(s.commit.to_string()),
                ])
            })
            .collect();
        Value::Array(vec![
            Value::text("master"),
            Value::Integer(s.commit as i64),
            Value::Array(replicas),
        ])
    } else {
        let primary = s.client_addresses.get(s.primary as usize);
        Value::Array(vec![
            Value::text("slave"),
            Value::text(primary.map(|a| a.ip().to_string()).unwrap_or_default()),
            Value::Integer(primary.map_or(0, |a| a.port() as i64)),
            Value::text(match s.status {
                ReplicaStatus::Normal => "connected",
                _ => "connecting",
            }),
            Value::Integer(s.commit as i64),
        ])
    }
}

/// Shape a key-value reply for the command that asked ([`Shape::apply`]); a session reply
/// `[op, value]` is shaped inside.
pub fn shape_reply(shape: &Shape, session: bool, value: Value) -> Value {
    if !session {
        return shape.apply(value);
    }
    match value {
        Value::Array(mut items) if items.len() == 2 => {
            let inner = items.pop().unwrap_or(Value::Null);
            items.push(shape.apply(inner));
            Value::Array(items)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::parse;

    fn settings(password: Option<&str>) -> Arc<Settings> {
        Arc::new(Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 6381)),
            requirepass: password.map(Password::new),
            client_connections_max: 512,
            client_idle_timeout_secs: 300,
            client_buffer_max: 1 << 20,
            request_size_max: 65408,
        })
    }

    fn status(is_primary: bool) -> NodeStatus {
        NodeStatus {
            replica: if is_primary { 0 } else { 1 },
            replica_count: 3,
            status: ReplicaStatus::Normal,
            view: 3,
            primary: 0,
            is_primary,
            op: 12,
            commit: 11,
            commit_max: 11,
            checkpoint_op: 8,
            keys: 5,
            expires: 2,
            clock: 1_600_000_000_000,
            client_addresses: (0..3)
                .map(|i| SocketAddr::from(([127, 0, 0, 1], 6381 + i)))
                .collect(),
        }
    }

    fn ctx(is_primary: bool) -> Context {
        Context {
            status: Some(status(is_primary)),
            connected_clients: 2,
            uptime_secs: 90_000,
            unix_micros: 1_700_000_000_123_456,
        }
    }

    /// Run one command line through a connection as the glue does.
    fn run(c: &mut Connection, line: &str) -> Step {
        let args: Vec<Vec<u8>> = line.split(' ').map(|a| a.as_bytes().to_vec()).collect();
        match c.step(parse(&args)) {
            Step::Local(command) => c.local(command, &ctx(true)),
            other => other,
        }
    }

    fn reply(c: &mut Connection, line: &str) -> Value {
        match run(c, line) {
            Step::Reply(v) => v,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn map_get<'a>(v: &'a Value, key: &str) -> &'a Value {
        match v {
            Value::Map(pairs) => {
                &pairs
                    .iter()
                    .find(|(k, _)| *k == Value::text(key))
                    .unwrap_or_else(|| panic!("{key} missing in {v:?}"))
                    .1
            }
            other => panic!("not a map: {other:?}"),
        }
    }

    /// Goal: HELLO switches the connection's protocol and answers the server map.
    #[test]
    fn hello_switches_protocol() {
        let mut c = Connection::new(settings(None), 7, None);
        assert_eq!(c.protocol(), Protocol::Resp2);
        let hello = reply(&mut c, "HELLO 3");
        assert_eq!(c.protocol(), Protocol::Resp3);
        assert_eq!(map_get(&hello, "proto"), &Value::Integer(3));
        assert_eq!(map_get(&hello, "id"), &Value::Integer(7));
        assert_eq!(map_get(&hello, "role"), &Value::text("master"));
        assert_eq!(map_get(&hello, "version"), &Value::text(REDIS_VERSION));
        let hello = reply(&mut c, "HELLO");
        assert_eq!(map_get(&hello, "proto"), &Value::Integer(3));
        reply(&mut c, "HELLO 2 SETNAME app");
        assert_eq!(c.protocol(), Protocol::Resp2);
        assert_eq!(reply(&mut c, "CLIENT GETNAME"), Value::text("app"));
        // A refused HELLO changes nothing.
        assert!(matches!(reply(&mut c, "HELLO 4"), Value::Error(e) if e.starts_with("NOPROTO")));
        assert_eq!(c.protocol(), Protocol::Resp2);
    }

    /// Goal: CLIENT SETNAME/GETNAME/ID/INFO/SETINFO keep and report the connection's state.
    #[test]
    fn client_subcommands() {
        let mut c = Connection::new(
            settings(None),
            9,
            Some(SocketAddr::from(([10, 0, 0, 1], 5))),
        );
        assert_eq!(reply(&mut c, "CLIENT GETNAME"), Value::Null);
        assert_eq!(reply(&mut c, "CLIENT SETNAME worker-1"), Value::ok());
        assert_eq!(reply(&mut c, "CLIENT GETNAME"), Value::text("worker-1"));
        assert!(matches!(
            reply(&mut c, "CLIENT SETNAME a\nb"),
            Value::Error(e) if e.contains("cannot contain spaces")
        ));
        assert_eq!(reply(&mut c, "CLIENT ID"), Value::Integer(9));
        assert_eq!(
            reply(&mut c, "CLIENT SETINFO LIB-NAME redis-py"),
            Value::ok()
        );
        match reply(&mut c, "CLIENT INFO") {
            Value::Verbatim(f, text) => {
                assert_eq!(f, "txt");
                let text = String::from_utf8(text).unwrap();
                assert!(text.starts_with("id=9 addr=10.0.0.1:5 "), "{text}");
                assert!(text.contains(" name=worker-1 "), "{text}");
                assert!(text.contains(" resp=2 lib-name=redis-py "), "{text}");
                assert!(text.ends_with('\n'));
            }
            other => panic!("{other:?}"),
        }
        // An empty name clears it.
        reply(&mut c, "CLIENT SETNAME ");
        assert_eq!(reply(&mut c, "CLIENT GETNAME"), Value::Null);
    }

    /// Goal: without a password AUTH errors as Redis does; with one, commands need AUTH first.
    #[test]
    fn auth_and_noauth() {
        let mut c = Connection::new(settings(None), 1, None);
        assert_eq!(
            reply(&mut c, "AUTH x"),
            Value::err(
                "AUTH <password> called without any password configured for the default user. \
                 Are you sure your configuration is correct?"
            )
        );
        assert_eq!(reply(&mut c, "AUTH default x"), Value::ok());
        assert!(
            matches!(reply(&mut c, "AUTH bob x"), Value::Error(e) if e.starts_with("WRONGPASS"))
        );

        let mut c = Connection::new(settings(Some("s3cret")), 1, None);
        for line in ["GET k", "PING", "CLIENT ID", "INFO", "SELECT 0"] {
            assert_eq!(
                reply(&mut c, line),
                Value::Error("NOAUTH Authentication required.".into()),
                "{line}"
            );
        }
        // Unknown commands and wrong arity are reported first, as in Redis.
        assert!(
            matches!(reply(&mut c, "NOPE"), Value::Error(e) if e.starts_with("ERR unknown command"))
        );
        assert!(
            matches!(reply(&mut c, "HELLO 3"), Value::Error(e) if e.starts_with("NOAUTH HELLO"))
        );
        assert_eq!(c.protocol(), Protocol::Resp2);
        assert!(
            matches!(reply(&mut c, "AUTH wrong"), Value::Error(e) if e.starts_with("WRONGPASS"))
        );
        assert!(
            matches!(run(&mut c, "SET k v"), Step::Reply(Value::Error(e)) if e.starts_with("NOAUTH"))
        );
        assert_eq!(reply(&mut c, "AUTH s3cret"), Value::ok());
        assert!(matches!(run(&mut c, "SET k v"), Step::Kv { .. }));
        // RESET logs the connection out again.
        assert_eq!(reply(&mut c, "RESET"), Value::Simple("RESET".into()));
        assert!(
            matches!(run(&mut c, "GET k"), Step::Reply(Value::Error(e)) if e.starts_with("NOAUTH"))
        );
        // HELLO with AUTH authenticates and switches protocol at once.
        let hello = reply(&mut c, "HELLO 3 AUTH default s3cret");
        assert_eq!(map_get(&hello, "proto"), &Value::Integer(3));
        assert!(matches!(run(&mut c, "GET k"), Step::Kv { .. }));
        assert!(matches!(run(&mut c, "QUIT"), Step::Close(_)));
        assert!(!format!("{:?}", settings(Some("s3cret"))).contains("s3cret"));
    }

    fn kv_step(c: &mut Connection, line: &str) -> (Request, Shape) {
        match run(c, line) {
            Step::Kv {
                session: None,
                request,
                shape,
            } => (request, shape),
            other => panic!("{line}: {other:?}"),
        }
    }

    fn queued() -> Value {
        Value::Simple("QUEUED".into())
    }

    /// Goal: MULTI queues key-value commands and local replies; EXEC sends them as one
    /// transaction request whose reply is shaped command by command, local replies in order;
    /// the connection is out of the transaction afterwards.
    #[test]
    fn multi_exec_is_one_request() {
        let mut c = Connection::new(settings(None), 1, None);
        assert_eq!(reply(&mut c, "MULTI"), Value::ok());
        for line in ["SET a 1", "PING", "EXISTS a", "GETEX a PX 5", "UNWATCH"] {
            assert_eq!(reply(&mut c, line), queued(), "{line}");
        }
        match reply(&mut c, "CLIENT INFO") {
            Value::Error(e) => assert!(e.contains("CLIENT inside MULTI"), "{e}"),
            other => panic!("{other:?}"),
        }
        // That refusal aborts this transaction; start again.
        assert_eq!(reply(&mut c, "EXEC"), Value::Error(EXECABORT.into()));
        reply(&mut c, "MULTI");
        for line in ["SET a 1", "PING", "EXISTS a", "GETEX a PX 5"] {
            assert_eq!(reply(&mut c, line), queued(), "{line}");
        }
        let (request, shape) = kv_step(&mut c, "EXEC");
        let a = || b"a".to_vec();
        assert_eq!(
            request,
            Request::Multi {
                watches: vec![],
                commands: vec![
                    Request::Set {
                        key: a(),
                        value: b"1".to_vec()
                    },
                    Request::Get { key: a() },
                    Request::Get { key: a() },
                    Request::Expire {
                        key: a(),
                        when: kv::ExpireWhen::In(5),
                        condition: kv::ExpireCondition::Always
                    },
                ]
            }
        );
        let executed = Value::Array(vec![
            Value::ok(),
            Value::text("1"),
            Value::text("1"),
            Value::Integer(1),
        ]);
        assert_eq!(
            shape_reply(&shape, false, executed),
            Value::Array(vec![
                Value::ok(),
                Value::Simple("PONG".into()),
                Value::Integer(1),
                Value::text("1"),
            ])
        );
        assert_eq!(
            shape_reply(&shape, false, Value::NullArray),
            Value::NullArray
        );
        // Out of the transaction: commands run at once again.
        assert!(matches!(run(&mut c, "SET a 1"), Step::Kv { .. }));
        assert_eq!(reply(&mut c, "EXEC"), Value::err("EXEC without MULTI"));
    }

    /// Goal: a command refused while queuing (unknown, arity, syntax, too large, a connection
    /// command, a session command) answers its error and EXEC then applies nothing.
    #[test]
    fn refused_command_aborts_the_transaction() {
        let big = format!("SET a {}", "x".repeat(70_000));
        for bad in [
            "NOPE x",
            "SET k",
            "SET k v EX 0",
            big.as_str(),
            "CLIENT SETNAME x",
            "HELLO 3",
            "KMB.REQ 5 1 GET a",
        ] {
            let mut c = Connection::new(settings(None), 1, None);
            reply(&mut c, "MULTI");
            assert_eq!(reply(&mut c, "SET a 1"), queued());
            assert!(
                matches!(reply(&mut c, bad), Value::Error(_)),
                "{bad} inside MULTI"
            );
            assert_eq!(reply(&mut c, "INCR b"), queued(), "after {bad}");
            assert_eq!(
                reply(&mut c, "EXEC"),
                Value::Error(EXECABORT.into()),
                "{bad}"
            );
            assert_eq!(c.protocol(), Protocol::Resp2);
            assert_eq!(reply(&mut c, "CLIENT GETNAME"), Value::Null);
            assert!(matches!(run(&mut c, "SET a 1"), Step::Kv { .. }));
        }
    }

    /// Goal: the commands that act at once inside MULTI: a nested MULTI and WATCH are refused
    /// without aborting, DISCARD and RESET leave the transaction, QUIT closes; EXEC and
    /// DISCARD outside MULTI are errors; a transaction without key-value commands or
    /// watches is answered by the connection.
    #[test]
    fn transaction_control_commands() {
        let mut c = Connection::new(settings(None), 1, None);
        assert_eq!(reply(&mut c, "EXEC"), Value::err("EXEC without MULTI"));
        assert_eq!(
            reply(&mut c, "DISCARD"),
            Value::err("DISCARD without MULTI")
        );
        reply(&mut c, "MULTI");
        assert_eq!(
            reply(&mut c, "MULTI"),
            Value::err("MULTI calls can not be nested")
        );
        assert_eq!(
            reply(&mut c, "WATCH k"),
            Value::err("WATCH inside MULTI is not allowed")
        );
        assert_eq!(reply(&mut c, "ECHO hi"), queued());
        assert_eq!(reply(&mut c, "EXEC"), Value::Array(vec![Value::text("hi")]));
        reply(&mut c, "MULTI");
        assert_eq!(reply(&mut c, "EXEC"), Value::Array(vec![]));
        reply(&mut c, "MULTI");
        reply(&mut c, "SET a 1");
        assert_eq!(reply(&mut c, "DISCARD"), Value::ok());
        assert!(matches!(run(&mut c, "SET a 1"), Step::Kv { .. }));
        reply(&mut c, "MULTI");
        assert_eq!(reply(&mut c, "RESET"), Value::Simple("RESET".into()));
        assert!(matches!(run(&mut c, "SET a 1"), Step::Kv { .. }));
        reply(&mut c, "MULTI");
        assert!(matches!(run(&mut c, "QUIT"), Step::Close(_)));
    }

    /// Goal: WATCH reads versions through the glue, keeps each key's first version, and
    /// EXEC carries them; UNWATCH, EXEC, DISCARD and RESET forget them.
    #[test]
    fn watch_versions_go_with_exec() {
        let mut c = Connection::new(settings(None), 1, None);
        let k = |s: &str| s.as_bytes().to_vec();
        let watch = |c: &mut Connection, line: &str, versions: Vec<u64>| match run(c, line) {
            Step::Watch(keys) => c.watched(keys, Some(versions)),
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(watch(&mut c, "WATCH a b", vec![3, 4]), Value::ok());
        assert_eq!(watch(&mut c, "WATCH a c", vec![9, 6]), Value::ok());
        reply(&mut c, "MULTI");
        reply(&mut c, "SET a 1");
        let (request, _) = kv_step(&mut c, "EXEC");
        assert_eq!(
            request,
            Request::Multi {
                watches: vec![(k("a"), 3), (k("b"), 4), (k("c"), 6)],
                commands: vec![Request::Set {
                    key: k("a"),
                    value: k("1")
                }]
            }
        );
        // EXEC forgot them.
        reply(&mut c, "MULTI");
        assert_eq!(reply(&mut c, "EXEC"), Value::Array(vec![]));
        // Watches alone still go through the log (EXEC may abort).
        watch(&mut c, "WATCH a", vec![7]);
        reply(&mut c, "MULTI");
        assert_eq!(
            kv_step(&mut c, "EXEC").0,
            Request::Multi {
                watches: vec![(k("a"), 7)],
                commands: vec![]
            }
        );
        for forget in ["UNWATCH", "DISCARD", "RESET"] {
            watch(&mut c, "WATCH a", vec![7]);
            if forget == "DISCARD" {
                reply(&mut c, "MULTI");
            }
            reply(&mut c, forget);
            reply(&mut c, "MULTI");
            assert_eq!(reply(&mut c, "EXEC"), Value::Array(vec![]), "{forget}");
        }
        // No versions (the node is stopping): an error, nothing watched.
        let Step::Watch(keys) = run(&mut c, "WATCH a") else {
            panic!()
        };
        assert_eq!(c.watched(keys, None), Value::Error(STOPPING.into()));
        reply(&mut c, "MULTI");
        assert_eq!(reply(&mut c, "EXEC"), Value::Array(vec![]));
        let long = format!("WATCH {}", "k".repeat(KEY_SIZE_MAX + 1));
        assert!(matches!(reply(&mut c, &long), Value::Error(e) if e.contains("key too large")));
    }

    /// Goal: INFO reports the replica's state by section; in RESP3 it is a verbatim string.
    #[test]
    fn info_sections() {
        let mut c = Connection::new(settings(None), 1, None);
        let text = |v: Value| match v {
            Value::Verbatim(_, t) => String::from_utf8(t).unwrap(),
            other => panic!("{other:?}"),
        };
        let all = text(reply(&mut c, "INFO"));
        for line in [
            "# Server\r\n",
            "redis_version:7.2.0\r\n",
            "uptime_in_days:1\r\n",
            "# Clients\r\nconnected_clients:2\r\n",
            "# Replication\r\nrole:master\r\n",
            "kmb_view:3\r\n",
            "kmb_primary:0\r\n",
            "kmb_commit:11\r\n",
            "kmb_op:12\r\n",
            "# Persistence\r\n",
            "# Keyspace\r\ndb0:keys=5,expires=2,avg_ttl=0\r\n",
        ] {
            assert!(all.contains(line), "{line:?} in {all}");
        }
        let repl = text(reply(&mut c, "INFO replication"));
        assert!(repl.starts_with("# Replication\r\n"), "{repl}");
        assert!(!repl.contains("# Server"));
        let mut backup = Connection::new(settings(None), 1, None);
        let args: Vec<Vec<u8>> = vec![b"INFO".to_vec()];
        let Step::Local(command) = backup.step(parse(&args)) else {
            panic!()
        };
        let Step::Reply(v) = backup.local(command, &ctx(false)) else {
            panic!()
        };
        let info = text(v);
        assert!(info.contains("role:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:6381\r\nmaster_link_status:up\r\n"), "{info}");
        // RESP2 sees a bulk string.
        assert!(Value::Verbatim("txt".into(), b"x".to_vec())
            .encode_with(Protocol::Resp2)
            .starts_with(b"$1\r\n"));
    }

    /// Goal: ROLE, WAIT, TIME, DBSIZE and CONFIG GET answer from the node's state.
    #[test]
    fn node_state_commands() {
        let mut c = Connection::new(settings(None), 1, None);
        match reply(&mut c, "ROLE") {
            Value::Array(items) => {
                assert_eq!(items[0], Value::text("master"));
                assert_eq!(items[1], Value::Integer(11));
                assert!(matches!(&items[2], Value::Array(r) if r.len() == 2));
            }
            other => panic!("{other:?}"),
        }
        // Three replicas: a committed write is on a quorum of two, the primary and one more.
        assert_eq!(reply(&mut c, "WAIT 2 100"), Value::Integer(1));
        assert_eq!(
            reply(&mut c, "TIME"),
            Value::Array(vec![Value::text("1700000000"), Value::text("123456")])
        );
        // TIME never answers before the cluster time the replica has applied.
        let args: Vec<Vec<u8>> = vec![b"TIME".to_vec()];
        let Step::Local(command) = c.step(parse(&args)) else {
            panic!()
        };
        let mut ahead = ctx(true);
        if let Some(s) = ahead.status.as_mut() {
            s.clock = 1_800_000_000_250;
        }
        assert_eq!(
            c.local(command, &ahead),
            Step::Reply(Value::Array(vec![
                Value::text("1800000000"),
                Value::text("250000")
            ]))
        );
        assert_eq!(
            reply(&mut c, "CONFIG GET save"),
            Value::Map(vec![(Value::text("save"), Value::text(""))])
        );
        match reply(&mut c, "CONFIG GET *") {
            Value::Map(pairs) => assert!(pairs.len() > 5),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            reply(&mut c, "CONFIG GET APPEND*"),
            Value::Map(vec![
                (Value::text("appendfsync"), Value::text("always")),
                (Value::text("appendonly"), Value::text("yes")),
            ])
        );
        assert_eq!(reply(&mut c, "CONFIG GET nosuch"), Value::Map(vec![]));
        // Without the node's state (the node is stopping): an error, not a panic.
        let args: Vec<Vec<u8>> = vec![b"ROLE".to_vec()];
        let Step::Local(command) = c.step(parse(&args)) else {
            panic!()
        };
        assert!(matches!(
            c.local(command, &Context::default()),
            Step::Reply(Value::Error(_))
        ));
    }

    /// Goal: a session reply `[op, value]` is shaped inside; anything else passes whole.
    #[test]
    fn shaped_session_replies() {
        let v = || Value::text("hello");
        assert_eq!(shape_reply(&Shape::Exists, false, v()), Value::Integer(1));
        let redirect = Value::Error("REDIRECT 1 127.0.0.1:6382".into());
        assert_eq!(
            shape_reply(
                &Shape::Strlen,
                true,
                Value::Array(vec![Value::Integer(4), v()])
            ),
            Value::Array(vec![Value::Integer(4), Value::Integer(5)])
        );
        assert_eq!(
            shape_reply(&Shape::Strlen, true, redirect.clone()),
            redirect
        );
    }
}
