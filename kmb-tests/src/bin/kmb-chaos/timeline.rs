//! The run as an HTML timeline in the VOPR's style: the history and the nemesis actions are
//! turned into the VOPR's trace events and drawn by `kmb_tests::timeline::render_html` (a lane
//! per client, a lane per replica with crashes, restarts and faults, a network lane with the
//! partitions).

use kmb_tests::timeline::render_html;
use kmb_tests::trace::{link_name, EventKind, OpKind, Outcome as TraceOutcome, TraceEvent};
use lincheck::kv::KvInput;

use crate::nemesis::{Action, Applied};
use crate::workload::{Op, Outcome};

/// Successful operations drawn at most (beyond it every k-th one; failed and unknown ones are
/// always drawn), to keep the page small on long runs.
const OK_OPS_DRAWN_MAX: usize = 30_000;

fn kind(input: &KvInput) -> OpKind {
    match input {
        KvInput::Get { .. } => OpKind::Read,
        KvInput::Set { .. } | KvInput::Del { .. } | KvInput::SetAt { .. } => OpKind::Write,
        KvInput::IncrBy { .. }
        | KvInput::Cas { .. }
        | KvInput::Txn { .. }
        | KvInput::Tick { .. } => OpKind::Rmw,
        KvInput::Scan { .. } => OpKind::Scan,
    }
}

fn key(input: &KvInput) -> String {
    match input {
        KvInput::Scan { start, end, .. } => format!("{start}..{end}"),
        other => other.keys().join(","),
    }
}

pub fn render(ops: &[Op], applied: &[Applied], clients: u64, title: &str) -> String {
    let ok_count = ops
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Ok(_)))
        .count();
    let stride = ok_count.div_ceil(OK_OPS_DRAWN_MAX).max(1);
    let mut events: Vec<(u64, EventKind)> = Vec::new();
    let mut nth_ok = 0usize;
    for (request, op) in ops.iter().enumerate() {
        let outcome = match &op.outcome {
            Outcome::Ok(_) => {
                nth_ok += 1;
                if !nth_ok.is_multiple_of(stride) {
                    continue;
                }
                TraceOutcome::Ok
            }
            Outcome::Fail => TraceOutcome::Failed,
            Outcome::Unknown => TraceOutcome::Unknown,
        };
        let (op_number, read) = match &op.outcome {
            Outcome::Ok(r) => (r.op_number, r.read),
            _ => (None, false),
        };
        let (client, request) = (op.worker.min(clients), request as u64);
        events.push((
            op.call,
            EventKind::ClientInvoke {
                client,
                request,
                op: kind(&op.input),
                key: key(&op.input),
            },
        ));
        events.push((
            op.ret,
            EventKind::ClientComplete {
                client,
                request,
                op: kind(&op.input),
                outcome,
                op_number,
                read,
            },
        ));
    }
    for a in applied {
        let (start, end) = (a.start.as_micros() as u64, a.end.as_micros() as u64);
        for &r in &a.replicas {
            let replica = r as u8;
            match a.action {
                Action::KillPrimary | Action::Kill(_) => {
                    events.push((start, EventKind::Crash { replica }));
                    events.push((end, EventKind::Restart { replica }));
                }
                _ => {
                    let kind = if matches!(a.action, Action::Netem { .. }) {
                        "net.degrade"
                    } else {
                        "node.pause"
                    };
                    events.push((
                        start,
                        EventKind::FaultInjected {
                            kind: kind.into(),
                            replica: Some(replica),
                            detail: a.what.clone(),
                        },
                    ));
                    events.push((
                        end,
                        EventKind::FaultInjected {
                            kind: format!("{kind}.healed"),
                            replica: Some(replica),
                            detail: "healed".into(),
                        },
                    ));
                }
            }
        }
        for &(from, to) in &a.links {
            let link = link_name(from as u8, to as u8);
            events.push((start, EventKind::Partition { link: link.clone() }));
            events.push((end, EventKind::Heal { link }));
        }
    }
    events.sort_by_key(|(at, _)| *at);
    let events: Vec<TraceEvent> = events
        .into_iter()
        .enumerate()
        .map(|(seq, (at_us, kind))| TraceEvent {
            seq: seq as u64,
            at_us,
            kind,
        })
        .collect();
    render_html(&events, None, title)
}
