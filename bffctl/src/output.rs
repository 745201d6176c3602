//! Tables and JSON for what `bffctl` prints.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, Color, Table};
use harness::cluster::control::Status;

pub fn status(status: &Status, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(status).expect("status serialises"));
        return;
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(["component", "address", "state", "container / pid"]);
    for c in &status.components {
        let state = if c.state.starts_with("running") {
            Cell::new(&c.state).fg(Color::Green)
        } else {
            Cell::new(&c.state).fg(Color::Yellow)
        };
        table.add_row(vec![
            Cell::new(&c.name),
            Cell::new(c.address.as_deref().unwrap_or("-")),
            state,
            Cell::new(c.id.as_deref().unwrap_or("-")),
        ]);
    }
    println!("{table}");
    println!("backend: {}   load balancer: {}   issuer: {}", status.backend, status.lb_url, status.issuer_url);
}

/// A dynamic table wraps to the terminal's width; piped or redirected there is no terminal, and
/// it wraps to `COLUMNS` (else 100 columns) instead of growing as wide as its longest cell.
fn fit_width(table: &mut Table) {
    if table.width().is_none() {
        let columns = std::env::var("COLUMNS").ok().and_then(|c| c.parse::<u16>().ok()).filter(|c| *c >= 40);
        table.set_width(columns.unwrap_or(100));
    }
}

pub fn scenarios(scenarios: &[harness::scenario::Scenario], json: bool) {
    if json {
        let list: Vec<_> = scenarios
            .iter()
            .map(|s| serde_json::json!({ "name": s.name, "description": s.description, "nodes": s.cluster.nodes, "expect": s.expect.outcome }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&list).expect("list serialises"));
        return;
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(["scenario", "expects", "description"]);
    table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    fit_width(&mut table);
    for s in scenarios {
        let expects = match s.expect.outcome {
            harness::scenario::ExpectedOutcome::Pass => "pass",
            harness::scenario::ExpectedOutcome::Fail => "failures (negative control)",
        };
        table.add_row(vec![s.name.as_str(), expects, s.description.as_str()]);
    }
    println!("{table}");
}

pub fn report(report: &harness::scenario::RunReport) {
    println!(
        "\n{} — {} node(s) on {}, {} user(s) × {} iteration(s), {:.1} s, seed {}",
        report.scenario, report.nodes, report.backend, report.users, report.iterations, report.duration_s, report.seed
    );
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "step",
        "node",
        "requests",
        "ok",
        "failed",
        "unavailable",
        "p50 ms",
        "p95 ms",
        "p99 ms",
    ]);
    for row in &report.rows {
        let failed = if row.failed > 0 { Cell::new(row.failed).fg(Color::Red) } else { Cell::new(row.failed) };
        let unavailable =
            if row.unavailable > 0 { Cell::new(row.unavailable).fg(Color::Yellow) } else { Cell::new(row.unavailable) };
        table.add_row(vec![
            Cell::new(&row.step),
            Cell::new(&row.node),
            Cell::new(row.requests),
            Cell::new(row.ok),
            failed,
            unavailable,
            Cell::new(format!("{:.1}", row.p50_ms)),
            Cell::new(format!("{:.1}", row.p95_ms)),
            Cell::new(format!("{:.1}", row.p99_ms)),
        ]);
    }
    if !report.rows.is_empty() {
        println!("{table}");
    }
    if report.steps.len() > 1 {
        let mut steps = Table::new();
        steps.load_preset(UTF8_FULL_CONDENSED).set_header([
            "step (all nodes)",
            "answered",
            "p50 ms",
            "p95 ms",
            "p99 ms",
        ]);
        for s in &report.steps {
            steps.add_row(vec![
                Cell::new(&s.step),
                Cell::new(s.requests),
                Cell::new(format!("{:.1}", s.p50_ms)),
                Cell::new(format!("{:.1}", s.p95_ms)),
                Cell::new(format!("{:.1}", s.p99_ms)),
            ]);
        }
        println!("{steps}");
    }
    if !report.failures.is_empty() {
        let mut failures = Table::new();
        failures.load_preset(UTF8_FULL_CONDENSED).set_header([
            "count",
            "step",
            "node",
            "status",
            "what was wrong",
            "request id · traceparent (first)",
        ]);
        failures.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
        for f in report.failures.iter().take(20) {
            failures.add_row(vec![
                Cell::new(f.count),
                Cell::new(&f.step),
                Cell::new(&f.node),
                Cell::new(f.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into())),
                Cell::new(&f.detail),
                Cell::new(format!(
                    "{}\n{}",
                    f.request_id.as_deref().unwrap_or("-"),
                    f.traceparent.as_deref().unwrap_or("-")
                )),
            ]);
        }
        println!("Distinct failures:\n{failures}");
        if report.failures.len() > 20 {
            println!("… and {} more kinds (see --report json)", report.failures.len() - 20);
        }
    }
    if let Some(refreshes) = report.token_refreshes
        && refreshes > 0
    {
        println!("Token refreshes at the issuer: {refreshes}");
    }
    if !report.cluster_events.is_empty() {
        println!("Cluster events: {}", report.cluster_events.join(", "));
    }
    // Always after a fault done to Redis itself: "0 requests" is the figure a failover is run for.
    let redis_fault = |label: &str| {
        ["failover-redis", "kill-redis-primary", "reshard", "add-redis-node"].iter().any(|a| label.starts_with(a))
    };
    if report.outages.iter().any(|o| o.unavailable > 0 || redis_fault(&o.fault)) {
        let outages: Vec<String> = report
            .outages
            .iter()
            .map(|o| format!("{} {:.2} s ({} requests)", o.fault, o.span_ms / 1000.0, o.unavailable))
            .collect();
        println!("Outage (first to last unavailable request): {}", outages.join(", "));
    }
    if let Some(drift) = &report.drift {
        drift_table(drift);
    }
    if !report.invariants.is_empty() {
        invariants_table(&report.invariants);
    }
    // Shown when it explains failures, and in a run that rolled builds (each node on each build).
    if let Some(matrix) = &report.matrix
        && (matrix.diagnosis.is_some() || matrix.nodes.iter().any(|n| n.contains('@')))
    {
        matrix_table(matrix);
    }
    for log in &report.node_logs {
        let what = match &log.reason {
            Some(reason) => format!("{} never became ready: {reason}", log.node),
            None => format!("{} failed requests", log.node),
        };
        match &log.path {
            Some(path) => println!("{what}. Its log: {} (bffctl logs {}); last lines:", path.display(), log.node),
            None => println!("{what}. Its log is not readable from here; last lines:"),
        }
        for line in &log.last_lines {
            println!("    {line}");
        }
    }
    let verdict = if report.passed {
        Cell::new(&report.verdict).fg(Color::Green)
    } else {
        Cell::new(&report.verdict).fg(Color::Red)
    };
    println!("{}", verdict.content());
}

