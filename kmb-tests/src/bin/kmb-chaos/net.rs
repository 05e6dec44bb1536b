//! The test network: one network namespace per replica, each joined to one bridge in the
//! host namespace by a veth pair, plus the packet filter (nft) and `tc netem` faults inside
//! the namespaces. Everything is made and removed with `ip`, `nft` and `tc`.
//!
//! Names: the bridge is `<prefix>br`, replica `i`'s namespace `<prefix>n<i>` and its
//! host-side veth `<prefix>v<i>` (the namespace side is renamed `eth0`). The prefix ends in
//! the tool's pid, so parallel runs never collide and `--cleanup` can tell a live run's
//! leftovers (its pid is alive) from a dead one's.
//!
//! Addresses: `10.A.B.0/24` with `A.B` from the pid (the next free one if taken); replica `i`
//! is `10.A.B.(i+1)`, the bridge (where the clients run, in the host namespace) `10.A.B.254`.
//! Nothing is routed beyond the bridge.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// Run a command; an error carries its stderr.
pub fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{cmd} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A degraded link (see [`Net::degrade`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkFault {
    pub delay_ms: u32,
    pub jitter_ms: u32,
    pub loss_pct: u32,
    pub duplicate_pct: u32,
    pub reorder_pct: u32,
    /// The rate limit used instead of a delay when the kernel has no `sch_netem`.
    pub rate_kbit: u32,
}

/// The nft table every namespace gets (an input and an output chain, policy accept).
const TABLE: &str = "kmbchaos";

pub struct Net {
    pub prefix: String,
    pub n: usize,
    subnet: (u8, u8),
    made: bool,
}

impl Net {
    pub fn bridge(&self) -> String {
        format!("{}br", self.prefix)
    }

    pub fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.prefix)
    }

    fn veth(&self, i: usize) -> String {
        format!("{}v{i}", self.prefix)
    }

    /// Replica `i`'s address.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet.0, self.subnet.1, i as u8 + 1)
    }

    /// The host side's address (the clients').
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet.0, self.subnet.1, 254)
    }

    /// Make the bridge, the namespaces and the veth pairs. On error, whatever was made is
    /// removed (by `Drop`).
    pub fn create(prefix: &str, n: usize, pid: u32) -> Result<Net, String> {
        let used = run("ip", &["-o", "-4", "addr", "show"])?;
        let mut k = pid;
        let subnet = loop {
            let s = (200 + ((k / 250) % 50) as u8, (k % 250) as u8 + 1);
            if !used.contains(&format!("10.{}.{}.", s.0, s.1)) {
                break s;
            }
            k = k.wrapping_add(1);
        };
        let mut net = Net {
            prefix: prefix.to_string(),
            n,
            subnet,
            made: true,
        };
        net.make()?;
        Ok(net)
    }

    fn make(&mut self) -> Result<(), String> {
        let br = self.bridge();
        run("ip", &["link", "add", &br, "type", "bridge"])?;
        let host = format!("{}/24", self.host_ip());
        run("ip", &["addr", "add", &host, "dev", &br])?;
        run("ip", &["link", "set", &br, "up"])?;
        for i in 0..self.n {
            let ns = self.ns(i);
            let veth = self.veth(i);
            let peer = format!("{}p{i}", self.prefix);
            run("ip", &["netns", "add", &ns])?;
            run(
                "ip",
                &["link", "add", &veth, "type", "veth", "peer", "name", &peer],
            )?;
            run("ip", &["link", "set", &peer, "netns", &ns])?;
            run("ip", &["-n", &ns, "link", "set", &peer, "name", "eth0"])?;
            let addr = format!("{}/24", self.ip(i));
            run("ip", &["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            run("ip", &["link", "set", &veth, "master", &br])?;
            run("ip", &["link", "set", &veth, "up"])?;
            self.nft(i, &["add", "table", "inet", TABLE])?;
            for (chain, hook) in [("input", "input"), ("output", "output")] {
                let spec = format!(
                    "add chain inet {TABLE} {chain} {{ type filter hook {hook} priority 0 ; policy accept ; }}"
                );
                self.nft(i, &[&spec])?;
            }
        }
        Ok(())
    }

    fn nft(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let ns = self.ns(i);
        let mut all = vec!["netns", "exec", &ns, "nft"];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Replica `at` drops every packet from replica `from` (one direction of a partition).
    pub fn drop_from(&self, at: usize, from: usize) -> Result<(), String> {
        let ip = self.ip(from).to_string();
        self.nft(
            at,
            &[
                "add", "rule", "inet", TABLE, "input", "ip", "saddr", &ip, "drop",
            ],
        )?;
        Ok(())
    }

    /// Remove every packet-filter rule (heal all partitions). Idempotent.
    pub fn heal_partitions(&self) -> Result<(), String> {
        let mut first = Ok(());
        for i in 0..self.n {
            for chain in ["input", "output"] {
                if let Err(e) = self.nft(i, &["flush", "chain", "inet", TABLE, chain]) {
                    first = first.and(Err(e));
                }
            }
        }
        first
    }

    fn tc(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let ns = self.ns(i);
        let mut all = vec!["netns", "exec", &ns, "tc"];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Degrade replica `i`'s link (everything it sends, to peers and clients). With the
    /// kernel's `sch_netem`: `tc netem` delay, jitter, loss, duplication, reordering. Without
    /// it (some kernels do not ship it): loss by an nft `numgen random` drop rule (input and
    /// output), duplication by an nft netdev egress `dup to "eth0"` rule, and delay by a `tbf`
    /// rate limit (queueing delay, tail drop past 100 ms); no jitter, no reordering. Returns
    /// what was applied.
    pub fn degrade(&self, i: usize, link: &LinkFault) -> Result<String, String> {
        let netem = [
            "qdisc".to_string(),
            "replace".into(),
            "dev".into(),
            "eth0".into(),
            "root".into(),
            "netem".into(),
            "delay".into(),
            format!("{}ms", link.delay_ms),
            format!("{}ms", link.jitter_ms),
            "loss".into(),
            format!("{}%", link.loss_pct),
            "duplicate".into(),
            format!("{}%", link.duplicate_pct),
            "reorder".into(),
            format!("{}%", link.reorder_pct),
            "50%".into(),
        ];
        let netem: Vec<&str> = netem.iter().map(String::as_str).collect();
        match self.tc(i, &netem) {
            Ok(_) => return Ok(format!("tc {}", netem.join(" "))),
            Err(e) if !e.contains("qdisc kind is unknown") => return Err(e),
            Err(_) => {}
        }
        let mut done = Vec::new();
        let rate = format!("{}kbit", link.rate_kbit);
        self.tc(
            i,
            &[
                "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", &rate, "burst", "16kb",
                "latency", "100ms",
            ],
        )?;
        done.push(format!("tbf rate {rate} latency 100ms"));
        if link.loss_pct > 0 {
            let limit = link.loss_pct.to_string();
            for chain in ["input", "output"] {
                self.nft(
                    i,
                    &[
                        "add", "rule", "inet", TABLE, chain, "numgen", "random", "mod", "100", "<",
                        &limit, "drop",
                    ],
                )?;
            }
            done.push(format!("nft loss {}% each way", link.loss_pct));
        }
        if link.duplicate_pct > 0 {
            let limit = link.duplicate_pct.to_string();
            self.nft(i, &["add", "table", "netdev", TABLE])?;
            self.nft(
                i,
                &[&format!(
                    "add chain netdev {TABLE} egress {{ type filter hook egress device \"eth0\" priority 0 ; }}"
                )],
            )?;
            self.nft(
                i,
                &[
                    "add", "rule", "netdev", TABLE, "egress", "numgen", "random", "mod", "100",
                    "<", &limit, "dup", "to", "\"eth0\"",
                ],
            )?;
            done.push(format!("nft duplicate {}%", link.duplicate_pct));
        }
        Ok(format!(
            "no sch_netem in this kernel: {} (no jitter, no reordering)",
            done.join(", ")
        ))
    }

    /// Undo [`Net::degrade`] on replica `i` (the qdisc, the duplication table and, with
    /// every other rule of the replica's chains, the loss rules). Idempotent.
    pub fn clear_link(&self, i: usize) {
        let _ = self.tc(i, &["qdisc", "del", "dev", "eth0", "root"]);
        let _ = self.nft(i, &["delete", "table", "netdev", TABLE]);
        for chain in ["input", "output"] {
            let _ = self.nft(i, &["flush", "chain", "inet", TABLE, chain]);
        }
    }

    /// Remove the namespaces (killing anything left in them) and the bridge. Idempotent.
    pub fn teardown(&mut self) {
        if !self.made {
            return;
        }
        self.made = false;
        for i in 0..self.n {
            remove_namespace(&self.ns(i));
        }
        let _ = run("ip", &["link", "del", &self.bridge()]);
        for i in 0..self.n {
            let _ = run("ip", &["link", "del", &self.veth(i)]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// SIGKILL every process in namespace `ns`, then delete it.
fn remove_namespace(ns: &str) {
    if let Ok(pids) = run("ip", &["netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            let _ = run("kill", &["-KILL", pid]);
        }
    }
    let _ = run("ip", &["netns", "del", ns]);
}

/// The pid encoded in a name `<base><pid><suffix>` made by this tool, if `name` is one.
fn owner_pid(base: &str, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(base)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let suffix = &rest[digits.len()..];
    let ok = suffix == "br"
        || ["n", "v", "p"].iter().any(|p| {
            suffix
                .strip_prefix(p)
                .is_some_and(|i| !i.is_empty() && i.chars().all(|c| c.is_ascii_digit()))
        });
    if ok {
        digits.parse().ok()
    } else {
        None
    }
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// `--cleanup`: remove namespaces (with their processes), bridges and veths whose names
/// start with `base` followed by the pid of a run that is no longer alive (or of any run,
/// with `force`). Returns what was removed.
pub fn cleanup_leftovers(base: &str, force: bool) -> Vec<String> {
    let mut removed = Vec::new();
    let me = std::process::id();
    let stale =
        |name: &str| owner_pid(base, name).is_some_and(|pid| pid != me && (force || !alive(pid)));
    if let Ok(list) = run("ip", &["netns", "list"]) {
        for line in list.lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            if stale(name) {
                remove_namespace(name);
                removed.push(format!("namespace {name}"));
            }
        }
    }
    if let Ok(list) = run("ip", &["-o", "link", "show"]) {
        for line in list.lines() {
            // "12: kc123v0@if11: <...>" or "13: kc123br: <...>"
            let Some(name) = line.split(':').nth(1) else {
                continue;
            };
            let name = name.trim().split('@').next().unwrap_or("");
            if stale(name) && run("ip", &["link", "del", name]).is_ok() {
                removed.push(format!("link {name}"));
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::owner_pid;

    #[test]
    fn owner_pid_parses_only_our_names() {
        assert_eq!(owner_pid("kc", "kc123br"), Some(123));
        assert_eq!(owner_pid("kc", "kc123n0"), Some(123));
        assert_eq!(owner_pid("kc", "kc123v4"), Some(123));
        assert_eq!(owner_pid("kc", "kc123x"), None);
        assert_eq!(owner_pid("kc", "kc123n"), None);
        assert_eq!(owner_pid("kc", "eth0"), None);
        assert_eq!(owner_pid("kc", "kcbr"), None);
    }
}
