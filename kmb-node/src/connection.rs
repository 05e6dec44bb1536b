//! One client connection's state and the connection-level commands. Pure: the glue
//! (`node/clients.rs`) reads the node's state, the clock and the socket, and hands them in.
//!
//! A connection has a protocol (RESP2 until `HELLO 3`), a name and library info (`CLIENT
//! SETNAME` / `SETINFO`), whether it has authenticated (`AUTH`, when the node has a password),
//! and whether it is inside a refused `MULTI` (transactions are not supported yet: every command
//! up to `EXEC` / `DISCARD` is refused, never applied, and `EXEC` answers `EXECABORT`).
//!
//! [`Connection::step`] gates each parsed command (authentication, the refused transaction) and
//! says what to do with it: reply at once, send a key-value request through the log, or answer
//! a connection command with [`Connection::local`] given a [`Context`] (the node's state read by
//! the glue).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::commands::{Command, Conn, Shape};
use crate::kv::Request;
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
    /// Inside a refused `MULTI`.
    in_multi: bool,
}

const MULTI_REFUSED: &str = "ERR MULTI is not supported yet (kmb): transactions are refused; \
     the commands up to EXEC or DISCARD are not queued and not applied";
const QUEUED_REFUSED: &str =
    "ERR MULTI is not supported yet (kmb): command refused inside MULTI, not applied";
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
            in_multi: false,
        }
    }

    /// The reply encoding this connection has chosen.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Gate a parsed command and say what to do with it.
    pub fn step(&mut self, parsed: Result<Command, Value>) -> Step {
        if self.in_multi {
            return match parsed {
                Ok(Command::Conn(Conn::Exec)) => {
                    self.in_multi = false;
                    Step::Reply(Value::Error(
                        "EXECABORT Transaction discarded because of previous errors.".into(),
                    ))
                }
                Ok(Command::Conn(Conn::Discard)) => {
                    self.in_multi = false;
                    Step::Reply(Value::ok())
                }
                Ok(Command::Conn(Conn::Multi)) => {
                    Step::Reply(Value::err("MULTI calls can not be nested"))
                }
                Ok(Command::Conn(Conn::Watch)) => {
                    Step::Reply(Value::err("WATCH inside MULTI is not allowed"))
                }
                Ok(Command::Conn(Conn::Reset)) => Step::Local(Conn::Reset),
                Ok(Command::Quit) => Step::Close(Value::ok()),
                Err(e) => Step::Reply(e),
                Ok(_) => Step::Reply(Value::Error(QUEUED_REFUSED.into())),
            };
        }
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
                self.in_multi = true;
                Step::Reply(Value::Error(MULTI_REFUSED.into()))
            }
            Ok(Command::Conn(Conn::Exec)) => Step::Reply(Value::err("EXEC without MULTI")),
            Ok(Command::Conn(Conn::Discard)) => Step::Reply(Value::err("DISCARD without MULTI")),
            Ok(Command::Conn(c)) => Step::Local(c),
        }
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
            Conn::DbSize => match &ctx.status {
                Some(s) => Value::Integer(s.keys as i64),
                None => stopping(),
            },
            Conn::Time => {
                let secs = ctx.unix_micros / 1_000_000;
                let micros = ctx.unix_micros % 1_000_000;
                Value::Array(vec![
                    Value::text(secs.to_string()),
                    Value::text(micros.to_string()),
                ])
            }
            Conn::ConfigGet(patterns) => self.config_get(&patterns),
            Conn::Watch => {
                Value::err("WATCH is not supported yet (kmb): transactions are not supported")
            }
            Conn::Unwatch => Value::ok(),
            // Gated in `step`; answered here only if a caller skips it.
            Conn::Multi => Value::Error(MULTI_REFUSED.into()),
            Conn::Exec => Value::err("EXEC without MULTI"),
            Conn::Discard => Value::err("DISCARD without MULTI"),
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
            if self.in_multi { 0 } else { -1 },
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
                    lines.push(format!("db0:keys={},expires=0,avg_ttl=0", s.keys));
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