/// Each invariant checked over the run's history: pass, fail (with the first violations) or
/// not checkable here.
fn invariants_table(invariants: &[harness::scenario::Invariant]) {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "invariant (whole history)",
        "checked",
        "violations",
        "result",
    ]);
    for invariant in invariants {
        let result = match invariant.passed {
            Some(true) => Cell::new("pass").fg(Color::Green),
            Some(false) => Cell::new("FAIL").fg(Color::Red),
            None => Cell::new("not checked"),
        };
        let mut name = invariant.name.to_owned();
        for detail in &invariant.detail {
            name.push_str(&format!("\n  {detail}"));
        }
        table.add_row(vec![Cell::new(name), Cell::new(invariant.checked), Cell::new(invariant.violations), result]);
    }
    println!("{table}");
}

/// Setting × node, the odd node's value in red; secrets as "same"/"differs" only.
fn drift_table(drift: &harness::drift::DriftReport) {
    if drift.skipped {
        println!("Drift check skipped: no node serves /ops/fingerprint ({})", drift.problems.join("; "));
        return;
    }
    for note in &drift.notes {
        println!("Drift check note: {note}");
    }
    if !drift.found_drift() {
        match drift.notes.is_empty() {
            true => println!("Drift check: {} settings agree on every node", drift.rows.len()),
            false => println!("Drift check: every other setting agrees on every node"),
        }
        return;
    }
    let mut table = Table::new();
    let mut header = vec!["setting".to_owned()];
    header.extend(drift.nodes.iter().cloned());
    table.load_preset(UTF8_FULL_CONDENSED).set_header(header);
    table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    for row in &drift.rows {
        let mut cells = vec![Cell::new(&row.setting)];
        for i in 0..row.values.len() {
            let (shown, odd) = row.shown(i);
            cells.push(if odd { Cell::new(format!("≠ {shown}")).fg(Color::Red) } else { Cell::new(shown) });
        }
        if !row.odd.is_empty() {
            table.add_row(cells);
        }
    }
    println!("Settings that differ between nodes (≠ marks the odd node):\n{table}");
    for problem in &drift.problems {
        println!("  {problem}");
    }
}

