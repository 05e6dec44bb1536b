//! A picture of a failing seed: one self-contained HTML file (inline CSS and SVG, no script, no
//! external URL) with a lane per client (operations as invoke→complete intervals, coloured by
//! outcome), a lane per replica (view bands, commit ticks, down time, crashes, restarts, state
//! transfers, faults), a network lane (partitions, drops), the violation as a vertical
//! line, and the operation the failure is about highlighted (`class="op unplaceable"`).
//!
//! Stable hooks for tests and tools: `id="timeline"` (the SVG), `id="legend"`, `id="failure"`,
//! `id="events"`; lanes `class="lane client"` / `class="lane replica"` / `class="lane network"`;
//! marks `class="op ok|failed|unknown|open"`, `class="op unplaceable"`, `class="view"`,
//! `class="commit"`, `class="down"`, `class="crash"`, `class="restart"`, `class="fault"`,
//! `class="partition"`, `class="violation"`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::analyzer::{ClientOp, TraceAnalyzer};
use crate::diagnosis::{failing_op, Failure};
use crate::trace::{format_us, EventKind, Outcome, TraceEvent};

/// Width of the time axis, px.
const PLOT_WIDTH_PX: f64 = 1100.0;
/// Width of the lane labels, px.
const LABEL_WIDTH_PX: f64 = 130.0;
const CLIENT_LANE_PX: f64 = 22.0;
const REPLICA_LANE_PX: f64 = 40.0;
const NETWORK_LANE_PX: f64 = 22.0;
const AXIS_PX: f64 = 26.0;
/// Events listed in the table under the picture.
const EVENT_ROWS_MAX: usize = 60;

