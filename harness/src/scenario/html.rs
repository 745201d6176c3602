//! `--report html FILE`: one self-contained page per run for a person (a CI artefact, a link in
//! a review): what the terminal report says, drawn for reading: the verdict, the drift table, the
//! step × node latency table, the invariants of the history, the cluster events, the created-on
//! × read-on matrix, each node's latency over time with the faults (restarts) drawn as labelled
//! bands and failed requests marked apart, and the failures. No script, no external file: inline
//! CSS and an inline SVG drawn with plotters.

use std::fmt::Write;

use plotters::prelude::*;

use super::report::{Outcome, RunReport};

/// Colours of node-1, node-2, … in the timeline.
pub(crate) const NODE_COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];

/// The page for every report of a run (`bffctl run scenarios/` writes several).
pub fn html(reports: &[RunReport]) -> String {
    let mut page = page_head("bffctl report");
    for report in reports {
        section(&mut page, report);
    }
    page.push_str("</body></html>\n");
    page
}

/// The top of every bffctl page: its title and the shared inline style.
pub(crate) fn page_head(title: &str) -> String {
    let mut page = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>TITLE</title>\n<style>\n\
         body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}\n\
         h1{font-size:1.4em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}\n\
         .verdict{padding:.6em 1em;border-radius:6px;font-weight:600}\n\
         .pass{background:#e6f4ea;color:#137333} .fail{background:#fce8e6;color:#a50e0e}\n\
         table{border-collapse:collapse;margin:.8em 0;font-size:.9em;display:block;max-width:100%;overflow-x:auto} td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}\n\
         th{background:#f5f5f5} td.odd,td.bad{background:#fce8e6;color:#a50e0e;font-weight:600} td.good{background:#e6f4ea}\n\
         .meta{color:#666} pre{background:#f8f8f8;padding:.6em;overflow-x:auto;font-size:.8em}\n\
         </style></head><body>\n<h1>TITLE</h1>\n",
    );
    page = page.replace("TITLE", &esc(title));
    page
}

fn section(page: &mut String, r: &RunReport) {
    let class = if r.passed { "pass" } else { "fail" };
    let _ = write!(
        page,
        "<h2>{}</h2>\n<p class=\"meta\">{} · {} node(s) on {} · {} user(s) × {} iteration(s) · {:.1} s · seed {}</p>\n\
         <p class=\"verdict {class}\">{}</p>\n",
        esc(&r.scenario),
        esc(&r.description),
        r.nodes,
        esc(&r.backend),
        r.users,
        r.iterations,
        r.duration_s,
        r.seed,
        esc(&r.verdict)
    );
    if let Some(drift) = &r.drift {
        if drift.skipped {
            let _ = writeln!(page, "<p>Drift check skipped: {}</p>", esc(&drift.problems.join("; ")));
        } else {
            let _ = write!(page, "<h3>Settings across nodes</h3>\n<table><tr><th>setting</th>");
            for node in &drift.nodes {
                let _ = write!(page, "<th>{}</th>", esc(node));
            }
            page.push_str("</tr>\n");
            for row in &drift.rows {
                let _ = write!(page, "<tr><td>{}</td>", esc(&row.setting));
                for i in 0..row.values.len() {
                    let (shown, odd) = row.shown(i);
                    let class = if odd { " class=\"odd\"" } else { "" };
                    let _ = write!(page, "<td{class}>{}{}</td>", if odd { "≠ " } else { "" }, esc(&shown));
                }
                page.push_str("</tr>\n");
            }
            page.push_str("</table>\n");
            for problem in &drift.problems {
                let _ = writeln!(page, "<p>{}</p>", esc(problem));
            }
        }
    }
    if !r.skipped.is_empty() {
        let _ = writeln!(page, "<p class=\"meta\">Skipped: {}</p>", esc(&r.skipped.join("; ")));
    }
    steps_table(page, r);
    invariants_table(page, r);
    cluster_events(page, r);
    if let Some(matrix) = &r.matrix {
        let _ = write!(
            page,
            "<h3>Sessions read (ok/asked) by the node that created them</h3>\n<table><tr><th>created on \\ read on</th>"
        );
        for node in &matrix.nodes {
            let _ = write!(page, "<th>{}</th>", esc(node));
        }
        page.push_str("</tr>\n");
        for (created, row) in matrix.cells.iter().enumerate() {
            let _ = write!(page, "<tr><th>{}</th>", esc(&matrix.nodes[created]));
            for cell in row {
                let (class, text) = match cell.total {
                    0 => ("", "-".to_owned()),
                    _ if cell.ok == cell.total => ("good", format!("{}/{}", cell.ok, cell.total)),
                    _ => ("bad", format!("{}/{}", cell.ok, cell.total)),
                };
                let _ = write!(page, "<td class=\"{class}\">{text}</td>");
            }
            page.push_str("</tr>\n");
        }
        page.push_str("</table>\n");
        if let Some(diagnosis) = &matrix.diagnosis {
            let _ = writeln!(page, "<p><strong>Diagnosis:</strong> {}</p>", esc(diagnosis));
        }
    }
    if !r.records.is_empty() {
        let _ = writeln!(
            page,
            "<h3>Latency per node over time</h3>\n<p class=\"meta\">Each dot is one answered request, coloured by \
             the node that served it; failed requests are red crosses, unavailable ones grey triangles (at the \
             time they gave up); shaded bands are cluster steps and faults, labelled above the plot.</p>\n{}",
            timeline(r)
        );
    }
    if !r.failures.is_empty() {
        page.push_str("<h3>Failures</h3>\n<table><tr><th>count</th><th>step</th><th>node</th><th>status</th><th>what was wrong</th><th>request id · traceparent (first)</th></tr>\n");
        for f in &r.failures {
            let status = f.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{status}</td><td>{}</td><td><code>{}</code><br><code>{}</code></td></tr>",
                f.count,
                esc(&f.step),
                esc(&f.node),
                esc(&f.detail),
                esc(f.request_id.as_deref().unwrap_or("-")),
                esc(f.traceparent.as_deref().unwrap_or("-"))
            );
        }
        page.push_str("</table>\n");
    }
    for log in &r.node_logs {
        let path = log.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        let _ = writeln!(
            page,
            "<h3>{} log</h3><p class=\"meta\">{}{}</p><pre>{}</pre>",
            esc(&log.node),
            log.reason.as_deref().map(|r| format!("{}; ", esc(r))).unwrap_or_default(),
            esc(&path),
            esc(&log.last_lines.join("\n"))
        );
    }
}

