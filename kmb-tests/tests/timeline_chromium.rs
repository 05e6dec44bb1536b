//! Goal: the HTML timeline of a failing seed renders in a real browser with its lanes, the
//! highlighted unplaceable operation and the legend (checked on Chromium's dumped DOM).
#![cfg(not(madsim))]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use kmb_tests::diagnosis::{Classification, Failure};
use kmb_tests::timeline::render_html;
use kmb_tests::trace::{link_name, EventKind, OpKind, Outcome, TraceCollector, TraceFilter};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Polls of 100 ms before the browser is considered hung.
const CHROMIUM_POLLS_MAX: u32 = 600;

/// A 3-replica, 3-client failing trace: a crash with torn writes, a partition, a view change,
/// and a read of "k7" that cannot be placed.
fn failing_trace() -> Vec<kmb_tests::trace::TraceEvent> {
    let mut t = TraceCollector::with_options(4242, TraceFilter::Verbose, 10_000);
    let ms = 1_000;
    for r in 0..3 {
        t.push(
            0,
            EventKind::ViewInstalled {
                replica: r,
                view: 1,
                primary: 0,
            },
        );
    }
    let mut now = 0;
    for i in 0..40u64 {
        now = i * 25 * ms;
        let client = i % 3;
        let key = format!("k{}", i % 8);
        t.push(
            now,
            EventKind::ClientInvoke {
                client,
                request: i,
                op: if i % 2 == 0 {
                    OpKind::Write
                } else {
                    OpKind::Read
                },
                key,
            },
        );
        for r in 0..3 {
            if !((20..28).contains(&i) && r == 2) {
                t.push(
                    now + 5 * ms,
                    EventKind::Commit {
                        replica: r,
                        op: 100 + i,
                        checksum: format!("{:08x}", i * 7919),
                    },
                );
            }
        }
        if i == 18 {
            for s in 0..3 {
                t.push(
                    now + 6 * ms,
                    EventKind::FaultInjected {
                        kind: "disk.crash_torn".into(),
                        replica: Some(2),
                        detail: format!("sector {s}"),
                    },
                );
            }
            t.push(now + 7 * ms, EventKind::Crash { replica: 2 });
        }
        if i == 24 {
            t.push(
                now + 7 * ms,
                EventKind::Partition {
                    link: link_name(0, 1),
                },
            );
            t.push(
                now + 8 * ms,
                EventKind::ViewChangeStarted {
                    replica: 1,
                    view: 2,
                },
            );
            t.push(
                now + 9 * ms,
                EventKind::ViewInstalled {
                    replica: 1,
                    view: 2,
                    primary: 1,
                },
            );
            t.push(
                now + 9 * ms,
                EventKind::ViewInstalled {
                    replica: 2,
                    view: 2,
                    primary: 1,
                },
            );
        }
        if i == 28 {
            t.push(now + 7 * ms, EventKind::Restart { replica: 2 });
            t.push(
                now + 8 * ms,
                EventKind::Heal {
                    link: link_name(0, 1),
                },
            );
        }
        let outcome = if i % 11 == 5 {
            Outcome::Unknown
        } else {
            Outcome::Ok
        };
        t.push(
            now + 12 * ms,
            EventKind::ClientComplete {
                client,
                request: i,
                op: if i % 2 == 0 {
                    OpKind::Write
                } else {
                    OpKind::Read
                },
                outcome,
                op_number: (outcome == Outcome::Ok).then_some(100 + i),
                read: false,
            },
        );
    }
    t.push(
        now + 20 * ms,
        EventKind::FaultInjected {
            kind: "net.corrupt".into(),
            replica: None,
            detail: "frame 812".into(),
        },
    );
    t.push(
        now + 30 * ms,
        EventKind::InvariantViolated {
            name: "linearizability".into(),
            detail: "read of k7 cannot be placed".into(),
        },
    );
    t.snapshot()
}

fn run_chromium(args: &[&str]) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: this test needs a headless browser; run `apt-get install chromium`"
    );
    let mut child = Command::new(CHROMIUM)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromium");
    let mut polls = 0;
    loop {
        if child.try_wait().expect("wait for chromium").is_some() {
            break;
        }
        polls += 1;
        if polls > CHROMIUM_POLLS_MAX {
            let _ = child.kill();
            panic!(
                "chromium did not finish within {} s",
                CHROMIUM_POLLS_MAX / 10
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().expect("chromium output");
    assert!(
        output.status.success(),
        "chromium failed: {:?}",
        output.status
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn timeline_in_chromium_shows_lanes_highlighted_op_and_legend() {
    let failure = Failure {
        checker: "linearizability".into(),
        classification: Classification::Linearizability,
        message: "read of k7 by client 0 cannot be placed".into(),
        replica: None,
        op: Some(139),
        key: Some("k7".into()),
    };
    let html = render_html(&failing_trace(), Some(&failure), "VOPR seed 4242");
    let dir = tempfile::tempdir().expect("temp dir");
    let page = dir.path().join("timeline.html");
    std::fs::write(&page, &html).expect("write page");
    let profile = dir.path().join("profile");
    let profile_arg = format!("--user-data-dir={}", profile.display());
    let url = format!("file://{}", page.display());
    let mut args = vec![
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        profile_arg.as_str(),
    ];
    let mut dump_args = args.clone();
    dump_args.extend(["--dump-dom", url.as_str()]);
    let dom = run_chromium(&dump_args);

    assert!(
        dom.contains(r#"id="timeline""#),
        "no timeline in DOM:\n{dom}"
    );
    assert_eq!(
        dom.matches(r#"class="lane client""#).count(),
        3,
        "client lanes"
    );
    assert_eq!(
        dom.matches(r#"class="lane replica""#).count(),
        3,
        "replica lanes"
    );
    assert_eq!(
        dom.matches(r#"class="op unplaceable""#).count(),
        1,
        "highlighted op"
    );
    assert!(dom.contains(r#"data-key="k7""#));
    assert!(dom.contains(r#"id="legend""#) && dom.contains(r#"data-legend="unplaceable""#));
    assert!(dom.contains(r#"class="fault""#), "fault markers");
    assert!(dom.contains(r#"class="crash""#) && dom.contains(r#"class="restart""#));
    assert!(dom.contains(r#"class="partition""#) && dom.contains(r#"class="violation""#));
    assert!(dom.contains("operation that cannot be placed: client 0 request 39"));

    // One screenshot, kept where a developer can look at it (KMB_TIMELINE_SCREENSHOT=path).
    if let Ok(shot) = std::env::var("KMB_TIMELINE_SCREENSHOT") {
        let shot_arg = format!("--screenshot={shot}");
        args.extend([shot_arg.as_str(), "--window-size=1320,900", url.as_str()]);
        run_chromium(&args);
        assert!(Path::new(&shot).exists(), "no screenshot at {shot}");
    }
}