/// Created on × read on: reads that worked out of reads made, and the diagnosis.
fn matrix_table(matrix: &harness::scenario::Matrix) {
    let mut table = Table::new();
    let mut header = vec!["created on \\ read on".to_owned()];
    header.extend(matrix.nodes.iter().cloned());
    table.load_preset(UTF8_FULL_CONDENSED).set_header(header);
    for (created, row) in matrix.cells.iter().enumerate() {
        let mut cells = vec![Cell::new(&matrix.nodes[created])];
        for cell in row {
            let text = format!("{}/{}", cell.ok, cell.total);
            cells.push(match (cell.total, cell.ok == cell.total) {
                (0, _) => Cell::new("-"),
                (_, true) => Cell::new(text).fg(Color::Green),
                (_, false) => Cell::new(text).fg(Color::Red),
            });
        }
        table.add_row(cells);
    }
    println!("Sessions read (ok/asked), by the node that created them:\n{table}");
    if let Some(diagnosis) = &matrix.diagnosis {
        println!("Diagnosis: {diagnosis}");
    }
}

/// The gateway presets, as a table (or JSON).
pub fn gateways(presets: &[harness::preset::GatewayPreset], json: bool) {
    if json {
        let rows: Vec<serde_json::Value> = presets
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name, "login_path": p.login_path, "me_path": p.me_path, "me_header": p.me_header,
                    "anonymous_status": p.anonymous_status, "identity_pointer": p.identity_pointer,
                    "logout_path": p.logout_path, "logout_method": p.logout_method, "logout_header": p.logout_header,
                    "verified": p.verified(), "provenance": p.provenance,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
        return;
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "--gateway",
        "login",
        "me",
        "anonymous me",
        "identity",
        "logout",
        "checked",
    ]);
    table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    for p in presets {
        let me = match &p.me_header {
            Some(header) => format!("{} ({header})", p.me_path),
            None => p.me_path.clone(),
        };
        let logout = format!("{:?} {}", p.logout_method, p.logout_path).to_uppercase().replacen(
            &p.logout_path.to_uppercase(),
            &p.logout_path,
            1,
        );
        let checked = if p.verified() {
            Cell::new("verified in CI").fg(Color::Green)
        } else {
            Cell::new("from the documentation")
        };
        table.add_row(vec![
            Cell::new(&p.name),
            Cell::new(&p.login_path),
            Cell::new(me),
            Cell::new(p.anonymous_status),
            Cell::new(p.identity_pointer.as_deref().unwrap_or("anywhere")),
            Cell::new(logout),
            checked,
        ]);
    }
    println!("{table}");
}

/// Unix seconds as UTC date and time (`-` for none).
fn when(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

pub fn sessions(listing: &harness::session_api::Listing, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(listing).expect("listing serialises"));
        return;
    }
    if listing.sessions.is_empty() {
        println!("no live session (user digest in the gateway's audit log: {})", listing.subject);
        return;
    }
    // Not fitted to the terminal: an id cut over two lines cannot be copied into `end --id`.
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "id",
        "sub",
        "sid",
        "created",
        "last seen",
        "idle expiry",
        "absolute expiry",
        "created on",
    ]);
    for s in &listing.sessions {
        table.add_row(vec![
            s.id.clone(),
            s.sub.clone().unwrap_or_else(|| "-".into()),
            s.sid.clone().unwrap_or_else(|| "-".into()),
            when(s.created_at),
            when(s.last_seen_at),
            when(s.idle_expires_at),
            when(s.absolute_expires_at),
            s.created_on.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    println!("{table}");
    println!("{} session(s); user digest in the gateway's audit log: {}", listing.sessions.len(), listing.subject);
}

pub fn sessions_ended(ending: &harness::session_api::Ending, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(ending).expect("ending serialises"));
        return;
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(["ended session"]);
    for id in &ending.ids {
        table.add_row(vec![id.as_str()]);
    }
    if !ending.ids.is_empty() {
        println!("{table}");
    }
    println!(
        "{} session(s) ended on every node (user digest in the gateway's audit log: {})",
        ending.ended, ending.subject
    );
}