/// The step × node table of the terminal report, and each step over all nodes.
fn steps_table(page: &mut String, r: &RunReport) {
    if r.rows.is_empty() {
        return;
    }
    page.push_str(
        "<h3>Requests per step and node</h3>\n<table><tr><th>step</th><th>node</th><th>requests</th><th>ok</th>\
         <th>failed</th><th>unavailable</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th></tr>\n",
    );
    for row in &r.rows {
        let failed = if row.failed > 0 { " class=\"bad\"" } else { "" };
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td{failed}>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td></tr>",
            esc(&row.step),
            esc(&row.node),
            row.requests,
            row.ok,
            row.failed,
            row.unavailable,
            row.p50_ms,
            row.p95_ms,
            row.p99_ms
        );
    }
    page.push_str("</table>\n");
    if !r.steps.is_empty() {
        page.push_str(
            "<table><tr><th>step (all nodes)</th><th>answered</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th></tr>\n",
        );
        for step in &r.steps {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td></tr>",
                esc(&step.step),
                step.requests,
                step.p50_ms,
                step.p95_ms,
                step.p99_ms
            );
        }
        page.push_str("</table>\n");
    }
}

/// The invariants read off the whole history: pass, fail or not checked, and why.
fn invariants_table(page: &mut String, r: &RunReport) {
    if r.invariants.is_empty() {
        return;
    }
    page.push_str(
        "<h3>Invariants of the history</h3>\n<table><tr><th>invariant</th><th>checked</th><th>violations</th>\
         <th>result</th><th>detail</th></tr>\n",
    );
    for invariant in &r.invariants {
        let (class, result) = match invariant.passed {
            Some(true) => ("good", "pass"),
            Some(false) => ("bad", "FAIL"),
            None => ("", "not checked"),
        };
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{result}</td><td>{}</td></tr>",
            esc(invariant.name),
            invariant.checked,
            invariant.violations,
            esc(&invariant.detail.join("; "))
        );
    }
    page.push_str("</table>\n");
}

/// What the runner did to the cluster, and what each fault cost.
fn cluster_events(page: &mut String, r: &RunReport) {
    if r.cluster_events.is_empty() && r.outages.is_empty() {
        return;
    }
    page.push_str("<h3>Cluster events</h3>\n<ul>\n");
    for event in &r.cluster_events {
        let _ = writeln!(page, "<li>{}</li>", esc(event));
    }
    page.push_str("</ul>\n");
    if !r.outages.is_empty() {
        page.push_str("<table><tr><th>fault</th><th>unavailable requests</th><th>outage ms</th></tr>\n");
        for outage in &r.outages {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{:.0}</td></tr>",
                esc(&outage.fault),
                outage.unavailable,
                outage.span_ms
            );
        }
        page.push_str("</table>\n");
    }
}