/// Escape text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
body { font: 13px/1.4 system-ui, sans-serif; margin: 16px; color: #1d232b; background: #fff; }
h1 { font-size: 18px; margin: 0 0 8px; }
#failure { border: 2px solid #c0262d; background: #fff3f3; padding: 8px 12px; margin-bottom: 12px; }
#failure .class { font-weight: bold; color: #c0262d; }
#failure pre { white-space: pre-wrap; margin: 4px 0 0; }
#legend { display: flex; flex-wrap: wrap; gap: 14px; margin: 8px 0 12px; }
.legend-item { display: inline-flex; align-items: center; gap: 5px; }
.swatch { display: inline-block; width: 22px; height: 12px; border: 1px solid #555; }
svg#timeline { border: 1px solid #ccd; background: #fbfbfd; }
.lane-bg { fill: #f3f4f8; }
.lane-bg.odd { fill: #ffffff; }
.lane-label { font: 12px monospace; fill: #1d232b; }
.axis line { stroke: #99a; } .axis text { font: 10px monospace; fill: #556; }
rect.op { stroke: #234; stroke-width: 0.5; }
rect.op.ok, .swatch.ok { fill: #3aa35a; background: #3aa35a; }
rect.op.failed, .swatch.failed { fill: #8a8f99; background: #8a8f99; }
rect.op.unknown, .swatch.unknown { fill: #f0b429; background: #f0b429; }
rect.op.open, .swatch.open { fill: #b9c2d0; background: #b9c2d0; }
rect.op.unplaceable, .swatch.unplaceable { fill: #e0245e; background: #e0245e; stroke: #000; stroke-width: 2.5; }
rect.view { fill-opacity: 0.35; stroke: none; }
rect.view.v0, .swatch.view { fill: #9fc5f8; background: #9fc5f8; }
rect.view.v1 { fill: #b4a7d6; }
text.view-label { font: 9px monospace; fill: #334; }
rect.down, .swatch.down { fill: #555; fill-opacity: 0.45; background: #999; }
line.commit, .swatch.commit { stroke: #1b5e20; stroke-width: 1; background: #1b5e20; }
line.commit.failing { stroke: #e0245e; stroke-width: 3; }
path.crash, .swatch.crash { fill: #000; background: #000; }
path.restart, .swatch.restart { fill: #1565c0; background: #1565c0; }
path.fault, .swatch.fault { fill: #d32f2f; background: #d32f2f; }
path.transfer, .swatch.transfer { fill: #6a1b9a; background: #6a1b9a; }
rect.partition, .swatch.partition { fill: #d32f2f; fill-opacity: 0.25; stroke: #d32f2f; stroke-dasharray: 3 2; background: #f4b6b6; }
line.violation, .swatch.violation { stroke: #e0245e; stroke-width: 2; stroke-dasharray: 6 3; background: #e0245e; }
table#events { border-collapse: collapse; margin-top: 14px; font: 12px monospace; }
table#events td { padding: 1px 8px; border-bottom: 1px solid #eee; }
table#events tr.fault td { color: #b71c1c; } table#events tr.violation td { color: #e0245e; font-weight: bold; }
"#;

struct Scale {
    t0: u64,
    span: f64,
}

impl Scale {
    fn x(&self, at_us: u64) -> f64 {
        let frac = at_us.saturating_sub(self.t0) as f64 / self.span;
        LABEL_WIDTH_PX + frac * PLOT_WIDTH_PX
    }
}

fn outcome_class(op: &ClientOp) -> &'static str {
    match op.outcome {
        Some(Outcome::Ok) => "ok",
        Some(Outcome::Failed) => "failed",
        Some(Outcome::Unknown) => "unknown",
        None => "open",
    }
}

/// A small marker path (triangle / cross / diamond) centred at `(x, y)`.
fn marker(out: &mut String, class: &str, x: f64, y: f64, title: &str) {
    let d = match class {
        "crash" => format!(
            "M{:.1} {:.1} l8 8 l-2 2 l-3-3 l-3 3 l-2-2 l3-3 l-3-3 l2-2 z",
            x - 1.0,
            y - 6.0
        ),
        "restart" => format!("M{x:.1} {:.1} l6 10 h-12 z", y - 5.0),
        "fault" => format!("M{x:.1} {:.1} l5 8 h-10 z", y - 4.0),
        _ => format!("M{x:.1} {:.1} l4 4 l-4 4 l-4 -4 z", y - 4.0),
    };
    let _ = writeln!(
        out,
        r#"<path class="{class}" d="{d}"><title>{}</title></path>"#,
        escape_html(title)
    );
}

/// Render the HTML page. See the module docs.
pub fn render_html(events: &[TraceEvent], failure: Option<&Failure>, title: &str) -> String {
    let a = TraceAnalyzer::new(events);
    let t0 = a.start_us();
    let t1 = a.end_us().max(t0 + 1);
    let scale = Scale {
        t0,
        span: (t1 - t0) as f64,
    };
    let ops = a.client_ops();
    let failing = failure.and_then(|f| failing_op(events, f));
    let is_failing = |op: &ClientOp| {
        failing
            .as_ref()
            .is_some_and(|f| f.client == op.client && f.invoke_seq == op.invoke_seq)
    };
    let clients: Vec<u64> = a.clients().into_iter().collect();
    let replicas: Vec<u8> = a.replicas().into_iter().collect();

    let height = AXIS_PX
        + clients.len() as f64 * CLIENT_LANE_PX
        + replicas.len() as f64 * REPLICA_LANE_PX
        + NETWORK_LANE_PX
        + 10.0;
    let width = LABEL_WIDTH_PX + PLOT_WIDTH_PX + 50.0;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}">"#
    );

    // Axis.
    svg.push_str(r#"<g class="axis">"#);
    for i in 0..=10u64 {
        let at = t0 + (t1 - t0) * i / 10;
        let x = scale.x(at);
        let _ = write!(
            svg,
            r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{height:.1}" stroke-opacity="0.25"/><text x="{x:.1}" y="14" text-anchor="middle">{}</text>"#,
            AXIS_PX - 6.0,
            format_us(at)
        );
    }
    svg.push_str("</g>\n");

    let mut y = AXIS_PX;
    let mut lane_index = 0usize;
    let lane_bg = |svg: &mut String, y: f64, h: f64, index: usize, label: &str| {
        let odd = if index % 2 == 1 { " odd" } else { "" };
        let _ = writeln!(
            svg,
            r#"<rect class="lane-bg{odd}" x="0" y="{y:.1}" width="{width:.0}" height="{h:.1}"/><text class="lane-label" x="6" y="{:.1}">{}</text>"#,
            y + h / 2.0 + 4.0,
            escape_html(label)
        );
    };

    // Client lanes.
    for &client in &clients {
        let _ = writeln!(svg, r#"<g class="lane client" data-client="{client}">"#);
        lane_bg(
            &mut svg,
            y,
            CLIENT_LANE_PX,
            lane_index,
            &format!("client {client}"),
        );
        for op in ops.iter().filter(|op| op.client == client) {
            let x0 = scale.x(op.invoke_us);
            let x1 = scale.x(op.end_us(t1)).max(x0 + 2.0);
            let class = if is_failing(op) {
                "op unplaceable".to_string()
            } else {
                format!("op {}", outcome_class(op))
            };
            let label = if is_failing(op) {
                format!("CANNOT BE PLACED: {}", op.describe())
            } else {
                op.describe()
            };
            let _ = writeln!(
                svg,
                r#"<rect class="{class}" data-key="{}" data-request="{}" data-outcome="{}" x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="2"><title>{}</title></rect>"#,
                escape_html(&op.key),
                op.request,
                outcome_class(op),
                y + 3.0,
                x1 - x0,
                CLIENT_LANE_PX - 6.0,
                escape_html(&label)
            );
        }
        svg.push_str("</g>\n");
        y += CLIENT_LANE_PX;
        lane_index += 1;
    }

    // Replica lanes.
    for &replica in &replicas {
        let _ = writeln!(svg, r#"<g class="lane replica" data-replica="{replica}">"#);
        lane_bg(
            &mut svg,
            y,
            REPLICA_LANE_PX,
            lane_index,
            &format!("replica {replica}"),
        );
        let views = a.views_of(replica);
        for (i, (from, view, primary)) in views.iter().enumerate() {
            let to = views.get(i + 1).map_or(t1, |v| v.0);
            let x0 = scale.x(*from);
            let x1 = scale.x(to).max(x0 + 1.0);
            let role = if *primary == replica {
                "primary"
            } else {
                "backup"
            };
            let _ = writeln!(
                svg,
                r#"<rect class="view v{}" data-view="{view}" x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}"><title>view {view} (primary {primary}) from {}</title></rect><text class="view-label" x="{:.1}" y="{:.1}">v{view} {role}</text>"#,
                view % 2,
                y + 2.0,
                x1 - x0,
                REPLICA_LANE_PX - 4.0,
                format_us(*from),
                x0 + 2.0,
                y + 11.0
            );
        }
        for d in a.downtimes(Some(replica)) {
            let x0 = scale.x(d.crash_us);
            let x1 = scale.x(d.restart_us.unwrap_or(t1)).max(x0 + 1.0);
            let _ = writeln!(
                svg,
                r#"<rect class="down" x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}"><title>replica {replica} down {}..{}</title></rect>"#,
                y + 2.0,
                x1 - x0,
                REPLICA_LANE_PX - 4.0,
                format_us(d.crash_us),
                d.restart_us.map(format_us).unwrap_or_else(|| "end".into())
            );
        }
        let mid = y + REPLICA_LANE_PX / 2.0 + 4.0;
        for e in events.iter().filter(|e| e.kind.replica() == Some(replica)) {
            let x = scale.x(e.at_us);
            let text = e.to_string();
            match &e.kind {
                EventKind::Commit { op, .. } => {
                    let highlight = failure.and_then(|f| f.op) == Some(*op);
                    let class = if highlight {
                        "commit failing"
                    } else {
                        "commit"
                    };
                    let _ = writeln!(
                        svg,
                        r#"<line class="{class}" data-op="{op}" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}"><title>{}</title></line>"#,
                        y + 14.0,
                        y + REPLICA_LANE_PX - 3.0,
                        escape_html(&text)
                    );
                }
                EventKind::Crash { .. } => marker(&mut svg, "crash", x, mid, &text),
                EventKind::Restart { .. } => marker(&mut svg, "restart", x, mid, &text),
                EventKind::StateTransfer { .. } => marker(&mut svg, "transfer", x, mid, &text),
                EventKind::FaultInjected { .. } => marker(&mut svg, "fault", x, y + 8.0, &text),
                _ => {}
            }
        }
        svg.push_str("</g>\n");
        y += REPLICA_LANE_PX;
        lane_index += 1;
    }

    // Network lane: partitions as bands, other faults without a replica as markers.
    svg.push_str("<g class=\"lane network\">\n");
    lane_bg(&mut svg, y, NETWORK_LANE_PX, lane_index, "network");
    let mut open: BTreeMap<&str, u64> = BTreeMap::new();
    let mut bands: Vec<(&str, u64, Option<u64>)> = Vec::new();
    for e in events {
        match &e.kind {
            EventKind::Partition { link } => {
                open.entry(link.as_str()).or_insert(e.at_us);
            }
            EventKind::Heal { link } => {
                if let Some(from) = open.remove(link.as_str()) {
                    bands.push((link, from, Some(e.at_us)));
                }
            }
            _ => {}
        }
    }
    bands.extend(open.into_iter().map(|(l, t)| (l, t, None)));
    for (link, from, to) in bands {
        let x0 = scale.x(from);
        let x1 = scale.x(to.unwrap_or(t1)).max(x0 + 1.0);
        let _ = writeln!(
            svg,
            r#"<rect class="partition" data-link="{}" x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}"><title>partition {} {}..{}</title></rect>"#,
            escape_html(link),
            y + 3.0,
            x1 - x0,
            NETWORK_LANE_PX - 6.0,
            escape_html(link),
            format_us(from),
            to.map(format_us).unwrap_or_else(|| "never healed".into())
        );
    }
    for e in events
        .iter()
        .filter(|e| e.kind.is_fault() && e.kind.replica().is_none())
        .filter(|e| !matches!(e.kind, EventKind::Partition { .. }))
    {
        marker(&mut svg, "fault", scale.x(e.at_us), y + 8.0, &e.to_string());
    }
    svg.push_str("</g>\n");

    if let Some(v) = a.first_violation() {
        let x = scale.x(v.at_us);
        let _ = writeln!(
            svg,
            r#"<line class="violation" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{height:.1}"><title>{}</title></line>"#,
            AXIS_PX - 6.0,
            escape_html(&v.to_string())
        );
    }
    svg.push_str("</svg>\n");

    // The page.
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape_html(title),
        escape_html(title)
    );
    if let Some(f) = failure {
        let mut focus = Vec::new();
        if let Some(r) = f.replica {
            focus.push(format!("replica {r}"));
        }
        if let Some(op) = f.op {
            focus.push(format!("op {op}"));
        }
        if let Some(k) = &f.key {
            focus.push(format!("key {k}"));
        }
        let _ = writeln!(
            html,
            r#"<div id="failure"><span class="class">{}</span> — checker <code>{}</code>{}<pre>{}</pre>{}</div>"#,
            escape_html(f.classification.title()),
            escape_html(&f.checker),
            if focus.is_empty() {
                String::new()
            } else {
                format!(" — {}", escape_html(&focus.join(", ")))
            },
            escape_html(&f.message),
            failing
                .as_ref()
                .map(|op| format!(
                    "<div class=\"unplaceable-op\">operation that cannot be placed: {}</div>",
                    escape_html(&op.describe())
                ))
                .unwrap_or_default()
        );
    }
    html.push_str("<div id=\"legend\">\n");
    for (class, label) in [
        ("ok", "op ok"),
        ("unknown", "op unknown outcome"),
        ("failed", "op failed"),
        ("open", "op never completed"),
        ("unplaceable", "op that cannot be placed"),
        ("view", "view (band per view)"),
        ("commit", "commit"),
        ("down", "replica down"),
        ("crash", "crash"),
        ("restart", "restart"),
        ("fault", "fault injected"),
        ("transfer", "state transfer"),
        ("partition", "partition"),
        ("violation", "violation"),
    ] {
        let _ = writeln!(
            html,
            r#"<span class="legend-item" data-legend="{class}"><span class="swatch {class}"></span>{label}</span>"#
        );
    }
    html.push_str("</div>\n");
    html.push_str(&svg);

    // The events nearest the failure.
    let at_us = a.first_violation().map_or(t1, |v| v.at_us);
    let up_to: Vec<&TraceEvent> = a
        .between(0, at_us)
        .iter()
        .filter(|e| !e.kind.is_high_volume() || matches!(e.kind, EventKind::NetDrop { .. }))
        .collect();
    html.push_str("<table id=\"events\">\n<tr><th>#</th><th>time</th><th>event</th></tr>\n");
    for e in up_to
        .iter()
        .skip(up_to.len().saturating_sub(EVENT_ROWS_MAX))
    {
        let class = if matches!(e.kind, EventKind::InvariantViolated { .. }) {
            "violation"
        } else if e.kind.is_fault() {
            "fault"
        } else {
            "event"
        };
        let _ = writeln!(
            html,
            r#"<tr class="{class}"><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            e.seq,
            format_us(e.at_us),
            escape_html(&e.kind.to_string())
        );
    }
    html.push_str("</table>\n</body>\n</html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::tests::story;
    use crate::diagnosis::Classification;

    fn lin_failure() -> Failure {
        Failure {
            checker: "linearizability".into(),
            classification: Classification::Linearizability,
            message: "read of k7 returned <old> & cannot be placed".into(),
            replica: None,
            op: Some(58),
            key: Some("k7".into()),
        }
    }

    #[test]
    fn render_html_has_lanes_highlight_and_legend() {
        let html = render_html(&story(), Some(&lin_failure()), "seed 9 <lin>");
        assert!(html.contains(r#"<svg id="timeline""#));
        assert_eq!(html.matches(r#"class="lane client""#).count(), 3);
        assert_eq!(html.matches(r#"class="lane replica""#).count(), 3);
        assert_eq!(html.matches(r#"class="op unplaceable""#).count(), 1);
        assert!(html.contains(r#"class="fault""#));
        assert!(html.contains(r#"class="crash""#));
        assert!(html.contains(r#"class="partition""#));
        assert!(html.contains(r#"class="violation""#));
        assert!(html.contains(r#"id="legend""#));
        assert!(html.contains("seed 9 &lt;lin&gt;"));
        assert!(html.contains("returned &lt;old&gt; &amp; cannot"));
    }

    #[test]
    fn render_html_is_self_contained() {
        let html = render_html(&story(), Some(&lin_failure()), "t");
        assert!(!html.contains("<script"));
        assert!(!html.contains("http://") || html.matches("http://").count() == 1); // the SVG namespace only
        assert!(!html.contains("https://"));
        assert!(!html.contains("<link"));
    }

    #[test]
    fn render_html_without_failure_or_events() {
        let html = render_html(&[], None, "empty");
        assert!(html.contains(r#"id="timeline""#));
        assert!(!html.contains(r#"class="op unplaceable""#));
        let html = render_html(&story(), None, "no failure");
        assert!(!html.contains(r#"class="op unplaceable""#));
    }
}
