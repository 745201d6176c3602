//! `bffctl soak`: a fresh cluster (processes, or containers) under an open-loop rate and a seeded fault schedule;
//! the figures as tables (or JSON), exit 0 when nothing was wrong, 1 when something was.

use std::process::ExitCode;
use std::sync::Arc;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, Color, Table};
use harness::cluster::ClusterSpec;
use harness::soak::{SoakPlan, SoakProgress, SoakReport};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{SoakArgs, SoakRedisArg};

pub async fn run(args: SoakArgs) -> anyhow::Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(rand_seed);
    let plan = SoakPlan {
        duration: args.duration,
        rate: args.rate,
        users: args.users,
        seed,
        fault_every: args.fault_every,
        fault_lasts: args.fault_lasts,
        sample_every: args.sample_every,
    };
    let spec = ClusterSpec {
        nodes: args.nodes,
        backend: args.backend.kind(),
        bff_binary: args.bff_binary.clone(),
        seed: Some(seed),
        redis: match args.redis {
            SoakRedisArg::Single => harness::cluster::RedisTopology::Single,
            SoakRedisArg::Cluster => harness::cluster::RedisTopology::Cluster,
        },
        ..ClusterSpec::default()
    };
    let bar = ProgressBar::new(args.duration.as_secs().max(1));
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} s {msg}")?);
    let bar = Arc::new(bar);
    let on_step = {
        let bar = bar.clone();
        move |what: &str| bar.set_message(what.to_owned())
    };
    let on_progress = {
        let bar = bar.clone();
        move |p: &SoakProgress| {
            bar.set_position(p.elapsed_s as u64);
            let fault = p.current_fault.as_deref().map(|f| format!(", fault: {f}")).unwrap_or_default();
            bar.set_message(format!("{} requests, {} unavailable{fault}", p.requests, p.unavailable));
        }
    };
    let result = harness::soak::run(plan, spec, &on_step, &on_progress).await;
    bar.finish_and_clear();
    let report = match result {
        Ok(report) => report,
        Err(error) => {
            eprintln!("bffctl: soak: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    if let Some(path) = &args.history {
        let mut lines = String::new();
        for record in &report.records {
            lines.push_str(&serde_json::to_string(record)?);
            lines.push('\n');
        }
        std::fs::write(path, lines).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, harness::soak::html(&report)).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    Ok(if report.passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
}

fn print(report: &SoakReport) {
    println!("soak: {}", report.plan.describe());
    let mut summary = Table::new();
    summary.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "requests",
        "wrong",
        "unavailable in faults",
        "unavailable outside",
    ]);
    summary.add_row(vec![
        Cell::new(report.requests),
        Cell::new(report.wrong),
        Cell::new(report.unavailable_in_faults),
        Cell::new(report.unavailable_outside_faults),
    ]);
    println!("{summary}");

    let mut faults = Table::new();
    faults.load_preset(UTF8_FULL_CONDENSED).set_header(vec!["fault", "from s", "to s", "recovery ms", "problem"]);
    for f in &report.faults {
        faults.add_row(vec![
            Cell::new(&f.label),
            Cell::new(format!("{:.1}", f.start_ms / 1000.0)),
            Cell::new(format!("{:.1}", f.end_ms / 1000.0)),
            Cell::new(f.recovery_ms.map(|ms| format!("{ms:.0}")).unwrap_or_else(|| "-".into())),
            Cell::new(f.error.as_deref().unwrap_or("")),
        ]);
    }
    println!("{faults}");

    let mut minutes = Table::new();
    minutes.load_preset(UTF8_FULL_CONDENSED).set_header(vec!["minute", "requests", "unavailable", "p50 ms", "p99 ms"]);
    for m in &report.minutes {
        minutes.add_row(vec![
            Cell::new(m.minute + 1),
            Cell::new(m.requests),
            Cell::new(m.unavailable),
            Cell::new(format!("{:.1}", m.p50_ms)),
            Cell::new(format!("{:.1}", m.p99_ms)),
        ]);
    }
    println!("{minutes}");

    let mut curves = Table::new();
    curves.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        format!("resource (after {:.0} s warm-up)", report.warm_up_s),
        "floor, first third".into(),
        "floor, last third".into(),
        "change".into(),
        "medians".into(),
        "flat (±10 %; fds ±16)".into(),
    ]);
    for c in &report.curves {
        curves.add_row(vec![
            Cell::new(&c.what),
            Cell::new(format!("{:.0}", c.after_warm_up)),
            Cell::new(format!("{:.0}", c.at_end)),
            Cell::new(format!("{:+.1} %", c.change_pct)),
            Cell::new(format!("{:.0} → {:.0}", c.median_after_warm_up, c.median_at_end)),
            match (c.flat, report.curves_judged) {
                (true, _) => Cell::new("yes").fg(Color::Green),
                (false, true) => Cell::new("NO").fg(Color::Red),
                (false, false) => Cell::new("no (not judged: run under 5 min)"),
            },
        ]);
    }
    println!("{curves}");

    let mut invariants = Table::new();
    invariants.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "invariant (whole history)",
        "checked",
        "violations",
        "result",
    ]);
    for i in &report.invariants {
        let mut name = i.name.to_owned();
        for detail in &i.detail {
            name.push_str(&format!("\n  {detail}"));
        }
        let result = match i.passed {
            Some(true) => Cell::new("pass").fg(Color::Green),
            Some(false) => Cell::new("FAIL").fg(Color::Red),
            None => Cell::new("not checked"),
        };
        invariants.add_row(vec![Cell::new(name), Cell::new(i.checked), Cell::new(i.violations), result]);
    }
    println!("{invariants}");
    let verdict = if report.passed { Color::Green } else { Color::Red };
    println!("{}", Cell::new(&report.verdict).fg(verdict).content());
}
