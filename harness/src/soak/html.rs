//! `bffctl soak --html FILE`: the soak's report as one self-contained page (a CI artefact, a
//! link in a review): the verdict, the invariants, each fault and its recovery, p50/p99 per
//! minute, and the resource curves drawn over the run with the faults as bands and the end of
//! warm-up as a line. Same page style as the scenario report: inline CSS and SVG, no script.

use std::fmt::Write;

use plotters::prelude::*;

use super::SoakReport;
use crate::scenario::html::{NODE_COLOURS, esc, page_head};

pub fn html(r: &SoakReport) -> String {
    let mut page = page_head("bffctl soak");
    let class = if r.passed { "pass" } else { "fail" };
    let _ = write!(
        page,
        "<p class=\"meta\">{}; warm-up {:.0} s</p>\n<p class=\"verdict {class}\">{}</p>\n",
        esc(&r.plan.describe()),
        r.warm_up_s,
        esc(&r.verdict)
    );
    let _ = writeln!(
        page,
        "<table><tr><th>requests</th><th>wrong</th><th>unavailable in faults</th><th>unavailable outside faults</th></tr>\
         <tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td class=\"{}\">{}</td></tr></table>",
        r.requests,
        if r.wrong == 0 { "good" } else { "bad" },
        r.wrong,
        r.unavailable_in_faults,
        if r.unavailable_outside_faults == 0 { "good" } else { "bad" },
        r.unavailable_outside_faults
    );

    page.push_str("<h2>Invariants over the history</h2>\n<table><tr><th>invariant</th><th>checked</th><th>violations</th><th>result</th></tr>\n");
    for i in &r.invariants {
        let (cell, text) = match i.passed {
            Some(true) => ("good", "pass"),
            Some(false) => ("bad", "FAIL"),
            None => ("", "not checked"),
        };
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{cell}\">{text}</td></tr>",
            esc(i.name),
            i.checked,
            i.violations
        );
        if !i.detail.is_empty() {
            let _ = writeln!(page, "<tr><td colspan=\"4\"><pre>{}</pre></td></tr>", esc(&i.detail.join("\n")));
        }
    }
    page.push_str("</table>\n");

    page.push_str("<h2>Faults</h2>\n<table><tr><th>fault</th><th>from (s)</th><th>to (s)</th><th>recovery</th><th>error</th></tr>\n");
    for f in &r.faults {
        let recovery = f.recovery_ms.map(|ms| format!("{ms:.0} ms")).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{recovery}</td><td>{}</td></tr>",
            esc(&f.label),
            f.start_ms / 1000.0,
            f.end_ms / 1000.0,
            esc(f.error.as_deref().unwrap_or(""))
        );
    }
    page.push_str("</table>\n");

    page.push_str("<h2>Latency per minute</h2>\n<table><tr><th>minute</th><th>requests</th><th>unavailable</th><th>p50 ms</th><th>p99 ms</th></tr>\n");
    for m in &r.minutes {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td></tr>",
            m.minute, m.requests, m.unavailable, m.p50_ms, m.p99_ms
        );
    }
    page.push_str("</table>\n");

    let judged = if r.curves_judged { "judged" } else { "shown, not judged (a run shorter than 5 min)" };
    let _ = writeln!(
        page,
        "<h2>Resources</h2>\n<p class=\"meta\">The level each resource comes back to between faults: the lowest sample \
         of the first and of the last third after warm-up, outside faults (a leak lifts it; a fault's burst lifts \
         only the samples near it, which the medians show); {judged}.</p>"
    );
    page.push_str(
        "<table><tr><th>what</th><th>floor, first third</th><th>floor, last third</th><th>change</th>\
         <th>medians</th><th>flat</th></tr>\n",
    );
    for c in &r.curves {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:+.1} %</td><td>{:.0} → {:.0}</td><td class=\"{}\">{}</td></tr>",
            esc(&c.what),
            c.after_warm_up,
            c.at_end,
            c.change_pct,
            c.median_after_warm_up,
            c.median_at_end,
            if c.flat { "good" } else { "bad" },
            if c.flat { "yes" } else { "no" }
        );
    }
    page.push_str("</table>\n");
    for (title, unit, pick) in [
        ("Resident memory per node", "RSS (MiB)", Pick::Rss),
        ("Open file descriptors per node", "open fds", Pick::Fds),
        ("Keys in Redis", "keys", Pick::RedisKeys),
    ] {
        let _ = writeln!(page, "<h3>{title}</h3>\n{}", chart(r, unit, pick));
    }
    page.push_str("</body></html>\n");
    page
}

#[derive(Clone, Copy)]
enum Pick {
    Rss,
    Fds,
    RedisKeys,
}

/// One resource over the run as an SVG: a line per node (or one for Redis), faults as bands,
/// the end of warm-up as a dashed line.
fn chart(r: &SoakReport, unit: &str, pick: Pick) -> String {
    let series: Vec<(String, Vec<(f64, f64)>)> = match pick {
        Pick::RedisKeys => {
            vec![("redis".into(), r.samples.iter().filter_map(|s| Some((s.at_s, s.redis_keys? as f64))).collect())]
        }
        Pick::Rss | Pick::Fds => {
            let nodes = r.samples.iter().map(|s| s.rss_kib.len()).max().unwrap_or(0);
            (0..nodes)
                .map(|n| {
                    let points = r
                        .samples
                        .iter()
                        .filter_map(|s| {
                            let v = match pick {
                                Pick::Rss => (*s.rss_kib.get(n)?)? as f64 / 1024.0,
                                _ => (*s.fds.get(n)?)? as f64,
                            };
                            Some((s.at_s, v))
                        })
                        .collect();
                    (crate::cluster::node_name(n), points)
                })
                .collect()
        }
    };
    let end_s = r.plan.duration.as_secs_f64().max(1.0);
    let top = series.iter().flat_map(|(_, p)| p.iter().map(|(_, v)| *v)).fold(1.0_f64, f64::max) * 1.15;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 300)).into_drawing_area();
        let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(0.0..end_s, 0.0..top)?;
            chart
                .configure_mesh()
                .x_desc("seconds into the run")
                .y_desc(unit)
                .light_line_style(WHITE.mix(0.0))
                .draw()?;
            for f in &r.faults {
                let band = [(f.start_ms / 1000.0, 0.0), (f.end_ms / 1000.0, top)];
                chart.draw_series(std::iter::once(Rectangle::new(band, RGBColor(255, 200, 0).mix(0.25).filled())))?;
            }
            chart.draw_series(DashedLineSeries::new(
                [(r.warm_up_s, 0.0), (r.warm_up_s, top)],
                6,
                4,
                BLACK.mix(0.5).stroke_width(1),
            ))?;
            for (i, (name, points)) in series.iter().enumerate() {
                let colour = NODE_COLOURS[i % NODE_COLOURS.len()];
                chart
                    .draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))?
                    .label(name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2)));
            }
            chart.configure_series_labels().border_style(BLACK.mix(0.3)).background_style(WHITE.mix(0.9)).draw()?;
            root.present()?;
            Ok(())
        })();
        if let Err(error) = drawn {
            return format!("<p>(no chart: {})</p>", esc(&error.to_string()));
        }
    }
    svg
}