/// Text on the plot, large enough to read where the page is shown at its width.
const PLOT_TEXT: (&str, u32) = ("sans-serif", 16);

/// Per-node latency over the run as an SVG: one series per node, failed and unavailable requests
/// marked apart, fault windows as labelled bands, the time axis to the end of the run.
fn timeline(r: &RunReport) -> String {
    let mut svg = String::new();
    {
        let end_s = r
            .records
            .iter()
            .map(|x| (x.at_ms + x.latency_ms) / 1000.0)
            .chain(r.faults.iter().map(|f| f.end_ms / 1000.0))
            .chain(std::iter::once(r.duration_s))
            .fold(0.1_f64, f64::max);
        let top_ms = r.records.iter().map(|x| x.latency_ms).fold(1.0_f64, f64::max) * 1.1;
        let root = SVGBackend::with_string(&mut svg, (1000, 420)).into_drawing_area();
        let drawn =
            (|| -> Result<(), Box<dyn std::error::Error + '_>> {
                root.fill(&WHITE)?;
                let mut chart = ChartBuilder::on(&root)
                    .margin(12)
                    .margin_top(34)
                    .x_label_area_size(48)
                    .y_label_area_size(64)
                    .build_cartesian_2d(0.0..end_s, 0.0..top_ms)?;
                chart
                    .configure_mesh()
                    .x_desc("seconds into the run")
                    .y_desc("latency (ms)")
                    .label_style(PLOT_TEXT)
                    .axis_desc_style(PLOT_TEXT)
                    .light_line_style(WHITE.mix(0.0))
                    .draw()?;
                let band_colour = RGBColor(255, 200, 0);
                for (i, fault) in r.faults.iter().enumerate() {
                    let (start, end) = (fault.start_ms / 1000.0, fault.end_ms.max(fault.start_ms + 20.0) / 1000.0);
                    chart.draw_series(std::iter::once(Rectangle::new(
                        [(start, 0.0), (end, top_ms)],
                        band_colour.mix(0.25).filled(),
                    )))?;
                    // Labels alternate between two rows above the plot, so neighbouring bands stay legible.
                    let (x, _) = chart.backend_coord(&(start, top_ms));
                    let y = if i % 2 == 0 { 4 } else { 20 };
                    root.draw(&Text::new(fault.label.clone(), (x, y), ("sans-serif", 13).into_font().color(&BLACK)))?;
                }
                for (i, node) in (0..r.nodes).map(crate::cluster::node_name).enumerate() {
                    let colour = NODE_COLOURS[i % NODE_COLOURS.len()];
                    let mine = || r.records.iter().filter(|x| x.node.as_deref() == Some(node.as_str()));
                    chart
                        .draw_series(
                            mine()
                                .filter(|x| x.outcome == Outcome::Ok)
                                .map(|x| Circle::new((x.at_ms / 1000.0, x.latency_ms), 2, colour.filled())),
                        )?
                        .label(node.clone())
                        .legend(move |(x, y)| Circle::new((x, y), 4, colour.filled()));
                }
                let failed_colour = RGBColor(214, 39, 40);
                chart
                    .draw_series(
                        r.records
                            .iter()
                            .filter(|x| x.outcome == Outcome::Failed)
                            .map(|x| Cross::new((x.at_ms / 1000.0, x.latency_ms), 5, failed_colour.stroke_width(2))),
                    )?
                    .label("failed")
                    .legend(move |(x, y)| Cross::new((x, y), 5, failed_colour.stroke_width(2)));
                let unavailable_colour = RGBColor(127, 127, 127);
                chart
                    .draw_series(r.records.iter().filter(|x| x.outcome == Outcome::Unavailable).map(|x| {
                        TriangleMarker::new((x.at_ms / 1000.0, x.latency_ms), 4, unavailable_colour.filled())
                    }))?
                    .label("unavailable")
                    .legend(move |(x, y)| TriangleMarker::new((x, y), 4, unavailable_colour.filled()));
                chart
                    .configure_series_labels()
                    .label_font(PLOT_TEXT)
                    .border_style(BLACK.mix(0.3))
                    .background_style(WHITE.mix(0.9))
                    .draw()?;
                root.present()?;
                Ok(())
            })();
        if let Err(error) = drawn {
            return format!("<p>(no timeline: {})</p>", esc(&error.to_string()));
        }
    }
    svg
}

/// HTML-escapes text.
pub(crate) fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
