//! The client command set: RESP arguments → commands, and state-machine replies → RESP.
//!
//! Key-value commands (each goes through the replicated log, reads included, so each reply is
//! linearizable and has an op number):
//!
//! | command | request | reply |
//! |---|---|---|
//! | `SET key value` | SET | `+OK` |
//! | `SET key value NX`, `SETNX key value` | CAS if absent | `+OK` / null; `:1` / `:0` |
//! | `GET key` | GET | bulk value, or null if absent |
//! | `EXISTS key`, `STRLEN key`, `TYPE key` | GET | `:1`/`:0`; the length; `+string`/`+none` ([`Shape`]) |
//! | `DEL key`, `UNLINK key` | DEL | `:1` if the key existed, else `:0` (one key per command) |
//! | `INCR key` / `INCRBY key delta` / `DECR` / `DECRBY` | INCRBY | the new value; `-ERR value is not an integer or out of range` if the stored value is not a canonical i64 |
//! | `CAS key IFEQ expected new` | CAS | `:1` if the key held `expected` and now holds `new`, else `:0` |
//! | `CAS key IFABSENT new` | CAS | `:1` if the key was absent and now holds `new`, else `:0` |
//! | `RANGE start end [LIMIT n]` | SCAN | flat array `key, value, …` of keys in `[start, end)`, in order, at most `n` (default and cap 1000) |
//! | `KMB.REQ client-id request-number command args…` | any of the above | `[op-number, reply]` — the session extension (see `client`) |
//! | `KMB.REQ client-id request-number REGISTER` | REGISTER | `[op-number, +OK]`: opens (or reopens after an eviction) the session, whose later requests number above `op-number`; its other requests are refused with `session evicted` until it does |
//!
//! Connection commands ([`Conn`], answered by [`crate::connection::Connection`] from the
//! connection's state and the replica's, without the log): `HELLO [2|3] [AUTH u p] [SETNAME n]`
//! (RESP3 replies per connection), `AUTH`, `CLIENT ID|SETNAME|GETNAME|INFO|LIST|SETINFO`,
//! `RESET`, `INFO [section…]`, `ROLE`, `WAIT`, `TIME`, `DBSIZE`, `CONFIG GET pattern…`,
//! `MULTI`/`EXEC`/`DISCARD`/`WATCH`/`UNWATCH` (transactions are refused: nothing queued is
//! ever applied). Answered here directly: `PING`, `ECHO`, `QUIT`, `SELECT 0`, `COMMAND
//! [COUNT|INFO|DOCS|LIST]`, `CLIENT NO-EVICT|NO-TOUCH`, `READONLY`, `READWRITE`.
//!
//! Commands planned in issue 14 (multi-key, expiry, read-modify-write, scans) answer
//! `-ERR <NAME> is not supported yet by kmb (see docs/redis-compat.md)`; every other command
//! answers Redis's `-ERR unknown command '<name>', with args beginning with: '<arg>' …`.
//! `docs/redis-compat.md` lists every command Redis clients use and what kmb does with it.

use crate::kv::{self, Request, SCAN_LIMIT_MAX};
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
/// through one request and answer differently).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// As [`reply_value`] gives it.
    Plain,
    /// `EXISTS`: a GET's value → `:1`, null → `:0`.
    Exists,
    /// `STRLEN`: a GET's value → its length, null → `:0`.
    Strlen,
    /// `TYPE`: a GET's value → `+string`, null → `+none`.
    Type,
    /// `SET key value NX`: a CAS-if-absent's `:1` → `+OK`, `:0` → null.
    SetNx,
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
    DbSize,
    /// `CONFIG GET pattern …`.
    ConfigGet(Vec<Vec<u8>>),
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
}

