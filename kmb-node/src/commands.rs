//! The client command set: RESP arguments → commands, and state-machine replies → RESP.
//!
//! Key-value commands (each goes through the replicated log, reads included, so each reply is
//! linearizable and has an op number):
//!
//! | command | request | reply |
//! |---|---|---|
//! | `SET key value` | SET | `+OK` |
//! | `SET key value [NX\|XX] [GET] [EX s\|PX ms\|EXAT s\|PXAT ms\|KEEPTTL]` | SET with options | `+OK`, or null if NX/XX refused; with GET the old value |
//! | `SETNX key value` | CAS if absent | `:1` / `:0` |
//! | `SETEX key s value`, `PSETEX key ms value` | SET with options | `+OK` |
//! | `GETSET key value` | SET with GET | the old value |
//! | `GET key`, `GETDEL key` | GET, GETDEL | bulk value, or null if absent |
//! | `GETEX key [EX\|PX\|EXAT\|PXAT t \| PERSIST]` | GET, or a transaction of GET and the expiry change | the value ([`Shape::First`]) |
//! | `GETRANGE key start end`, `SUBSTR` | GET | the bytes in Redis's inclusive range ([`Shape::Range`]) |
//! | `EXISTS key`, `STRLEN key`, `TYPE key` | GET | `:1`/`:0`; the length; `+string`/`+none` ([`Shape`]) |
//! | `EXISTS key key…`, `TOUCH key…` | EXISTS | how many exist |
//! | `DEL key`, `UNLINK key` | DEL | `:1` if the key existed, else `:0` |
//! | `DEL key key…`, `UNLINK key key…` | DEL of several keys | how many existed |
//! | `MGET key…`, `MSET k v…`, `MSETNX k v…` | MGET, MSET | values; `+OK`; `:1`/`:0` |
//! | `APPEND key value` | APPEND | the new length |
//! | `INCR key` / `INCRBY key delta` / `DECR` / `DECRBY` | INCRBY | the new value; `-ERR value is not an integer or out of range` if the stored value is not a canonical i64 |
//! | `INCRBYFLOAT key delta` | INCRBYFLOAT | the new value as a bulk string |
//! | `EXPIRE`/`PEXPIRE`/`EXPIREAT`/`PEXPIREAT key t [NX\|XX\|GT\|LT]`, `PERSIST key` | EXPIRE, PERSIST | `:1` / `:0` |
//! | `TTL`/`PTTL`/`EXPIRETIME`/`PEXPIRETIME key` | TTL | `-2` absent, `-1` no expiry |
//! | `DBSIZE`, `FLUSHDB`/`FLUSHALL [ASYNC\|SYNC]`, `KEYS pattern` | DBSIZE, FLUSH, KEYS | |
//! | `SCAN cursor [MATCH p] [COUNT n] [TYPE t]` | SCAN by cursor | `[cursor, keys]`, the cursor a bulk string ([`Shape::Cursor`]) |
//! | `CAS key IFEQ expected new` | CAS | `:1` if the key held `expected` and now holds `new`, else `:0` |
//! | `CAS key IFABSENT new` | CAS | `:1` if the key was absent and now holds `new`, else `:0` |
//! | `RANGE start end [LIMIT n]` | SCAN | flat array `key, value, …` of keys in `[start, end)`, in order, at most `n` (default and cap 1000) |
//! | `KMB.TX count argc arg… argc arg…` | a transaction (no watches) | the array of the `count` commands' replies, each shaped as its command |
//! | `KMB.REQ client-id request-number command args…` | any of the above | `[op-number, reply]` — the session extension (see `client`) |
//! | `KMB.REQ client-id request-number REGISTER` | REGISTER | `[op-number, +OK]`: opens (or reopens after an eviction) the session, whose later requests number above `op-number`; its other requests are refused with `session evicted` until it does |
//!
//! Connection commands ([`Conn`], answered by [`crate::connection::Connection`] from the
//! connection's state and the replica's, without the log): `HELLO [2|3] [AUTH u p] [SETNAME n]`
//! (RESP3 replies per connection), `AUTH`, `CLIENT ID|SETNAME|GETNAME|INFO|LIST|SETINFO`,
//! `RESET`, `INFO [section…]`, `ROLE`, `WAIT`, `TIME`, `CONFIG GET pattern…`,
//! `MULTI`/`EXEC`/`DISCARD`/`WATCH`/`UNWATCH` (a transaction is one request through the log).
//! Answered here directly: `PING`, `ECHO`, `QUIT`, `SELECT 0`, `COMMAND
//! [COUNT|INFO|DOCS|LIST]`, `CLIENT NO-EVICT|NO-TOUCH`, `READONLY`, `READWRITE`.
//!
//! Every other command answers Redis's `-ERR unknown command '<name>', with args beginning
//! with: '<arg>' …`. `docs/redis-compat.md` lists every command Redis clients use and what kmb
//! does with it.

use crate::kv::{
    self, ExpireCondition, ExpireWhen, Request, SetCondition, SetExpiry, TtlKind, KEYS_MAX,
    SCAN_LIMIT_MAX,
};
use crate::resp::{Protocol, Value};

/// A parsed client command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// A state-machine command, with the session (client id, request number) if given, and how
    /// the connection shapes its reply.
    Kv {
        session: Option<(u128, u64)>,
        request: Request,
        shape: Shape,
    },
    /// Answered by the connection itself, whatever its state.
    Local(Value),
    /// Answer, then close the connection.
    Quit,
    /// A connection command: answered from the connection's state and the node's
    /// ([`crate::connection::Connection::local`]).
    Conn(Conn),
}

/// How a key-value reply is turned into the command's reply (several commands read or write
/// through one request and answer differently). Errors (redirects, timeouts, a command's own
/// error) pass unchanged whatever the shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// As [`reply_value`] gives it.
    Plain,
    /// `EXISTS`: a GET's value → `:1`, null → `:0`.
    Exists,
    /// `STRLEN`: a GET's value → its length, null → `:0`.
    Strlen,
    /// `TYPE`: a GET's value → `+string`, null → `+none`.
    Type,
    /// `SCAN`: `[cursor, keys]` with the cursor (an unsigned 64-bit number the state machine
    /// carries in an integer's bits) as a decimal bulk string, as Redis sends it.
    Cursor,
    /// `GETEX` with an option (a transaction of a GET and the expiry change): the GET's reply.
    First,
    /// `GETRANGE key start end`: the bytes of a GET's value in Redis's inclusive range
    /// (negative positions count from the end).
    Range(i64, i64),
    /// An array of several commands' replies (a transaction, a pipelined batch): each part
    /// shapes its own elements, in order.
    Each(Vec<Part>),
}

/// One command's place in an array of replies ([`Shape::Each`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// One element, shaped.
    One(Shape),
    /// `len` elements gathered into an array, then shaped: a command that is itself several
    /// plain commands (`GETEX` with an option) queued in a transaction.
    Group { len: usize, shape: Shape },
    /// A reply the connection answered itself (`PING` queued in `MULTI`): inserted here, it
    /// takes no element.
    Local(Value),
}

impl Shape {
    /// Shape a key-value reply (as [`reply_value`] gives it) for the command that asked.
    pub fn apply(&self, value: Value) -> Value {
        if matches!(value, Value::Error(_)) {
            return value;
        }
        match (self, value) {
            (Shape::Plain, v) => v,
            (Shape::Exists, Value::Bulk(_)) => Value::Integer(1),
            (Shape::Exists, Value::Null) => Value::Integer(0),
            (Shape::Strlen, Value::Bulk(b)) => Value::Integer(b.len() as i64),
            (Shape::Strlen, Value::Null) => Value::Integer(0),
            (Shape::Type, Value::Bulk(_)) => Value::Simple("string".into()),
            (Shape::Type, Value::Null) => Value::Simple("none".into()),
            (Shape::Cursor, Value::Array(mut items)) => {
                if let Some(&Value::Integer(cursor)) = items.first() {
                    items[0] = Value::text((cursor as u64).to_string());
                }
                Value::Array(items)
            }
            (Shape::First, Value::Array(items)) => items.into_iter().next().unwrap_or(Value::Null),
            (&Shape::Range(start, end), Value::Bulk(b)) => Value::Bulk(range(&b, start, end)),
            (Shape::Range(..), Value::Null) => Value::Bulk(Vec::new()),
            (Shape::Each(parts), Value::Array(items)) => {
                let mut items = items.into_iter();
                let mut out = Vec::with_capacity(parts.len());
                for part in parts {
                    match part {
                        Part::One(shape) => {
                            out.push(shape.apply(items.next().unwrap_or(Value::Null)))
                        }
                        Part::Group { len, shape } => {
                            let group = items.by_ref().take(*len).collect();
                            out.push(shape.apply(Value::Array(group)));
                        }
                        Part::Local(v) => out.push(v.clone()),
                    }
                }
                Value::Array(out)
            }
            (_, v) => v,
        }
    }

    /// How many elements of a reply array this shape's command takes: 1, or for a
    /// [`Shape::Each`] of a transaction spliced into another, its parts' elements.
    fn elements(parts: &[Part]) -> usize {
        parts
            .iter()
            .map(|p| match p {
                Part::One(_) => 1,
                Part::Group { len, .. } => *len,
                Part::Local(_) => 0,
            })
            .sum()
    }
}

/// `GETRANGE`'s slice of `b`: positions `start..=end`, negative ones from the end, clamped.
fn range(b: &[u8], start: i64, end: i64) -> Vec<u8> {
    let len = b.len() as i64;
    if len == 0 || (start < 0 && end < 0 && start > end) {
        return Vec::new();
    }
    let start = if start < 0 { len + start } else { start }.max(0);
    let end = if end < 0 { len + end } else { end }.max(0).min(len - 1);
    if start > end {
        return Vec::new();
    }
    b[start as usize..=end as usize].to_vec()
}