/// Shape a key-value reply for the command that asked (`EXISTS`, `STRLEN`, `TYPE`, `SET NX`
/// read or write through an existing request and reply differently). Errors (redirects,
/// timeouts) pass unchanged; a session reply `[op, value]` is shaped inside.
pub fn shape_reply(shape: Shape, session: bool, value: Value) -> Value {
    if session {
        if let Value::Array(mut items) = value {
            if items.len() == 2 {
                let inner = items.pop().unwrap_or(Value::Null);
                items.push(shape_reply(shape, false, inner));
            }
            return Value::Array(items);
        }
        return value;
    }
    match (shape, value) {
        (Shape::Plain, v) => v,
        (Shape::Exists, Value::Bulk(_)) => Value::Integer(1),
        (Shape::Exists, Value::Null) => Value::Integer(0),
        (Shape::Strlen, Value::Bulk(b)) => Value::Integer(b.len() as i64),
        (Shape::Strlen, Value::Null) => Value::Integer(0),
        (Shape::Type, Value::Bulk(_)) => Value::Simple("string".into()),
        (Shape::Type, Value::Null) => Value::Simple("none".into()),
        (Shape::SetNx, Value::Integer(1)) => Value::ok(),
        (Shape::SetNx, Value::Integer(0)) => Value::Null,
        (_, v) => v,
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

    /// Goal: a refused MULTI never lets a queued command through; EXEC aborts it; the
    /// connection works normally afterwards.
    #[test]
    fn refused_transaction_applies_nothing() {
        let mut c = Connection::new(settings(None), 1, None);
        assert_eq!(reply(&mut c, "EXEC"), Value::err("EXEC without MULTI"));
        assert_eq!(
            reply(&mut c, "DISCARD"),
            Value::err("DISCARD without MULTI")
        );
        assert!(
            matches!(reply(&mut c, "MULTI"), Value::Error(e) if e.contains("MULTI is not supported yet"))
        );
        for line in [
            "SET a 1",
            "INCRBY b 5",
            "GET a",
            "CLIENT SETNAME x",
            "PING",
            "NOPE x",
        ] {
            assert!(
                matches!(run(&mut c, line), Step::Reply(Value::Error(_))),
                "{line} inside MULTI"
            );
        }
        assert_eq!(
            reply(&mut c, "MULTI"),
            Value::err("MULTI calls can not be nested")
        );
        assert_eq!(
            reply(&mut c, "EXEC"),
            Value::Error("EXECABORT Transaction discarded because of previous errors.".into())
        );
        assert_eq!(reply(&mut c, "CLIENT GETNAME"), Value::Null);
        assert!(matches!(run(&mut c, "SET a 1"), Step::Kv { .. }));
        reply(&mut c, "MULTI");
        assert_eq!(reply(&mut c, "DISCARD"), Value::ok());
        assert!(matches!(run(&mut c, "SET a 1"), Step::Kv { .. }));
        reply(&mut c, "MULTI");
        assert_eq!(reply(&mut c, "RESET"), Value::Simple("RESET".into()));
        assert!(matches!(run(&mut c, "SET a 1"), Step::Kv { .. }));
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
            "# Keyspace\r\ndb0:keys=5,expires=0,avg_ttl=0\r\n",
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
        assert_eq!(reply(&mut c, "DBSIZE"), Value::Integer(5));
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

    /// Goal: shaped replies follow Redis; errors and session replies pass through shaped inside.
    #[test]
    fn shaped_replies() {
        let v = || Value::text("hello");
        assert_eq!(shape_reply(Shape::Exists, false, v()), Value::Integer(1));
        assert_eq!(
            shape_reply(Shape::Exists, false, Value::Null),
            Value::Integer(0)
        );
        assert_eq!(shape_reply(Shape::Strlen, false, v()), Value::Integer(5));
        assert_eq!(
            shape_reply(Shape::Strlen, false, Value::Null),
            Value::Integer(0)
        );
        assert_eq!(
            shape_reply(Shape::Type, false, v()),
            Value::Simple("string".into())
        );
        assert_eq!(
            shape_reply(Shape::Type, false, Value::Null),
            Value::Simple("none".into())
        );
        assert_eq!(
            shape_reply(Shape::SetNx, false, Value::Integer(1)),
            Value::ok()
        );
        assert_eq!(
            shape_reply(Shape::SetNx, false, Value::Integer(0)),
            Value::Null
        );
        let redirect = Value::Error("REDIRECT 1 127.0.0.1:6382".into());
        assert_eq!(
            shape_reply(Shape::Exists, false, redirect.clone()),
            redirect
        );
        assert_eq!(
            shape_reply(
                Shape::Strlen,
                true,
                Value::Array(vec![Value::Integer(4), v()])
            ),
            Value::Array(vec![Value::Integer(4), Value::Integer(5)])
        );
        assert_eq!(shape_reply(Shape::Strlen, true, redirect.clone()), redirect);
    }
}
