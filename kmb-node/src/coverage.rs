//! Coverage marks: named rare paths of the protocol, storage and client handling. A
//! [`mark!`](crate::mark) at such a path records, in simulation only, that it ran; the VOPR
//! reports per seed which marks were hit (`SeedRecord::marks`) and `vopr --coverage` prints,
//! per mark, how many seeds of a sweep hit it — so a path no seed reaches shows as zero
//! instead of looking like a path that works. In production `mark!` expands to nothing.
//!
//! Every mark used in the source is listed here with what it means, and every listed mark is
//! used (a unit test reads the source to hold both directions).

/// Every coverage mark: (name, the path it marks).
pub const MARKS: &[(&str, &str)] = &[
    (
        "view_change_log_view_beats_length",
        "a new primary chose a DoViewChange log with the highest log_view over a longer one",
    ),
    (
        "view_change_late_dvc",
        "a DoViewChange arrived after the primary-elect had installed the view's log",
    ),
    (
        "nack_truncation",
        "the primary-elect truncated uncommitted ops a quorum nacked",
    ),
    (
        "nack_by_log_view",
        "a nack truncation needed a vote whose log_view is older than the chosen entry's view",
    ),
    (
        "state_transfer_installed",
        "a replica installed a peer's checkpoint (state transfer)",
    ),
    (
        "checkpoint_repair_requested",
        "a replica asked peers for a checkpoint to replace its own unreadable one",
    ),
    (
        "repair_entry_accepted",
        "a replica accepted a repaired entry (missing or faulty) from a peer",
    ),
    (
        "stale_prepare",
        "a Prepare of an older view reached a replica that had moved on",
    ),
    (
        "stale_do_view_change",
        "a DoViewChange of an older view reached a replica that had moved on",
    ),
    (
        "stale_start_view",
        "a StartView of an older view reached a replica that had moved on",
    ),
    (
        "stale_other",
        "another view-stamped message of an older view reached a replica that had moved on",
    ),
    (
        "view_jump_clamped",
        "a message too many views ahead started a view change to the furthest view allowed",
    ),
    (
        "client_evicted",
        "the client table was full and evicted its least recently committed client",
    ),
    (
        "session_evicted_reply",
        "a request of a client the table does not hold was answered `session evicted`",
    ),
    (
        "duplicate_request_cached_reply",
        "a retried request already executed was answered from the client table",
    ),
    (
        "client_request_queued",
        "the primary (or primary-elect) held a client request it could not order yet",
    ),
    (
        "deposed_primary_redirects",
        "a primary that lost its view redirected its uncommitted requests to the new primary",
    ),
    (
        "primary_stepped_down",
        "a primary that heard from no quorum for a view-change timeout stepped down",
    ),
    (
        "timestamp_kept_from_predecessor",
        "a primary whose clock was behind its log's last timestamp stamped that timestamp (cluster time never goes back)",
    ),
    (
        "key_expired",
        "a key's expiry time passed and the op that reached it removed the key",
    ),
    (
        "read_served_without_entry",
        "the primary served a read from its state after a quorum round, with no log entry",
    ),
    (
        "read_through_log",
        "a read went through the log (TTL, or a key it reads was due to expire)",
    ),
    (
        "read_came_due",
        "a key a waiting read reads came due before its round confirmed: ordered through the log",
    ),
    (
        "reads_redirected",
        "a primary that stopped serving redirected the reads waiting for their round",
    ),
    (
        "transaction_aborted_by_watch",
        "a transaction (EXEC) did not run because a watched key's version had moved",
    ),
    (
        "stale_client_request",
        "a client request older than the client's latest executed one reached the primary late",
    ),
    (
        "request_too_large",
        "a client request over the size limit was refused at admission",
    ),
    (
        "recovery_faulty_ops",
        "storage recovery found committed-range ops unreadable (to repair from peers)",
    ),
    (
        "recovery_superblock_copy_bad",
        "storage recovery found a superblock copy blank, corrupt or stale",
    ),
    (
        "recovery_checkpoint_faulty",
        "storage recovery found the referenced checkpoint unreadable",
    ),
    (
        "wal_ring_wrapped",
        "the WAL ring wrapped: an op was written over an older op's slot",
    ),
    (
        "older_view_version_replaces_newer",
        "an older view's version of an op replaced a newer one (its slot's header blanked first)",
    ),
    (
        "append_during_checkpoint",
        "an op was written while a checkpoint was being stored alongside the appends",
    ),
    (
        "checkpoint_finished_inline",
        "a truncation, superblock write or stop completed the checkpoint in progress first",
    ),
];

/// Whether `name` is a listed mark.
pub fn is_mark(name: &str) -> bool {
    MARKS.iter().any(|(n, _)| *n == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every `mark!("…")` in the crate's source, by name.
    fn used_marks() -> BTreeSet<String> {
        fn walk(dir: &std::path::Path, found: &mut BTreeSet<String>) {
            for entry in std::fs::read_dir(dir).expect("read src") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    walk(&path, found);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("read file");
                    for piece in text.split("mark!(\"").skip(1) {
                        let name: String = piece
                            .chars()
                            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                            .collect();
                        if !name.is_empty() && piece[name.len()..].starts_with('"') {
                            found.insert(name);
                        }
                    }
                }
            }
        }
        let mut found = BTreeSet::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        found
    }

    /// Goal: the list and the source agree — no mark used without a meaning, none listed and
    /// never placed (which would show as a path no seed reaches).
    #[test]
    fn every_mark_is_listed_and_every_listed_mark_is_used() {
        let used = used_marks();
        let listed: BTreeSet<String> = MARKS.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(listed.len(), MARKS.len(), "a mark is listed twice");
        let unlisted: Vec<_> = used.difference(&listed).collect();
        let unused: Vec<_> = listed.difference(&used).collect();
        assert!(unlisted.is_empty(), "used but not listed: {unlisted:?}");
        assert!(unused.is_empty(), "listed but never placed: {unused:?}");
    }
}