/// Key-value commands gathered into one transaction (`MULTI … EXEC`, `KMB.TX`), and how its
/// reply array is shaped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transaction {
    pub commands: Vec<Request>,
    pub parts: Vec<Part>,
    /// Encoded bytes of `commands`.
    pub bytes: usize,
}

impl Transaction {
    /// Add one parsed key-value command. A command that is a transaction of its own (`GETEX`
    /// with an option) is spliced in: transactions do not nest. Refused (nothing added) if the
    /// transaction would hold more than [`KEYS_MAX`] commands or `body_max` encoded bytes.
    pub fn push(&mut self, request: Request, shape: Shape, body_max: usize) -> Result<(), Value> {
        let (commands, part) = match request {
            Request::Multi { watches, commands } if watches.is_empty() => {
                let part = Part::Group {
                    len: commands.len(),
                    shape,
                };
                (commands, part)
            }
            request => (vec![request], Part::One(shape)),
        };
        let bytes: usize = commands.iter().map(|c| c.encode().len()).sum();
        if self.commands.len() + commands.len() > KEYS_MAX
            || self.bytes.saturating_add(bytes) > body_max
        {
            return Err(Value::err(format!(
                "transaction too large (at most {KEYS_MAX} commands and {body_max} encoded bytes)"
            )));
        }
        self.bytes += bytes;
        self.commands.extend(commands);
        self.parts.push(part);
        Ok(())
    }

    /// Add a reply the connection answered itself (`PING` inside `MULTI`).
    pub fn push_local(&mut self, value: Value) {
        self.parts.push(Part::Local(value));
    }

    /// The request that runs the transaction in one log entry, and its reply's shape.
    pub fn into_request(self, watches: Vec<(Vec<u8>, u64)>) -> (Request, Shape) {
        debug_assert_eq!(Shape::elements(&self.parts), self.commands.len());
        (
            Request::Multi {
                watches,
                commands: self.commands,
            },
            Shape::Each(self.parts),
        )
    }

    /// The reply of a transaction with no key-value command: its local replies.
    pub fn local_replies(&self) -> Value {
        Value::Array(
            self.parts
                .iter()
                .filter_map(|p| match p {
                    Part::Local(v) => Some(v.clone()),
                    _ => None,
                })
                .collect(),
        )
    }
}

