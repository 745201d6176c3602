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
        let state = if c.state.starts_with("running") { Cell::new(&c.state).fg(Color::Green) } else { Cell::new(&c.state).fg(Color::Yellow) };
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