impl Conn {
    /// Whether the answer reads the replica's state (the glue asks the driver first).
    pub fn needs_status(&self) -> bool {
        matches!(
            self,
            Conn::Hello { .. } | Conn::Info(_) | Conn::Role | Conn::Wait | Conn::DbSize
        )
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

/// A Redis command kmb does not support yet (planned: issue 14).
fn not_yet(what: &str) -> Value {
    Value::err(format!(
        "{what} is not supported yet by kmb (see docs/redis-compat.md)"
    ))
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
    ("del", -2, &["write"], 1, 1, 1),
    ("unlink", -2, &["write", "fast"], 1, 1, 1),
    ("exists", -2, &["readonly", "fast"], 1, 1, 1),
    ("strlen", 2, &["readonly", "fast"], 1, 1, 1),
    ("type", 2, &["readonly", "fast"], 1, 1, 1),
    ("incr", 2, &["write", "denyoom", "fast"], 1, 1, 1),
    ("decr", 2, &["write", "denyoom", "fast"], 1, 1, 1),
    ("incrby", 3, &["write", "denyoom", "fast"], 1, 1, 1),
    ("decrby", 3, &["write", "denyoom", "fast"], 1, 1, 1),
    ("cas", -4, &["write", "denyoom"], 1, 1, 1),
    ("range", -3, &["readonly"], 0, 0, 0),
    ("kmb.req", -4, &["write"], 0, 0, 0),
    ("dbsize", 1, &["readonly", "fast"], 0, 0, 0),
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
        ("GETKEYS" | "GETKEYSANDFLAGS", _) => Err(not_yet(&format!("COMMAND {sub_name}"))),
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

/// `SET key value [NX]`; the other options are not supported yet.
fn set_command(name: &str, rest: &[Vec<u8>]) -> Result<Command, Value> {
    if rest.len() < 2 {
        return Err(arity_error(name));
    }
    let (mut nx, mut xx, mut unsupported) = (false, false, None);
    let mut i = 2;
    while i < rest.len() {
        let option = String::from_utf8_lossy(&rest[i]).to_ascii_uppercase();
        match option.as_str() {
            "NX" => nx = true,
            "XX" => xx = true,
            "GET" | "KEEPTTL" => unsupported = unsupported.or(Some(option)),
            "EX" | "PX" | "EXAT" | "PXAT" => {
                if i + 1 == rest.len() {
                    return Err(syntax_error());
                }
                i += 1;
                unsupported = unsupported.or(Some(option));
            }
            _ => return Err(syntax_error()),
        }
        i += 1;
    }
    if nx && xx {
        return Err(syntax_error());
    }
    if xx {
        unsupported = unsupported.or(Some("XX".into()));
    }
    if let Some(option) = unsupported {
        return Err(not_yet(&format!("SET option {option}")));
    }
    let key = rest[0].clone();
    let value = rest[1].clone();
    Ok(if nx {
        Command::Kv {
            session: None,
            request: Request::Cas {
                key,
                expected: None,
                new: value,
            },
            shape: Shape::SetNx,
        }
    } else {
        Command::Kv {
            session: None,
            request: Request::Set { key, value },
            shape: Shape::Plain,
        }
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
    // One key: the key-value commands that take several keys support one for now.
    let one_key = |what: &str| {
        at_least(1)?;
        if rest.len() > 1 {
            return Err(not_yet(&format!("{what} with more than one key")));
        }
        Ok(rest[0].clone())
    };
    match name.as_str() {
        "SET" => set_command(&name, rest),
        "SETNX" => {
            arity(2)?;
            kv(Request::Cas {
                key: rest[0].clone(),
                expected: None,
                new: rest[1].clone(),
            })
        }
        "GET" => {
            arity(1)?;
            kv(Request::Get {
                key: rest[0].clone(),
            })
        }
        "DEL" | "UNLINK" => kv(Request::Del {
            key: one_key(&name)?,
        }),
        "EXISTS" => shaped(
            Request::Get {
                key: one_key(&name)?,
            },
            Shape::Exists,
        ),
        "STRLEN" | "TYPE" => {
            arity(1)?;
            let shape = if name == "STRLEN" {
                Shape::Strlen
            } else {
                Shape::Type
            };
            shaped(
                Request::Get {
                    key: rest[0].clone(),
                },
                shape,
            )
        }
        "INCR" | "DECR" => {
            arity(1)?;
            kv(Request::IncrBy {
                key: rest[0].clone(),
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
            kv(Request::IncrBy {
                key: rest[0].clone(),
                delta,
            })
        }
        "CAS" => {
            let mode = rest
                .get(1)
                .map(|m| String::from_utf8_lossy(m).to_ascii_uppercase());
            match (mode.as_deref(), rest.len()) {
                (Some("IFEQ"), 4) => kv(Request::Cas {
                    key: rest[0].clone(),
                    expected: Some(rest[2].clone()),
                    new: rest[3].clone(),
                }),
                (Some("IFABSENT"), 3) => kv(Request::Cas {
                    key: rest[0].clone(),
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
                start: rest[0].clone(),
                end: rest[1].clone(),
                limit,
            })
        }
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
        "DBSIZE" => arity(0).and_then(|_| conn(Conn::DbSize)),
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
        "WATCH" => at_least(1).and_then(|_| conn(Conn::Watch)),
        "UNWATCH" => arity(0).and_then(|_| conn(Conn::Unwatch)),
        // Planned (issue 14): a clear error until they are implemented.
        "MGET" | "MSET" | "MSETNX" | "GETSET" | "GETDEL" | "GETEX" | "APPEND" | "INCRBYFLOAT"
        | "SETEX" | "PSETEX" | "EXPIRE" | "PEXPIRE" | "EXPIREAT" | "PEXPIREAT" | "EXPIRETIME"
        | "PEXPIRETIME" | "TTL" | "PTTL" | "PERSIST" | "SCAN" | "KEYS" | "FLUSHDB" | "FLUSHALL"
        | "RANDOMKEY" | "RENAME" | "RENAMENX" | "COPY" | "GETRANGE" | "SETRANGE" | "SUBSTR"
        | "LCS" | "TOUCH" => Err(not_yet(&name)),
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
        assert!(error_of("FLUSHALL").contains("not supported yet"));
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

    /// Goal: the one-key commands read or write through an existing request, shaped.
    #[test]
    fn parse_shaped_keyspace_commands() {
        let get = Request::Get { key: b"k".to_vec() };
        assert_eq!(shaped("EXISTS k"), (get.clone(), Shape::Exists));
        assert_eq!(shaped("strlen k"), (get.clone(), Shape::Strlen));
        assert_eq!(shaped("TYPE k"), (get, Shape::Type));
        let absent = Request::Cas {
            key: b"k".to_vec(),
            expected: None,
            new: b"v".to_vec(),
        };
        assert_eq!(shaped("SETNX k v"), (absent.clone(), Shape::Plain));
        assert_eq!(shaped("SET k v NX"), (absent.clone(), Shape::SetNx));
        assert_eq!(shaped("SET k v nx NX"), (absent, Shape::SetNx));
        assert_eq!(
            shaped("UNLINK k"),
            (Request::Del { key: b"k".to_vec() }, Shape::Plain)
        );
        assert_eq!(error_of("SET k v NX XX"), "ERR syntax error");
        assert_eq!(error_of("SET k v EX"), "ERR syntax error");
        assert_eq!(error_of("SET k v FOO"), "ERR syntax error");
        assert!(error_of("SET k v EX 10").contains("SET option EX is not supported yet"));
        assert!(error_of("SET k v XX").contains("not supported yet"));
        assert!(error_of("DEL a b").contains("DEL with more than one key is not supported yet"));
        assert!(error_of("EXISTS a b").contains("not supported yet"));
        assert!(error_of("MGET a b").contains("MGET is not supported yet"));
        assert!(error_of("GETSET a b").contains("not supported yet"));
        assert_eq!(
            error_of("EXISTS"),
            "ERR wrong number of arguments for 'exists' command"
        );
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
        assert_eq!(conn_of("DBSIZE"), Conn::DbSize);
        assert_eq!(conn_of("RESET"), Conn::Reset);
        assert_eq!(conn_of("MULTI"), Conn::Multi);
        assert_eq!(conn_of("EXEC"), Conn::Exec);
        assert_eq!(conn_of("DISCARD"), Conn::Discard);
        assert_eq!(conn_of("WATCH k"), Conn::Watch);
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