/// A connection command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conn {
    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
    Hello {
        protocol: Option<Protocol>,
        auth: Option<(Vec<u8>, Vec<u8>)>,
        setname: Option<Vec<u8>>,
    },
    /// `AUTH [user] password`.
    Auth {
        user: Option<Vec<u8>>,
        password: Vec<u8>,
    },
    Reset,
    ClientId,
    ClientSetName(Vec<u8>),
    ClientGetName,
    ClientInfo,
    ClientList,
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value`; `attribute` is lower case.
    ClientSetInfo {
        attribute: &'static str,
        value: Vec<u8>,
    },
    /// `INFO [section …]`, sections in lower case.
    Info(Vec<String>),
    Role,
    /// `WAIT numreplicas timeout`: arguments checked, answered at once.
    Wait,
    Time,
    /// `CONFIG GET pattern …`.
    ConfigGet(Vec<Vec<u8>>),
    Multi,
    Exec,
    Discard,
    /// `WATCH key …`.
    Watch(Vec<Vec<u8>>),
    Unwatch,
}

impl Conn {
    /// Whether the answer reads the replica's state (the glue asks the driver first).
    pub fn needs_status(&self) -> bool {
        matches!(
            self,
            Conn::Hello { .. } | Conn::Info(_) | Conn::Role | Conn::Wait | Conn::Time
        )
    }

    /// The command's name, as an error names it.
    pub fn name(&self) -> &'static str {
        match self {
            Conn::Hello { .. } => "HELLO",
            Conn::Auth { .. } => "AUTH",
            Conn::Reset => "RESET",
            Conn::ClientId
            | Conn::ClientSetName(_)
            | Conn::ClientGetName
            | Conn::ClientInfo
            | Conn::ClientList
            | Conn::ClientSetInfo { .. } => "CLIENT",
            Conn::Info(_) => "INFO",
            Conn::Role => "ROLE",
            Conn::Wait => "WAIT",
            Conn::Time => "TIME",
            Conn::ConfigGet(_) => "CONFIG",
            Conn::Multi => "MULTI",
            Conn::Exec => "EXEC",
            Conn::Discard => "DISCARD",
            Conn::Watch(_) => "WATCH",
            Conn::Unwatch => "UNWATCH",
        }
    }
}

fn arity_error(name: &str) -> Value {
    Value::err(format!(
        "wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    ))
}

fn parse_i64(arg: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(arg).ok()?;
    let n: i64 = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

fn parse_u64(arg: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(arg).ok()?;
    let n: u64 = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

fn not_integer() -> Value {
    Value::err("value is not an integer or out of range")
}

fn syntax_error() -> Value {
    Value::err("syntax error")
}

fn invalid_expire_time(command: &str) -> Value {
    Value::err(format!("invalid expire time in '{command}' command"))
}

fn unknown_subcommand(command: &str, sub: &[u8]) -> Value {
    Value::err(format!(
        "unknown subcommand '{}'. Try {command} HELP.",
        truncate(&String::from_utf8_lossy(sub), 128)
    ))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Redis's reply to an unknown command: the name and the first arguments (up to 128
/// characters), each quoted and followed by a space.
fn unknown_command(args: &[Vec<u8>]) -> Value {
    let mut preview = String::new();
    for arg in &args[1..] {
        if preview.len() >= 128 {
            break;
        }
        let room = 128 - preview.len();
        preview.push_str(&format!(
            "'{}' ",
            truncate(&String::from_utf8_lossy(arg), room)
        ));
    }
    Value::err(format!(
        "unknown command '{}', with args beginning with: {preview}",
        truncate(&String::from_utf8_lossy(&args[0]), 128)
    ))
}

/// Help lines for `<command> HELP`.
fn help(lines: &[&str]) -> Value {
    Value::Array(lines.iter().map(|l| Value::Simple((*l).into())).collect())
}

/// One supported command as `COMMAND INFO` describes it: name, arity (negative: at least),
/// flags, first key, last key, key step.
type CommandSpec = (&'static str, i64, &'static [&'static str], i64, i64, i64);

/// Every command kmb answers (`COMMAND`, `COMMAND COUNT`, `COMMAND INFO`).
const COMMANDS: &[CommandSpec] = &[
    ("get", 2, &["readonly", "fast"], 1, 1, 1),
    ("set", -3, &["write", "denyoom"], 1, 1, 1),
    ("setnx", 3, &["write", "denyoom", "fast"], 1, 1, 1),
    ("setex", 4, &["write", "denyoom"], 1, 1, 1),
    ("psetex", 4, &["write", "denyoom"], 1, 1, 1),
    ("getset", 3, &["write", "denyoom", "fast"], 1, 1, 1),
    ("getdel", 2, &["write", "fast"], 1, 1, 1),
    ("getex", -2, &["write", "fast"], 1, 1, 1),
    ("getrange", 4, &["readonly"], 1, 1, 1),
    ("substr", 4, &["readonly"], 1, 1, 1),
    ("mget", -2, &["readonly", "fast"], 1, -1, 1),
    ("mset", -3, &["write", "denyoom"], 1, -1, 2),
    ("msetnx", -3, &["write", "denyoom"], 1, -1, 2),
    ("append", 3, &["write", "denyoom", "fast"], 1, 1, 1),
    ("del", -2, &["write"], 1, -1, 1),
    ("unlink", -2, &["write", "fast"], 1, -1, 1),
    ("exists", -2, &["readonly", "fast"], 1, -1, 1),
    ("touch", -2, &["readonly", "fast"], 1, -1, 1),
    ("strlen", 2, &["readonly", "fast"], 1, 1, 1),
    ("type", 2, &["readonly", "fast"], 1, 1, 1),
    ("incr", 2, &["write", "denyoom", "fast"], 1, 1, 1),
    ("decr", 2, &["write", "denyoom", "fast"], 1, 1, 1),
    ("incrby", 3, &["write", "denyoom", "fast"], 1, 1, 1),
    ("decrby", 3, &["write", "denyoom", "fast"], 1, 1, 1),
    ("incrbyfloat", 3, &["write", "denyoom", "fast"], 1, 1, 1),
    ("expire", -3, &["write", "fast"], 1, 1, 1),
    ("pexpire", -3, &["write", "fast"], 1, 1, 1),
    ("expireat", -3, &["write", "fast"], 1, 1, 1),
    ("pexpireat", -3, &["write", "fast"], 1, 1, 1),
    ("expiretime", 2, &["readonly", "fast"], 1, 1, 1),
    ("pexpiretime", 2, &["readonly", "fast"], 1, 1, 1),
    ("ttl", 2, &["readonly", "fast"], 1, 1, 1),
    ("pttl", 2, &["readonly", "fast"], 1, 1, 1),
    ("persist", 2, &["write", "fast"], 1, 1, 1),
    ("dbsize", 1, &["readonly", "fast"], 0, 0, 0),
    ("keys", 2, &["readonly"], 0, 0, 0),
    ("scan", -2, &["readonly"], 0, 0, 0),
    ("flushdb", -1, &["write"], 0, 0, 0),
    ("flushall", -1, &["write"], 0, 0, 0),
    ("cas", -4, &["write", "denyoom"], 1, 1, 1),
    ("range", -3, &["readonly"], 0, 0, 0),
    ("kmb.tx", -2, &["write"], 0, 0, 0),
    ("kmb.req", -4, &["write"], 0, 0, 0),
    ("ping", -1, &["fast", "stale"], 0, 0, 0),
    ("echo", 2, &["fast", "stale"], 0, 0, 0),
    ("quit", -1, &["fast", "stale", "no-auth"], 0, 0, 0),
    ("reset", 1, &["fast", "stale", "no-auth"], 0, 0, 0),
    ("hello", -1, &["fast", "stale", "no-auth"], 0, 0, 0),
    ("auth", -2, &["fast", "stale", "no-auth"], 0, 0, 0),
    ("select", 2, &["fast", "stale"], 0, 0, 0),
    ("client", -2, &["stale"], 0, 0, 0),
    ("command", -1, &["stale"], 0, 0, 0),
    ("config", -2, &["admin", "stale"], 0, 0, 0),
    ("info", -1, &["stale"], 0, 0, 0),
    ("role", 1, &["fast", "stale"], 0, 0, 0),
    ("wait", 3, &["fast"], 0, 0, 0),
    ("time", 1, &["fast", "stale"], 0, 0, 0),
    ("multi", 1, &["fast"], 0, 0, 0),
    ("exec", 1, &["fast"], 0, 0, 0),
    ("discard", 1, &["fast"], 0, 0, 0),
    ("watch", -2, &["fast"], 1, -1, 1),
    ("unwatch", 1, &["fast"], 0, 0, 0),
    ("readonly", 1, &["fast"], 0, 0, 0),
    ("readwrite", 1, &["fast"], 0, 0, 0),
];

fn command_info(spec: &CommandSpec) -> Value {
    let (name, arity, flags, first, last, step) = *spec;
    Value::Array(vec![
        Value::text(name),
        Value::Integer(arity),
        Value::Set(flags.iter().map(|f| Value::Simple((*f).into())).collect()),
        Value::Integer(first),
        Value::Integer(last),
        Value::Integer(step),
        Value::Set(Vec::new()),
        Value::Set(Vec::new()),
        Value::Array(Vec::new()),
        Value::Array(Vec::new()),
    ])
}

fn find_command(name: &[u8]) -> Option<&'static CommandSpec> {
    COMMANDS
        .iter()
        .find(|c| c.0.as_bytes().eq_ignore_ascii_case(name))
}

/// `COMMAND [COUNT | INFO name… | DOCS name… | LIST]`.
fn command_command(rest: &[Vec<u8>]) -> Result<Command, Value> {
    let Some(sub) = rest.first() else {
        return Ok(Command::Local(Value::Array(
            COMMANDS.iter().map(command_info).collect(),
        )));
    };
    let sub_name = String::from_utf8_lossy(sub).to_ascii_uppercase();
    let local = |v| Ok(Command::Local(v));
    match (sub_name.as_str(), rest.len()) {
        ("COUNT", 1) => local(Value::Integer(COMMANDS.len() as i64)),
        ("INFO", 1) => local(Value::Array(COMMANDS.iter().map(command_info).collect())),
        ("INFO", _) => local(Value::Array(
            rest[1..]
                .iter()
                .map(|n| find_command(n).map_or(Value::Null, command_info))
                .collect(),
        )),
        // Documentation is not served: an empty map, as for commands without docs.
        ("DOCS", _) => local(Value::Map(Vec::new())),
        ("LIST", _) => local(Value::Array(
            COMMANDS.iter().map(|c| Value::text(c.0)).collect(),
        )),
        ("HELP", 1) => local(help(&[
            "COMMAND <subcommand> [<arg> ...]. Subcommands are:",
            "(no subcommand)",
            "    Return details about all commands.",
            "COUNT",
            "    Return the total number of commands.",
            "INFO [<command-name> ...]",
            "    Return details about the given commands, or all of them.",
            "DOCS [<command-name> ...]",
            "    An empty map: kmb serves no command documentation.",
            "LIST",
            "    Return the names of all commands.",
        ])),
        ("COUNT" | "HELP", _) => Err(arity_error(&format!("command|{sub_name}"))),
        ("GETKEYS" | "GETKEYSANDFLAGS", _) => Err(Value::err(format!(
            "COMMAND {sub_name} is not supported by kmb"
        ))),
        _ => Err(unknown_subcommand("COMMAND", sub)),
    }
}

/// `CLIENT <subcommand> …`.
fn client_command(rest: &[Vec<u8>]) -> Result<Command, Value> {
    let Some(sub) = rest.first() else {
        return Err(arity_error("client"));
    };
    let sub_name = String::from_utf8_lossy(sub).to_ascii_uppercase();
    let conn = |c| Ok(Command::Conn(c));
    let arity = |n: usize| {
        if rest.len() == n {
            Ok(())
        } else {
            Err(arity_error(&format!("client|{sub_name}")))
        }
    };
    match sub_name.as_str() {
        "ID" => arity(1).and_then(|_| conn(Conn::ClientId)),
        "GETNAME" => arity(1).and_then(|_| conn(Conn::ClientGetName)),
        "INFO" => arity(1).and_then(|_| conn(Conn::ClientInfo)),
        "LIST" => conn(Conn::ClientList),
        "SETNAME" => {
            arity(2)?;
            conn(Conn::ClientSetName(rest[1].clone()))
        }
        "SETINFO" => {
            arity(3)?;
            let attribute = if rest[1].eq_ignore_ascii_case(b"LIB-NAME") {
                "lib-name"
            } else if rest[1].eq_ignore_ascii_case(b"LIB-VER") {
                "lib-ver"
            } else {
                return Err(Value::err(format!(
                    "Unrecognized option '{}'",
                    truncate(&String::from_utf8_lossy(&rest[1]), 128)
                )));
            };
            conn(Conn::ClientSetInfo {
                attribute,
                value: rest[2].clone(),
            })
        }
        // Hints about eviction and access times: nothing to change here.
        "NO-EVICT" | "NO-TOUCH" => {
            arity(2)?;
            if rest[1].eq_ignore_ascii_case(b"ON") || rest[1].eq_ignore_ascii_case(b"OFF") {
                Ok(Command::Local(Value::ok()))
            } else {
                Err(syntax_error())
            }
        }
        "HELP" => Ok(Command::Local(help(&[
            "CLIENT <subcommand> [<arg> ...]. Subcommands are:",
            "ID",
            "    Return the ID of the current connection.",
            "GETNAME",
            "    Return the name of the current connection.",
            "SETNAME <connection-name>",
            "    Assign the name <connection-name> to the current connection.",
            "SETINFO <LIB-NAME|LIB-VER> <value>",
            "    Set client library name or version.",
            "INFO",
            "    Return information about the current connection.",
            "LIST",
            "    Like INFO: kmb lists the current connection only.",
        ]))),
        _ => Err(unknown_subcommand("CLIENT", sub)),
    }
}

/// `CONFIG GET pattern…` (other subcommands: settings are `kmb-node start` flags).
fn config_command(rest: &[Vec<u8>]) -> Result<Command, Value> {
    let Some(sub) = rest.first() else {
        return Err(arity_error("config"));
    };
    let sub_name = String::from_utf8_lossy(sub).to_ascii_uppercase();
    match sub_name.as_str() {
        "GET" if rest.len() >= 2 => Ok(Command::Conn(Conn::ConfigGet(rest[1..].to_vec()))),
        "GET" => Err(arity_error("config|get")),
        "SET" | "REWRITE" | "RESETSTAT" => Err(Value::err(format!(
            "CONFIG {sub_name} is not supported by kmb: settings are `kmb-node start` flags"
        ))),
        "HELP" => Ok(Command::Local(help(&[
            "CONFIG <subcommand> [<arg> ...]. Subcommands are:",
            "GET <pattern>",
            "    Return parameters matching the glob-like <pattern> and their values.",
        ]))),
        _ => Err(unknown_subcommand("CONFIG", sub)),
    }
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
fn hello_command(rest: &[Vec<u8>]) -> Result<Command, Value> {
    let protocol = match rest.first() {
        None => None,
        Some(v) => match parse_i64(v) {
            None => {
                return Err(Value::err(
                    "Protocol version is not an integer or out of range",
                ))
            }
            Some(2) => Some(Protocol::Resp2),
            Some(3) => Some(Protocol::Resp3),
            Some(_) => return Err(Value::Error("NOPROTO unsupported protocol version".into())),
        },
    };
    let mut auth = None;
    let mut setname = None;
    let mut i = 1;
    while i < rest.len() {
        let option = &rest[i];
        let left = rest.len() - i - 1;
        if option.eq_ignore_ascii_case(b"AUTH") && left >= 2 {
            auth = Some((rest[i + 1].clone(), rest[i + 2].clone()));
            i += 3;
        } else if option.eq_ignore_ascii_case(b"SETNAME") && left >= 1 {
            setname = Some(rest[i + 1].clone());
            i += 2;
        } else {
            return Err(Value::err(format!(
                "Syntax error in HELLO option '{}'",
                truncate(&String::from_utf8_lossy(option), 128)
            )));
        }
    }
    Ok(Command::Conn(Conn::Hello {
        protocol,
        auth,
        setname,
    }))
}

/// An expiry argument in milliseconds, checked as Redis checks `SET`'s and `SETEX`'s: an
/// integer (else `not an integer`), positive and not overflowing once in milliseconds (else
/// `invalid expire time in '<command>' command`).
fn expire_millis(arg: &[u8], seconds: bool, command: &str) -> Result<u64, Value> {
    let n = parse_i64(arg).ok_or_else(not_integer)?;
    let ms = if seconds {
        n.checked_mul(1000)
    } else {
        Some(n)
    };
    match ms {
        Some(ms) if n > 0 => Ok(ms as u64),
        _ => Err(invalid_expire_time(command)),
    }
}

/// The expiry options `SET` and `GETEX` share (`EX s | PX ms | EXAT s | PXAT ms`), with its
/// argument; `None` if `option` is not one of them.
fn expiry_option(option: &str) -> Option<(bool, bool)> {
    // (in seconds, absolute)
    match option {
        "EX" => Some((true, false)),
        "PX" => Some((false, false)),
        "EXAT" => Some((true, true)),
        "PXAT" => Some((false, true)),
        _ => None,
    }
}

/// `SET key value [NX | XX] [GET] [EX s | PX ms | EXAT s | PXAT ms | KEEPTTL]`, parsed as
/// Redis parses it: options in any order, a repeated option allowed, conflicting ones a syntax
/// error; the expiry is checked after every option is read. Without options a plain SET.
fn set_command(rest: &[Vec<u8>]) -> Result<Command, Value> {
    if rest.len() < 2 {
        return Err(arity_error("set"));
    }
    let mut condition = SetCondition::Always;
    let mut get = false;
    let mut keepttl = false;
    // (unit in seconds, absolute, argument)
    let mut expiry: Option<(bool, bool, &[u8])> = None;
    let mut i = 2;
    while i < rest.len() {
        let option = String::from_utf8_lossy(&rest[i]).to_ascii_uppercase();
        let next = rest.get(i + 1);
        match option.as_str() {
            "NX" if condition != SetCondition::IfPresent => condition = SetCondition::IfAbsent,
            "XX" if condition != SetCondition::IfAbsent => condition = SetCondition::IfPresent,
            "GET" => get = true,
            "KEEPTTL" if expiry.is_none() => keepttl = true,
            o => match (expiry_option(o), next) {
                (Some((seconds, absolute)), Some(arg))
                    if !keepttl && expiry.is_none_or(|(s, a, _)| (s, a) == (seconds, absolute)) =>
                {
                    expiry = Some((seconds, absolute, arg));
                    i += 1;
                }
                _ => return Err(syntax_error()),
            },
        }
        i += 1;
    }
    let key = rest[0].clone();
    let value = rest[1].clone();
    let expiry = match expiry {
        Some((seconds, absolute, arg)) => {
            let ms = expire_millis(arg, seconds, "set")?;
            if absolute {
                SetExpiry::At(ms)
            } else {
                SetExpiry::In(ms)
            }
        }
        None if keepttl => SetExpiry::Keep,
        None => SetExpiry::Clear,
    };
    let request = if condition == SetCondition::Always && !get && expiry == SetExpiry::Clear {
        Request::Set { key, value }
    } else {
        Request::SetWith {
            key,
            value,
            condition,
            expiry,
            get,
        }
    };
    Ok(Command::Kv {
        session: None,
        request,
        shape: Shape::Plain,
    })
}

/// `GETEX key [EX s | PX ms | EXAT s | PXAT ms | PERSIST]`: a GET, or with an option a
/// transaction of a GET and the expiry change, answering the GET's value.
fn getex_command(rest: &[Vec<u8>]) -> Result<Command, Value> {
    let Some(key) = rest.first() else {
        return Err(arity_error("getex"));
    };
    let mut persist = false;
    let mut expiry: Option<(bool, bool, &[u8])> = None;
    let mut i = 1;
    while i < rest.len() {
        let option = String::from_utf8_lossy(&rest[i]).to_ascii_uppercase();
        match (option.as_str(), expiry_option(&option), rest.get(i + 1)) {
            ("PERSIST", _, _) if expiry.is_none() => persist = true,
            (_, Some((seconds, absolute)), Some(arg))
                if !persist && expiry.is_none_or(|(s, a, _)| (s, a) == (seconds, absolute)) =>
            {
                expiry = Some((seconds, absolute, arg));
                i += 1;
            }
            _ => return Err(syntax_error()),
        }
        i += 1;
    }
    let get = Request::Get { key: key.clone() };
    let change = match expiry {
        Some((seconds, absolute, arg)) => {
            let ms = expire_millis(arg, seconds, "getex")? as i64;
            Request::Expire {
                key: key.clone(),
                when: if absolute {
                    ExpireWhen::At(ms)
                } else {
                    ExpireWhen::In(ms)
                },
                condition: ExpireCondition::Always,
            }
        }
        None if persist => Request::Persist { key: key.clone() },
        None => {
            return Ok(Command::Kv {
                session: None,
                request: get,
                shape: Shape::Plain,
            })
        }
    };
    Ok(Command::Kv {
        session: None,
        request: Request::Multi {
            watches: Vec::new(),
            commands: vec![get, change],
        },
        shape: Shape::First,
    })
}

/// `EXPIRE key seconds [NX | XX | GT | LT]` and `PEXPIRE`, `EXPIREAT`, `PEXPIREAT`, with
/// Redis's checks in Redis's order (options, then the time).
fn expire_command(name: &str, rest: &[Vec<u8>]) -> Result<Command, Value> {
    if rest.len() < 2 {
        return Err(arity_error(name));
    }
    let (seconds, absolute) = match name {
        "EXPIRE" => (true, false),
        "PEXPIRE" => (false, false),
        "EXPIREAT" => (true, true),
        _ => (false, true),
    };
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in &rest[2..] {
        match String::from_utf8_lossy(option)
            .to_ascii_uppercase()
            .as_str()
        {
            "NX" => nx = true,
            "XX" => xx = true,
            "GT" => gt = true,
            "LT" => lt = true,
            _ => {
                return Err(Value::err(format!(
                    "Unsupported option {}",
                    truncate(&String::from_utf8_lossy(option), 128)
                )))
            }
        }
    }
    if nx && (xx || gt || lt) {
        return Err(Value::err(
            "NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Err(Value::err(
            "GT and LT options at the same time are not compatible",
        ));
    }
    let condition = match (nx, xx, gt, lt) {
        (true, ..) => ExpireCondition::Nx,
        (_, _, true, _) => ExpireCondition::Gt,
        (_, _, _, true) => ExpireCondition::Lt,
        (_, true, ..) => ExpireCondition::Xx,
        _ => ExpireCondition::Always,
    };
    // Redis applies XX and LT both (an expiry must exist and the new one be earlier); kmb's
    // request holds one condition.
    if xx && lt {
        return Err(Value::err(
            "XX and LT options at the same time are not supported by kmb",
        ));
    }
    let n = parse_i64(&rest[1]).ok_or_else(not_integer)?;
    let command = name.to_ascii_lowercase();
    let ms = if seconds {
        n.checked_mul(1000)
            .ok_or_else(|| invalid_expire_time(&command))?
    } else {
        n
    };
    Ok(Command::Kv {
        session: None,
        request: Request::Expire {
            key: rest[0].clone(),
            when: if absolute {
                ExpireWhen::At(ms)
            } else {
                ExpireWhen::In(ms)
            },
            condition,
        },
        shape: Shape::Plain,
    })
}

/// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]`. kmb has strings only: a `TYPE` other
/// than `string` answers an empty, finished scan at once.
fn scan_command(rest: &[Vec<u8>]) -> Result<Command, Value> {
    let Some(cursor) = rest.first() else {
        return Err(arity_error("scan"));
    };
    let cursor = parse_u64(cursor).ok_or_else(|| Value::err("invalid cursor"))?;
    let mut pattern = None;
    let mut count = 10u32;
    let mut other_type = false;
    let mut i = 1;
    while i < rest.len() {
        let option = String::from_utf8_lossy(&rest[i]).to_ascii_uppercase();
        let Some(arg) = rest.get(i + 1) else {
            return Err(syntax_error());
        };
        match option.as_str() {
            "MATCH" => pattern = Some(arg.clone()),
            "COUNT" => {
                let n = parse_i64(arg).ok_or_else(not_integer)?;
                if n < 1 {
                    return Err(syntax_error());
                }
                count = n.min(SCAN_LIMIT_MAX as i64) as u32;
            }
            "TYPE" => other_type = !arg.eq_ignore_ascii_case(b"string"),
            _ => return Err(syntax_error()),
        }
        i += 2;
    }
    if other_type {
        return Ok(Command::Local(Value::Array(vec![
            Value::text("0"),
            Value::Array(Vec::new()),
        ])));
    }
    // `*` matches every key: no pattern to test.
    let pattern = pattern.filter(|p| p.as_slice() != b"*");
    Ok(Command::Kv {
        session: None,
        request: Request::ScanCursor {
            cursor,
            pattern,
            count,
        },
        shape: Shape::Cursor,
    })
}

