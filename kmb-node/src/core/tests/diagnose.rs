//! Diagnosis: `Replica::blocker` names what a stuck replica waits for.

use super::nack::{nack_primary_elect, short_dvc};
use super::*;

/// Goal (issue 17): a stuck view change names what blocks it — the op, the view, and which
/// DoViewChange senders hold, miss or nack it — so the next liveness failure is diagnosed in
/// minutes; an idle, caught-up replica reports nothing.
#[test]
fn blocker_names_the_op_and_who_holds_misses_or_nacks_it() {
    let (mut r, log) = nack_primary_elect();
    r.step(msg(0, short_dvc(&log)));
    let blocker = r.blocker().expect("a stuck primary-elect says why");
    assert!(
        blocker.starts_with("view 4: primary-elect lacks op 3 (checksum "),
        "{blocker}"
    );
    assert!(
        blocker.contains("held by [], missing (may have acknowledged it) at [1], nacked by [0] (2 nacks truncate it)"),
        "{blocker}"
    );
    let mut net = Net::new(3, config);
    net.request(7, 1, set("k", "v"));
    net.tick(5);
    assert_eq!(net.replica(1).blocker(), None);
}
