//! The client command set: RESP arguments → commands, and state-machine replies → RESP.
//!
//! | command | reply |
//! |---|---|
//! | `SET key value` | `+OK` |
//! | `GET key` | bulk value, or null if absent |
//! | `DEL key` | `:1` if the key existed, else `:0` (one key per command) |
//! | `INCR key` / `INCRBY key delta` | the new value; `-ERR value is not an integer or out of range` if the stored value is not a canonical i64 |
//! | `CAS key IFEQ expected new` | `:1` if the key held `expected` and now holds `new`, else `:0` |
//! | `CAS key IFABSENT new` | `:1` if the key was absent and now holds `new`, else `:0` |
//! | `RANGE start end [LIMIT n]` | flat array `key, value, …` of keys in `[start, end)`, in order, at most `n` (default and cap 1000) |
//! | `PING [message]`, `ECHO message` | `+PONG` / the message (answered locally) |
//! | `KMB.REQ client-id request-number command args…` | `[op-number, reply]` — the session extension (see `client`) |
//!
//! Every key-value command goes through the replicated log, reads included, so each reply is
//! linearizable and has an op number. Connection-management commands that client libraries send
//! on connect (`CLIENT …`, `SELECT 0`, `COMMAND …`, `CONFIG GET …`, `HELLO 2`) get harmless
//! answers so `redis-cli`, `redis-benchmark` and client libraries work.

use crate::kv::{self, Request, SCAN_LIMIT_MAX};
use crate::resp::Value;

/// A parsed client command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// A state-machine command, with the session (client id, request number) if given.
    Kv {
        session: Option<(u128, u64)>,
        request: Request,
    },
    /// Answered by the connection itself.
    Local(Value),
    /// Answer, then close the connection.
    Quit,
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
    let kv = |request: Request| {
        Ok(Command::Kv {
            session: None,
            request,
        })
    };
    match name.as_str() {
        "SET" => {
            arity(2)?;
            kv(Request::Set {
                key: rest[0].clone(),
                value: rest[1].clone(),
            })
        }
        "GET" => {
            arity(1)?;
            kv(Request::Get {
                key: rest[0].clone(),
            })
        }
        "DEL" => {
            arity(1)?;
            kv(Request::Del {
                key: rest[0].clone(),
            })
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
            match parse(&rest[2..])? {
                Command::Kv {
                    session: None,
                    request: inner,
                } => Ok(Command::Kv {
                    session: Some((client, request)),
                    request: inner,
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
            [_] => Err(Value::err("DB index is out of range")),
            _ => Err(arity_error(&name)),
        },
        "CLIENT" | "READONLY" | "READWRITE" => Ok(Command::Local(Value::ok())),
        "COMMAND" | "CONFIG" => Ok(Command::Local(Value::Array(Vec::new()))),
        "HELLO" => match rest.first().map(|v| v.as_slice()) {
            None | Some(b"2") => Ok(Command::Local(Value::Array(vec![
                Value::Bulk(b"server".to_vec()),
                Value::Bulk(b"kmb".to_vec()),
                Value::Bulk(b"proto".to_vec()),
                Value::Integer(2),
            ]))),
            Some(_) => Err(Value::Error("NOPROTO unsupported protocol version".into())),
        },
        _ => {
            let preview: Vec<String> = rest
                .iter()
                .take(3)
                .map(|a| format!("'{}'", String::from_utf8_lossy(a)))
                .collect();
            Err(Value::err(format!(
                "unknown command '{}', with args beginning with: {}",
                String::from_utf8_lossy(&args[0]),
                preview.join(" ")
            )))
        }
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
        assert!(error_of("FLUSHALL x").starts_with("ERR unknown command 'FLUSHALL'"));
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
                request: Request::Del { key: b"k".to_vec() }
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
}