/// `KMB.TX count argc arg… argc arg…`: `count` key-value commands, each given as its argument
/// count then its arguments, run as one transaction (one log entry, no watches). Inside
/// `KMB.REQ` the whole transaction is one request of the session.
fn kmb_tx_command(rest: &[Vec<u8>]) -> Result<Command, Value> {
    let Some(count) = rest.first() else {
        return Err(arity_error("kmb.tx"));
    };
    let count = parse_u64(count)
        .filter(|&n| n <= KEYS_MAX as u64)
        .ok_or_else(|| Value::err(format!("invalid command count (0 to {KEYS_MAX})")))?;
    let mut tx = Transaction::default();
    let mut i = 1;
    for _ in 0..count {
        let argc = rest
            .get(i)
            .and_then(|a| parse_u64(a))
            .filter(|&n| n >= 1 && (n as usize) < rest.len() - i)
            .ok_or_else(|| {
                Value::err("KMB.TX: each command is its argument count, then its arguments")
            })? as usize;
        let element = &rest[i + 1..i + 1 + argc];
        i += 1 + argc;
        if element[0].eq_ignore_ascii_case(b"KMB.TX") {
            return Err(Value::err("KMB.TX cannot nest"));
        }
        match parse(element)? {
            Command::Kv {
                session: None,
                request,
                shape,
            } => tx.push(request, shape, usize::MAX)?,
            _ => return Err(Value::err("KMB.TX holds key-value commands only")),
        }
    }
    if i != rest.len() {
        return Err(syntax_error());
    }
    let (request, shape) = tx.into_request(Vec::new());
    Ok(Command::Kv {
        session: None,
        request,
        shape,
    })
}

