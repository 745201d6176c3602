//! The benchmark's curves as one SVG (`bffctl bench --plot`), so the shape shows without reading
//! the JSON: requests/s and CPU time per request of `bff-auth-redis` against the number of
//! active sessions (log scale), with nginx's CPU per request as the reference line. The uniform
//! curve is drawn; a Zipf curve, when measured, is drawn dashed next to it.

use plotters::prelude::*;

use super::BenchReport;

/// The SVG, or why there is nothing to draw.
pub fn svg(report: &BenchReport) -> Result<String, String> {
    let uniform: Vec<_> =
        report.sessions_curve.iter().filter(|p| p.access == super::Access::Uniform).cloned().collect();
    let zipf: Vec<(f64, f64)> = report
        .sessions_curve
        .iter()
        .filter(|p| p.access == super::Access::Zipf)
        .map(|p| (p.sessions as f64, p.requests_per_s))
        .collect();
    let points = if uniform.is_empty() { &report.sessions_curve } else { &uniform };
    if points.is_empty() {
        return Err("no curve against sessions in this report (run without --sessions \"\")".into());
    }
    let nginx_cpu = report.configs.iter().find(|c| c.name == "nginx").and_then(|c| c.cpu_us_per_request);
    let max_sessions = points.iter().map(|p| p.sessions).max().unwrap_or(1).max(10) as f64 * 2.0;
    let top_rps = points.iter().map(|p| p.requests_per_s).chain(zipf.iter().map(|z| z.1)).fold(1.0, f64::max) * 1.15;
    let top_cpu = points.iter().filter_map(|p| p.cpu_us_per_request).chain(nginx_cpu).fold(1.0, f64::max) * 1.15;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 640)).into_drawing_area();
        let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
            root.fill(&WHITE)?;
            let panels = root.split_evenly((2, 1));
            let mut rps = ChartBuilder::on(&panels[0])
                .caption("bff-auth-redis: requests/s against active sessions (node cache on)", ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(64)
                .build_cartesian_2d((0.8..max_sessions).log_scale(), 0.0..top_rps)?;
            rps.configure_mesh().x_desc("active sessions (log)").y_desc("requests/s").draw()?;
            rps.draw_series(LineSeries::new(points.iter().map(|p| (p.sessions as f64, p.requests_per_s)), BLUE))?;
            rps.draw_series(
                points.iter().map(|p| Circle::new((p.sessions as f64, p.requests_per_s), 4, BLUE.filled())),
            )?;
            if !zipf.is_empty() {
                rps.draw_series(DashedLineSeries::new(zipf.iter().copied(), 6, 4, BLUE.into()))?;
            }

            let mut cpu = ChartBuilder::on(&panels[1])
                .caption("CPU time per request (µs), nginx as the dashed reference", ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(64)
                .build_cartesian_2d((0.8..max_sessions).log_scale(), 0.0..top_cpu)?;
            cpu.configure_mesh().x_desc("active sessions (log)").y_desc("CPU µs/request").draw()?;
            let measured: Vec<(f64, f64)> =
                points.iter().filter_map(|p| Some((p.sessions as f64, p.cpu_us_per_request?))).collect();
            cpu.draw_series(LineSeries::new(measured.iter().copied(), RED))?
                .label("bff-auth-redis")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
            cpu.draw_series(measured.iter().map(|&(x, y)| Circle::new((x, y), 4, RED.filled())))?;
            if let Some(nginx) = nginx_cpu {
                cpu.draw_series(DashedLineSeries::new([(0.8, nginx), (max_sessions, nginx)], 6, 4, BLACK.into()))?
                    .label("nginx (plain proxy)")
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK));
            }
            cpu.configure_series_labels().border_style(BLACK.mix(0.3)).background_style(WHITE.mix(0.9)).draw()?;
            root.present()?;
            Ok(())
        })();
        drawn.map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