/// Parse one command's arguments.
pub fn parse(args: &[Vec<u8>]) -> Result<Command, Value> {
    let Some(name) = args.first() else {
        return Err(Value::err("empty command"));
    };
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let rest = &args[1..];
    let arity = |n: usize| {
        if rest.len() == n {
            Ok(())
        } else {
            Err(arity_error(&name))
        }
    };
    let at_least = |n: usize| {
        if rest.len() >= n {
            Ok(())
        } else {
            Err(arity_error(&name))
        }
    };
    let shaped = |request: Request, shape: Shape| {
        Ok(Command::Kv {
            session: None,
            request,
            shape,
        })
    };
    let kv = |request: Request| shaped(request, Shape::Plain);
    let conn = |c: Conn| Ok(Command::Conn(c));
    let key = || rest[0].clone();
    match name.as_str() {
        "SET" => set_command(rest),
        "SETNX" => {
            arity(2)?;
            kv(Request::Cas {
                key: key(),
                expected: None,
                new: rest[1].clone(),
            })
        }
        "SETEX" | "PSETEX" => {
            arity(3)?;
            let ms = expire_millis(&rest[1], name == "SETEX", &name.to_ascii_lowercase())?;
            kv(Request::SetWith {
                key: key(),
                value: rest[2].clone(),
                condition: SetCondition::Always,
                expiry: SetExpiry::In(ms),
                get: false,
            })
        }
        "GETSET" => {
            arity(2)?;
            kv(Request::SetWith {
                key: key(),
                value: rest[1].clone(),
                condition: SetCondition::Always,
                expiry: SetExpiry::Clear,
                get: true,
            })
        }
        "GET" => {
            arity(1)?;
            kv(Request::Get { key: key() })
        }
        "GETDEL" => {
            arity(1)?;
            kv(Request::GetDel { key: key() })
        }
        "GETEX" => getex_command(rest),
        "GETRANGE" | "SUBSTR" => {
            arity(3)?;
            let start = parse_i64(&rest[1]).ok_or_else(not_integer)?;
            let end = parse_i64(&rest[2]).ok_or_else(not_integer)?;
            shaped(Request::Get { key: key() }, Shape::Range(start, end))
        }
        // One key keeps the one-key request (its reply is the same `:1` / `:0`).
        "DEL" | "UNLINK" => match rest {
            [] => Err(arity_error(&name)),
            [k] => kv(Request::Del { key: k.clone() }),
            keys => kv(Request::DelKeys {
                keys: keys.to_vec(),
            }),
        },
        "EXISTS" => match rest {
            [] => Err(arity_error(&name)),
            [k] => shaped(Request::Get { key: k.clone() }, Shape::Exists),
            keys => kv(Request::Exists {
                keys: keys.to_vec(),
            }),
        },
        // Redis's TOUCH only updates access times, which kmb does not keep: how many exist.
        "TOUCH" => {
            at_least(1)?;
            kv(Request::Exists {
                keys: rest.to_vec(),
            })
        }
        "MGET" => {
            at_least(1)?;
            kv(Request::MGet {
                keys: rest.to_vec(),
            })
        }
        "MSET" | "MSETNX" => {
            if rest.is_empty() || !rest.len().is_multiple_of(2) {
                return Err(arity_error(&name));
            }
            kv(Request::MSet {
                pairs: rest
                    .chunks_exact(2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect(),
                only_if_none: name == "MSETNX",
            })
        }
        "APPEND" => {
            arity(2)?;
            kv(Request::Append {
                key: key(),
                value: rest[1].clone(),
            })
        }
        "STRLEN" | "TYPE" => {
            arity(1)?;
            let shape = if name == "STRLEN" {
                Shape::Strlen
            } else {
                Shape::Type
            };
            shaped(Request::Get { key: key() }, shape)
        }
        "INCR" | "DECR" => {
            arity(1)?;
            kv(Request::IncrBy {
                key: key(),
                delta: if name == "INCR" { 1 } else { -1 },
            })
        }
        "INCRBY" | "DECRBY" => {
            arity(2)?;
            let delta = parse_i64(&rest[1]).ok_or_else(not_integer)?;
            let delta = if name == "INCRBY" {
                delta
            } else {
                delta.checked_neg().ok_or_else(not_integer)?
            };
            kv(Request::IncrBy { key: key(), delta })
        }
        "INCRBYFLOAT" => {
            arity(2)?;
            let delta = kv::parse_float(&rest[1])
                .ok_or_else(|| Value::err("value is not a valid float"))?;
            kv(Request::IncrByFloat { key: key(), delta })
        }
        "EXPIRE" | "PEXPIRE" | "EXPIREAT" | "PEXPIREAT" => expire_command(&name, rest),
        "TTL" | "PTTL" | "EXPIRETIME" | "PEXPIRETIME" => {
            arity(1)?;
            let kind = match name.as_str() {
                "TTL" => TtlKind::Seconds,
                "PTTL" => TtlKind::Millis,
                "EXPIRETIME" => TtlKind::AtSeconds,
                _ => TtlKind::AtMillis,
            };
            kv(Request::Ttl { key: key(), kind })
        }
        "PERSIST" => {
            arity(1)?;
            kv(Request::Persist { key: key() })
        }
        "DBSIZE" => arity(0).and_then(|_| kv(Request::DbSize)),
        "FLUSHDB" | "FLUSHALL" => match rest {
            [] => kv(Request::Flush),
            [mode] if mode.eq_ignore_ascii_case(b"ASYNC") || mode.eq_ignore_ascii_case(b"SYNC") => {
                kv(Request::Flush)
            }
            _ => Err(syntax_error()),
        },
        "KEYS" => {
            arity(1)?;
            kv(Request::Keys { pattern: key() })
        }
        "SCAN" => scan_command(rest),
        "CAS" => {
            let mode = rest
                .get(1)
                .map(|m| String::from_utf8_lossy(m).to_ascii_uppercase());
            match (mode.as_deref(), rest.len()) {
                (Some("IFEQ"), 4) => kv(Request::Cas {
                    key: key(),
                    expected: Some(rest[2].clone()),
                    new: rest[3].clone(),
                }),
                (Some("IFABSENT"), 3) => kv(Request::Cas {
                    key: key(),
                    expected: None,
                    new: rest[2].clone(),
                }),
                (Some("IFEQ" | "IFABSENT"), _) => Err(arity_error(&name)),
                _ if rest.len() < 3 => Err(arity_error(&name)),
                _ => Err(Value::err(
                    "syntax error: CAS key IFEQ expected new | CAS key IFABSENT new",
                )),
            }
        }
        "RANGE" => {
            let limit = match rest.len() {
                2 => SCAN_LIMIT_MAX,
                4 if rest[2].eq_ignore_ascii_case(b"LIMIT") => {
                    let n = parse_u64(&rest[3]).ok_or_else(not_integer)?;
                    n.min(SCAN_LIMIT_MAX as u64) as u32
                }
                4 => return Err(Value::err("syntax error: RANGE start end [LIMIT n]")),
                _ => return Err(arity_error(&name)),
            };
            kv(Request::Scan {
                start: key(),
                end: rest[1].clone(),
                limit,
            })
        }
        "KMB.TX" => kmb_tx_command(rest),
        "KMB.REQ" => {
            if rest.len() < 3 {
                return Err(arity_error(&name));
            }
            let client = std::str::from_utf8(&rest[0])
                .ok()
                .and_then(|s| s.parse::<u128>().ok())
                .filter(|&c| c != 0)
                .ok_or_else(|| Value::err("invalid client id"))?;
            let request = parse_u64(&rest[1])
                .filter(|&r| r != 0)
                .ok_or_else(|| Value::err("invalid request number"))?;
            if rest.len() == 3 && rest[2].eq_ignore_ascii_case(b"REGISTER") {
                return Ok(Command::Kv {
                    session: Some((client, request)),
                    request: Request::Register,
                    shape: Shape::Plain,
                });
            }
            match parse(&rest[2..])? {
                Command::Kv {
                    session: None,
                    request: inner,
                    shape,
                } => Ok(Command::Kv {
                    session: Some((client, request)),
                    request: inner,
                    shape,
                }),
                _ => Err(Value::err("KMB.REQ wraps key-value commands only")),
            }
        }
        "PING" => match rest.len() {
            0 => Ok(Command::Local(Value::Simple("PONG".into()))),
            1 => Ok(Command::Local(Value::Bulk(rest[0].clone()))),
            _ => Err(arity_error(&name)),
        },
        "ECHO" => {
            arity(1)?;
            Ok(Command::Local(Value::Bulk(rest[0].clone())))
        }
        "QUIT" => Ok(Command::Quit),
        "SELECT" => match rest {
            [db] if db.as_slice() == b"0" => Ok(Command::Local(Value::ok())),
            [db] if parse_i64(db).is_none() => Err(not_integer()),
            [_] => Err(Value::err(
                "DB index is out of range (kmb has one database, 0)",
            )),
            _ => Err(arity_error(&name)),
        },
        "READONLY" | "READWRITE" => {
            arity(0)?;
            Ok(Command::Local(Value::ok()))
        }
        "CLIENT" => client_command(rest),
        "COMMAND" => command_command(rest),
        "CONFIG" => config_command(rest),
        "HELLO" => hello_command(rest),
        "AUTH" => match rest {
            [password] => conn(Conn::Auth {
                user: None,
                password: password.clone(),
            }),
            [user, password] => conn(Conn::Auth {
                user: Some(user.clone()),
                password: password.clone(),
            }),
            _ => Err(arity_error(&name)),
        },
        "RESET" => arity(0).and_then(|_| conn(Conn::Reset)),
        "INFO" => conn(Conn::Info(
            rest.iter()
                .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
                .collect(),
        )),
        "ROLE" => arity(0).and_then(|_| conn(Conn::Role)),
        "TIME" => arity(0).and_then(|_| conn(Conn::Time)),
        "WAIT" => {
            arity(2)?;
            parse_i64(&rest[0]).ok_or_else(not_integer)?;
            let timeout = parse_i64(&rest[1])
                .ok_or_else(|| Value::err("timeout is not an integer or out of range"))?;
            if timeout < 0 {
                return Err(Value::err("timeout is negative"));
            }
            conn(Conn::Wait)
        }
        "MULTI" => arity(0).and_then(|_| conn(Conn::Multi)),
        "EXEC" => arity(0).and_then(|_| conn(Conn::Exec)),
        "DISCARD" => arity(0).and_then(|_| conn(Conn::Discard)),
        "WATCH" => at_least(1).and_then(|_| conn(Conn::Watch(rest.to_vec()))),
        "UNWATCH" => arity(0).and_then(|_| conn(Conn::Unwatch)),
        _ => Err(unknown_command(args)),
    }
}

/// The RESP form of a state-machine reply.
pub fn reply_value(reply: &kv::Reply) -> Value {
    match reply {
        kv::Reply::Ok => Value::ok(),
        kv::Reply::Value(Some(v)) => Value::Bulk(v.clone()),
        kv::Reply::Value(None) => Value::Null,
        kv::Reply::Integer(i) => Value::Integer(*i),
        kv::Reply::Bool(b) => Value::Integer(*b as i64),
        kv::Reply::Entries(entries) => Value::Array(
            entries
                .iter()
                .flat_map(|(k, v)| [Value::Bulk(k.clone()), Value::Bulk(v.clone())])
                .collect(),
        ),
        kv::Reply::Error(e) if e.contains("not an integer") => not_integer(),
        kv::Reply::Error(e) => Value::err(e),
        kv::Reply::Array(items) => Value::Array(items.iter().map(reply_value).collect()),
        kv::Reply::Aborted => Value::NullArray,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Vec<u8>> {
        s.split(' ').map(|a| a.as_bytes().to_vec()).collect()
    }

    fn error_of(s: &str) -> String {
        match parse(&args(s)) {
            Err(Value::Error(e)) => e,
            other => panic!("{s}: expected an error, got {other:?}"),
        }
    }

    fn kv_of(s: &str) -> Request {
        match parse(&args(s)) {
            Ok(Command::Kv {
                session: None,
                request,
                shape: Shape::Plain,
            }) => request,
            other => panic!("{s}: {other:?}"),
        }
    }

    /// Goal: each key-value command parses to its request.
    #[test]
    fn parse_kv_commands() {
        let kv = |s: &str| match parse(&args(s)) {
            Ok(Command::Kv {
                session: None,
                request,
                shape: Shape::Plain,
            }) => request,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(
            kv("set k v"),
            Request::Set {
                key: b"k".to_vec(),
                value: b"v".to_vec()
            }
        );
        assert_eq!(kv("GET k"), Request::Get { key: b"k".to_vec() });
        assert_eq!(
            kv("incrby k -3"),
            Request::IncrBy {
                key: b"k".to_vec(),
                delta: -3
            }
        );
        assert_eq!(
            kv("DECR k"),
            Request::IncrBy {
                key: b"k".to_vec(),
                delta: -1
            }
        );
        assert_eq!(
            kv("CAS k IFEQ a b"),
            Request::Cas {
                key: b"k".to_vec(),
                expected: Some(b"a".to_vec()),
                new: b"b".to_vec()
            }
        );
        assert_eq!(
            kv("cas k ifabsent b"),
            Request::Cas {
                key: b"k".to_vec(),
                expected: None,
                new: b"b".to_vec()
            }
        );
        assert_eq!(
            kv("RANGE a z LIMIT 5"),
            Request::Scan {
                start: b"a".to_vec(),
                end: b"z".to_vec(),
                limit: 5
            }
        );
    }

    /// Goal: unknown commands, wrong arity and non-integers get Redis-style errors.
    #[test]
    fn parse_errors_are_redis_style() {
        assert_eq!(
            error_of("SUBSCRIBE a b"),
            "ERR unknown command 'SUBSCRIBE', with args beginning with: 'a' 'b' "
        );
        assert_eq!(
            error_of("EVAL"),
            "ERR unknown command 'EVAL', with args beginning with: "
        );
        assert_eq!(
            error_of("RENAME a b"),
            "ERR unknown command 'RENAME', with args beginning with: 'a' 'b' "
        );
        assert_eq!(
            error_of("SET k"),
            "ERR wrong number of arguments for 'set' command"
        );
        assert_eq!(
            error_of("GET"),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            error_of("INCRBY k x"),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            error_of("INCRBY k +5"),
            "ERR value is not an integer or out of range"
        );
        assert!(error_of("CAS k MAYBE a b").contains("syntax error"));
        assert!(error_of("RANGE a z LIMIT -1").contains("not an integer"));
        assert_eq!(error_of("KMB.REQ 0 1 GET k"), "ERR invalid client id");
        assert_eq!(error_of("KMB.REQ 5 x GET k"), "ERR invalid request number");
        assert_eq!(
            error_of("KMB.REQ 5 1 PING"),
            "ERR KMB.REQ wraps key-value commands only"
        );
    }

    /// Goal: the session extension carries client id and request number.
    #[test]
    fn parse_session_extension() {
        assert_eq!(
            parse(&args("KMB.REQ 77 3 DEL k")),
            Ok(Command::Kv {
                session: Some((77, 3)),
                request: Request::Del { key: b"k".to_vec() },
                shape: Shape::Plain,
            })
        );
    }

    /// Goal: local commands answer without touching the log.
    #[test]
    fn parse_local_commands() {
        assert_eq!(
            parse(&args("PING")),
            Ok(Command::Local(Value::Simple("PONG".into())))
        );
        assert_eq!(
            parse(&args("ECHO hi")),
            Ok(Command::Local(Value::Bulk(b"hi".to_vec())))
        );
        assert_eq!(parse(&args("QUIT")), Ok(Command::Quit));
        assert!(matches!(parse(&args("SELECT 1")), Err(Value::Error(_))));
    }

    /// Goal: replies map to the documented RESP values.
    #[test]
    fn reply_values() {
        assert_eq!(reply_value(&kv::Reply::Bool(true)), Value::Integer(1));
        assert_eq!(reply_value(&kv::Reply::Value(None)), Value::Null);
        assert_eq!(
            reply_value(&kv::Reply::Entries(vec![(b"a".to_vec(), b"1".to_vec())])),
            Value::Array(vec![Value::Bulk(b"a".to_vec()), Value::Bulk(b"1".to_vec())])
        );
        assert_eq!(
            reply_value(&kv::Reply::Error("value is not an integer".into())),
            Value::err("value is not an integer or out of range")
        );
    }
    fn conn_of(s: &str) -> Conn {
        match parse(&args(s)) {
            Ok(Command::Conn(c)) => c,
            other => panic!("{s}: expected a connection command, got {other:?}"),
        }
    }

    fn shaped(s: &str) -> (Request, Shape) {
        match parse(&args(s)) {
            Ok(Command::Kv {
                session: None,
                request,
                shape,
            }) => (request, shape),
            other => panic!("{s}: {other:?}"),
        }
    }

    /// Goal: the one-key commands read or write through an existing request, shaped; with
    /// several keys DEL and EXISTS take the multi-key requests.
    #[test]
    fn parse_shaped_keyspace_commands() {
        let get = Request::Get { key: b"k".to_vec() };
        assert_eq!(shaped("EXISTS k"), (get.clone(), Shape::Exists));
        assert_eq!(shaped("strlen k"), (get.clone(), Shape::Strlen));
        assert_eq!(shaped("TYPE k"), (get.clone(), Shape::Type));
        assert_eq!(shaped("GETRANGE k 0 -1"), (get, Shape::Range(0, -1)));
        let absent = Request::Cas {
            key: b"k".to_vec(),
            expected: None,
            new: b"v".to_vec(),
        };
        assert_eq!(shaped("SETNX k v"), (absent, Shape::Plain));
        assert_eq!(
            shaped("UNLINK k"),
            (Request::Del { key: b"k".to_vec() }, Shape::Plain)
        );
        let keys = vec![b"a".to_vec(), b"b".to_vec()];
        assert_eq!(
            shaped("DEL a b"),
            (Request::DelKeys { keys: keys.clone() }, Shape::Plain)
        );
        assert_eq!(
            shaped("EXISTS a b"),
            (Request::Exists { keys: keys.clone() }, Shape::Plain)
        );
        assert_eq!(
            shaped("TOUCH a b"),
            (Request::Exists { keys: keys.clone() }, Shape::Plain)
        );
        assert_eq!(shaped("MGET a b"), (Request::MGet { keys }, Shape::Plain));
        assert_eq!(
            error_of("EXISTS"),
            "ERR wrong number of arguments for 'exists' command"
        );
        assert_eq!(
            error_of("GETRANGE k 0 x"),
            "ERR value is not an integer or out of range"
        );
    }

    fn set_with(condition: SetCondition, expiry: SetExpiry, get: bool) -> Request {
        Request::SetWith {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            condition,
            expiry,
            get,
        }
    }

    /// Goal: SET's options parse as Redis parses them, with Redis's errors; a plain SET stays
    /// the plain request.
    #[test]
    fn parse_set_options() {
        use SetCondition::*;
        assert_eq!(
            kv_of("SET k v"),
            Request::Set {
                key: b"k".to_vec(),
                value: b"v".to_vec()
            }
        );
        for (command, condition, expiry, get) in [
            ("SET k v NX", IfAbsent, SetExpiry::Clear, false),
            ("SET k v nx NX", IfAbsent, SetExpiry::Clear, false),
            ("set k v xx", IfPresent, SetExpiry::Clear, false),
            ("SET k v GET", Always, SetExpiry::Clear, true),
            (
                "SET k v NX GET PX 30000",
                IfAbsent,
                SetExpiry::In(30_000),
                true,
            ),
            ("SET k v EX 10", Always, SetExpiry::In(10_000), false),
            ("SET k v EX 5 EX 10", Always, SetExpiry::In(10_000), false),
            (
                "SET k v EXAT 1700000000",
                Always,
                SetExpiry::At(1_700_000_000_000),
                false,
            ),
            ("SET k v PXAT 5", Always, SetExpiry::At(5), false),
            ("SET k v KEEPTTL XX", IfPresent, SetExpiry::Keep, false),
        ] {
            assert_eq!(
                kv_of(command),
                set_with(condition, expiry, get),
                "{command}"
            );
        }
        for bad in [
            "SET k v NX XX",
            "SET k v EX",
            "SET k v FOO",
            "SET k v EX 10 PX 10",
            "SET k v KEEPTTL EX 10",
            "SET k v EX 10 KEEPTTL",
            "SET k v PXAT 10 EXAT 10",
            // Every option is read before the expiry is checked.
            "SET k v EX x FOO",
        ] {
            assert_eq!(error_of(bad), "ERR syntax error", "{bad}");
        }
        assert_eq!(
            error_of("SET k v EX x"),
            "ERR value is not an integer or out of range"
        );
        for bad in [
            "SET k v EX 0",
            "SET k v PX -5",
            "SET k v EX 9223372036854775807",
        ] {
            assert_eq!(
                error_of(bad),
                "ERR invalid expire time in 'set' command",
                "{bad}"
            );
        }
        assert_eq!(
            error_of("SET k"),
            "ERR wrong number of arguments for 'set' command"
        );
        assert_eq!(
            kv_of("SETEX k 10 v"),
            set_with(Always, SetExpiry::In(10_000), false)
        );
        assert_eq!(
            kv_of("PSETEX k 10 v"),
            set_with(Always, SetExpiry::In(10), false)
        );
        assert_eq!(
            error_of("SETEX k 0 v"),
            "ERR invalid expire time in 'setex' command"
        );
        assert_eq!(
            error_of("PSETEX k x v"),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            kv_of("GETSET k v"),
            set_with(Always, SetExpiry::Clear, true)
        );
    }

    /// Goal: the multi-key, read-modify-write and expiry commands parse to their requests,
    /// with Redis's errors.
    #[test]
    fn parse_keyspace_and_expiry_commands() {
        let k = || b"k".to_vec();
        assert_eq!(
            kv_of("MSET a 1 b 2"),
            Request::MSet {
                pairs: vec![
                    (b"a".to_vec(), b"1".to_vec()),
                    (b"b".to_vec(), b"2".to_vec())
                ],
                only_if_none: false
            }
        );
        assert_eq!(
            kv_of("MSETNX a 1"),
            Request::MSet {
                pairs: vec![(b"a".to_vec(), b"1".to_vec())],
                only_if_none: true
            }
        );
        assert_eq!(
            error_of("MSET a 1 b"),
            "ERR wrong number of arguments for 'mset' command"
        );
        assert_eq!(kv_of("GETDEL k"), Request::GetDel { key: k() });
        assert_eq!(
            kv_of("APPEND k v"),
            Request::Append {
                key: k(),
                value: b"v".to_vec()
            }
        );
        assert_eq!(
            kv_of("INCRBYFLOAT k 1.5e2"),
            Request::IncrByFloat {
                key: k(),
                delta: 150.0
            }
        );
        for bad in ["INCRBYFLOAT k x", "INCRBYFLOAT k inf", "INCRBYFLOAT k nan"] {
            assert_eq!(error_of(bad), "ERR value is not a valid float", "{bad}");
        }
        let expire = |when, condition| Request::Expire {
            key: k(),
            when,
            condition,
        };
        assert_eq!(
            kv_of("EXPIRE k 10"),
            expire(ExpireWhen::In(10_000), ExpireCondition::Always)
        );
        assert_eq!(
            kv_of("PEXPIRE k -5 nx"),
            expire(ExpireWhen::In(-5), ExpireCondition::Nx)
        );
        assert_eq!(
            kv_of("EXPIREAT k 1700000000 GT"),
            expire(ExpireWhen::At(1_700_000_000_000), ExpireCondition::Gt)
        );
        assert_eq!(
            kv_of("PEXPIREAT k 5 XX GT"),
            expire(ExpireWhen::At(5), ExpireCondition::Gt)
        );
        assert_eq!(
            kv_of("PEXPIRE k 5 LT"),
            expire(ExpireWhen::In(5), ExpireCondition::Lt)
        );
        assert_eq!(
            kv_of("EXPIRE k 5 XX"),
            expire(ExpireWhen::In(5_000), ExpireCondition::Xx)
        );
        assert_eq!(error_of("EXPIRE k 10 FOO"), "ERR Unsupported option FOO");
        assert_eq!(
            error_of("EXPIRE k 10 NX XX"),
            "ERR NX and XX, GT or LT options at the same time are not compatible"
        );
        assert_eq!(
            error_of("EXPIRE k 10 GT LT"),
            "ERR GT and LT options at the same time are not compatible"
        );
        assert_eq!(
            error_of("EXPIRE k x"),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            error_of("EXPIRE k 9223372036854775807"),
            "ERR invalid expire time in 'expire' command"
        );
        assert_eq!(
            error_of("EXPIRE k"),
            "ERR wrong number of arguments for 'expire' command"
        );
        assert_eq!(
            kv_of("TTL k"),
            Request::Ttl {
                key: k(),
                kind: TtlKind::Seconds
            }
        );
        assert_eq!(
            kv_of("PEXPIRETIME k"),
            Request::Ttl {
                key: k(),
                kind: TtlKind::AtMillis
            }
        );
        assert_eq!(kv_of("PERSIST k"), Request::Persist { key: k() });
        assert_eq!(kv_of("GETEX k"), Request::Get { key: k() });
        assert_eq!(
            shaped("GETEX k PX 100"),
            (
                Request::Multi {
                    watches: vec![],
                    commands: vec![
                        Request::Get { key: k() },
                        expire(ExpireWhen::In(100), ExpireCondition::Always)
                    ]
                },
                Shape::First
            )
        );
        assert_eq!(
            shaped("GETEX k PERSIST"),
            (
                Request::Multi {
                    watches: vec![],
                    commands: vec![Request::Get { key: k() }, Request::Persist { key: k() }]
                },
                Shape::First
            )
        );
        assert_eq!(error_of("GETEX k PERSIST EX 1"), "ERR syntax error");
        assert_eq!(
            error_of("GETEX k EX 0"),
            "ERR invalid expire time in 'getex' command"
        );
    }

    /// Goal: DBSIZE, FLUSHDB/FLUSHALL, KEYS and SCAN parse to their requests (through the
    /// log), with Redis's errors; SCAN's cursor is shaped as a bulk string.
    #[test]
    fn parse_scan_keys_flush() {
        assert_eq!(kv_of("DBSIZE"), Request::DbSize);
        assert_eq!(kv_of("FLUSHDB"), Request::Flush);
        assert_eq!(kv_of("flushall async"), Request::Flush);
        assert_eq!(error_of("FLUSHALL NOW"), "ERR syntax error");
        assert_eq!(error_of("FLUSHDB SYNC SYNC"), "ERR syntax error");
        assert_eq!(
            kv_of("KEYS user:*"),
            Request::Keys {
                pattern: b"user:*".to_vec()
            }
        );
        assert_eq!(
            shaped("SCAN 0"),
            (
                Request::ScanCursor {
                    cursor: 0,
                    pattern: None,
                    count: 10
                },
                Shape::Cursor
            )
        );
        assert_eq!(
            shaped("SCAN 18446744073709551615 MATCH a* COUNT 5000 TYPE string"),
            (
                Request::ScanCursor {
                    cursor: u64::MAX,
                    pattern: Some(b"a*".to_vec()),
                    count: SCAN_LIMIT_MAX
                },
                Shape::Cursor
            )
        );
        assert_eq!(
            parse(&args("SCAN 7 TYPE hash")),
            Ok(Command::Local(Value::Array(vec![
                Value::text("0"),
                Value::Array(vec![])
            ])))
        );
        assert_eq!(error_of("SCAN x"), "ERR invalid cursor");
        assert_eq!(error_of("SCAN 0 COUNT 0"), "ERR syntax error");
        assert_eq!(
            error_of("SCAN 0 COUNT x"),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(error_of("SCAN 0 MATCH"), "ERR syntax error");
        assert_eq!(error_of("SCAN 0 FOO x"), "ERR syntax error");
    }

    /// Goal: KMB.TX parses its commands into one transaction whose reply shapes each element
    /// as its own command; inside KMB.REQ it is one session request; it refuses nesting and
    /// malformed counts.
    #[test]
    fn parse_kmb_tx() {
        let (request, shape) = shaped("KMB.TX 3 3 SET a 1 2 EXISTS a 4 GETEX a EX 5");
        assert_eq!(
            request,
            Request::Multi {
                watches: vec![],
                commands: vec![
                    Request::Set {
                        key: b"a".to_vec(),
                        value: b"1".to_vec()
                    },
                    Request::Get { key: b"a".to_vec() },
                    Request::Get { key: b"a".to_vec() },
                    Request::Expire {
                        key: b"a".to_vec(),
                        when: ExpireWhen::In(5_000),
                        condition: ExpireCondition::Always
                    },
                ]
            }
        );
        assert_eq!(
            shape,
            Shape::Each(vec![
                Part::One(Shape::Plain),
                Part::One(Shape::Exists),
                Part::Group {
                    len: 2,
                    shape: Shape::First
                },
            ])
        );
        let reply = Value::Array(vec![
            Value::ok(),
            Value::text("1"),
            Value::text("1"),
            Value::Integer(1),
        ]);
        assert_eq!(
            shape.apply(reply),
            Value::Array(vec![Value::ok(), Value::Integer(1), Value::text("1")])
        );
        match parse(&args("KMB.REQ 9 4 KMB.TX 2 2 GET a 3 INCRBY n 2")) {
            Ok(Command::Kv {
                session: Some((9, 4)),
                request: Request::Multi { commands, .. },
                shape: Shape::Each(parts),
            }) => {
                assert_eq!(commands.len(), 2);
                assert_eq!(parts.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            shaped("KMB.TX 0"),
            (
                Request::Multi {
                    watches: vec![],
                    commands: vec![]
                },
                Shape::Each(vec![])
            )
        );
        assert_eq!(error_of("KMB.TX 1 2 KMB.TX 0"), "ERR KMB.TX cannot nest");
        assert_eq!(
            error_of("KMB.TX 1 1 PING"),
            "ERR KMB.TX holds key-value commands only"
        );
        assert_eq!(
            error_of("KMB.TX 1 3 KMB.REQ 1 1"),
            "ERR wrong number of arguments for 'kmb.req' command"
        );
        for bad in ["KMB.TX 2 2 GET a", "KMB.TX 1 5 GET a", "KMB.TX 1 0 GET a"] {
            assert!(error_of(bad).contains("argument count"), "{bad}");
        }
        assert_eq!(error_of("KMB.TX 1 2 GET a extra"), "ERR syntax error");
        assert_eq!(
            error_of("KMB.TX 1 2 SET a"),
            "ERR wrong number of arguments for 'set' command"
        );
        assert!(error_of("KMB.TX x").contains("invalid command count"));
    }

    /// Goal: shapes turn replies into each command's Redis reply; errors and a null array
    /// pass unchanged; a batch or transaction shapes element by element, inserting local
    /// replies in order.
    #[test]
    fn shapes_apply() {
        let v = || Value::text("hello");
        assert_eq!(Shape::Exists.apply(v()), Value::Integer(1));
        assert_eq!(Shape::Exists.apply(Value::Null), Value::Integer(0));
        assert_eq!(Shape::Strlen.apply(v()), Value::Integer(5));
        assert_eq!(Shape::Strlen.apply(Value::Null), Value::Integer(0));
        assert_eq!(Shape::Type.apply(v()), Value::Simple("string".into()));
        assert_eq!(Shape::Type.apply(Value::Null), Value::Simple("none".into()));
        assert_eq!(Shape::Range(1, 3).apply(v()), Value::text("ell"));
        assert_eq!(Shape::Range(-3, -1).apply(v()), Value::text("llo"));
        assert_eq!(Shape::Range(0, 100).apply(v()), v());
        assert_eq!(Shape::Range(-1, -3).apply(v()), Value::text(""));
        assert_eq!(Shape::Range(4, 2).apply(v()), Value::text(""));
        assert_eq!(Shape::Range(0, -1).apply(Value::Null), Value::text(""));
        assert_eq!(
            Shape::Cursor.apply(Value::Array(vec![
                Value::Integer(-1),
                Value::Array(vec![v()])
            ])),
            Value::Array(vec![
                Value::text("18446744073709551615"),
                Value::Array(vec![v()])
            ])
        );
        let redirect = Value::Error("REDIRECT 1 127.0.0.1:6382".into());
        for shape in [
            Shape::Exists,
            Shape::Cursor,
            Shape::First,
            Shape::Each(vec![Part::One(Shape::Strlen)]),
        ] {
            assert_eq!(shape.apply(redirect.clone()), redirect);
        }
        let each = Shape::Each(vec![
            Part::Local(Value::Simple("PONG".into())),
            Part::One(Shape::Strlen),
            Part::One(Shape::Exists),
            Part::Local(v()),
            Part::One(Shape::Plain),
        ]);
        assert_eq!(each.apply(Value::NullArray), Value::NullArray);
        assert_eq!(
            each.apply(Value::Array(vec![
                v(),
                Value::err("value is not an integer or out of range"),
                Value::Integer(3)
            ])),
            Value::Array(vec![
                Value::Simple("PONG".into()),
                Value::Integer(5),
                Value::err("value is not an integer or out of range"),
                v(),
                Value::Integer(3),
            ])
        );
    }

    /// Goal: a transaction refuses a command beyond its bounds and keeps what it held.
    #[test]
    fn transaction_bounds() {
        let mut tx = Transaction::default();
        let set = Request::Set {
            key: b"k".to_vec(),
            value: vec![b'x'; 100],
        };
        let size = set.encode().len();
        tx.push(set.clone(), Shape::Plain, 2 * size).unwrap();
        tx.push(set.clone(), Shape::Plain, 2 * size).unwrap();
        assert!(tx.push(set, Shape::Plain, 2 * size).is_err());
        assert_eq!(tx.commands.len(), 2);
        assert_eq!(tx.bytes, 2 * size);
        tx.push_local(Value::ok());
        assert_eq!(tx.local_replies(), Value::Array(vec![Value::ok()]));
    }

    /// Goal: the connection commands parse with Redis's errors for bad arguments.
    #[test]
    fn parse_connection_commands() {
        assert_eq!(
            conn_of("HELLO 3 AUTH default pw SETNAME app"),
            Conn::Hello {
                protocol: Some(Protocol::Resp3),
                auth: Some((b"default".to_vec(), b"pw".to_vec())),
                setname: Some(b"app".to_vec()),
            }
        );
        assert_eq!(
            conn_of("HELLO"),
            Conn::Hello {
                protocol: None,
                auth: None,
                setname: None
            }
        );
        assert_eq!(error_of("HELLO 4"), "NOPROTO unsupported protocol version");
        assert_eq!(
            error_of("HELLO x"),
            "ERR Protocol version is not an integer or out of range"
        );
        assert_eq!(
            error_of("HELLO 3 AUTH u"),
            "ERR Syntax error in HELLO option 'AUTH'"
        );
        assert_eq!(
            conn_of("AUTH pw"),
            Conn::Auth {
                user: None,
                password: b"pw".to_vec()
            }
        );
        assert_eq!(
            error_of("AUTH a b c"),
            "ERR wrong number of arguments for 'auth' command"
        );
        assert_eq!(conn_of("client id"), Conn::ClientId);
        assert_eq!(conn_of("CLIENT GETNAME"), Conn::ClientGetName);
        assert_eq!(
            conn_of("CLIENT SETNAME app"),
            Conn::ClientSetName(b"app".to_vec())
        );
        assert_eq!(
            conn_of("CLIENT SETINFO lib-ver 1.0"),
            Conn::ClientSetInfo {
                attribute: "lib-ver",
                value: b"1.0".to_vec()
            }
        );
        assert_eq!(
            error_of("CLIENT SETINFO foo 1"),
            "ERR Unrecognized option 'foo'"
        );
        assert_eq!(
            error_of("CLIENT SETNAME"),
            "ERR wrong number of arguments for 'client|setname' command"
        );
        assert_eq!(
            error_of("CLIENT KILL x"),
            "ERR unknown subcommand 'KILL'. Try CLIENT HELP."
        );
        assert_eq!(
            conn_of("INFO Server keyspace"),
            Conn::Info(vec!["server".into(), "keyspace".into()])
        );
        assert_eq!(
            conn_of("CONFIG GET save appendonly"),
            Conn::ConfigGet(vec![b"save".to_vec(), b"appendonly".to_vec()])
        );
        assert!(error_of("CONFIG SET save x").contains("not supported"));
        assert_eq!(conn_of("WAIT 1 0"), Conn::Wait);
        assert_eq!(error_of("WAIT 1 -1"), "ERR timeout is negative");
        assert_eq!(conn_of("ROLE"), Conn::Role);
        assert_eq!(conn_of("TIME"), Conn::Time);
        assert_eq!(conn_of("RESET"), Conn::Reset);
        assert_eq!(conn_of("MULTI"), Conn::Multi);
        assert_eq!(conn_of("EXEC"), Conn::Exec);
        assert_eq!(conn_of("DISCARD"), Conn::Discard);
        assert_eq!(
            conn_of("WATCH k j"),
            Conn::Watch(vec![b"k".to_vec(), b"j".to_vec()])
        );
        assert_eq!(parse(&args("SELECT 0")), Ok(Command::Local(Value::ok())));
        assert!(error_of("SELECT 3").starts_with("ERR DB index is out of range"));
        assert_eq!(
            error_of("SELECT x"),
            "ERR value is not an integer or out of range"
        );
    }

    /// Goal: COMMAND answers what probing clients ask.
    #[test]
    fn parse_command_command() {
        let local = |s: &str| match parse(&args(s)) {
            Ok(Command::Local(v)) => v,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(
            local("COMMAND COUNT"),
            Value::Integer(COMMANDS.len() as i64)
        );
        assert_eq!(local("COMMAND DOCS"), Value::Map(Vec::new()));
        assert_eq!(local("COMMAND DOCS get"), Value::Map(Vec::new()));
        match local("COMMAND INFO get nosuch") {
            Value::Array(items) => {
                assert_eq!(items.len(), 2);
                assert_eq!(items[1], Value::Null);
                match &items[0] {
                    Value::Array(info) => {
                        assert_eq!(info[0], Value::text("get"));
                        assert_eq!(info[1], Value::Integer(2));
                    }
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
        match local("COMMAND") {
            Value::Array(items) => assert_eq!(items.len(), COMMANDS.len()),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            error_of("COMMAND NOPE"),
            "ERR unknown subcommand 'NOPE'. Try COMMAND HELP."
        );
    }
}
