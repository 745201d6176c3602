//! The "created on × read on" matrix: for every session, the node that created it (the one that
//! answered the login callback) against each node that was asked to read it, and a one-line
//! diagnosis naming the node that does not share ("node-2 is an island: …").
//!
//! Symptoms (404 on node-3) become a cause: a node whose sessions nobody else knows and which
//! knows nobody else's has its own store, key, prefix or cookie; a node that cannot read the
//! others' but whose own sessions are read everywhere reads elsewhere than it writes.
//!
//! A diagnosis needs evidence, and says no more than the cells show:
//! - only the gateway's answers about a session count: a 200 (shared) or a 4xx (unknown here). A
//!   5xx or no answer at all says something about a node or the harness, not about sharing, and
//!   a read made unanswerable by a fault does not count either;
//! - a cell takes part only with at least [`MIN_READS`] reads; when every failing cell has fewer,
//!   the diagnosis is "inconclusive";
//! - the node named is the one common to every failing pair (created on, read on); it is found
//!   from the cells alone, so the same cells give the same diagnosis every run.

use serde::Serialize;

use super::record::{Outcome, Record};

/// The fewest reads a cell needs to count as evidence.
pub const MIN_READS: u64 = 3;

/// Reads of sessions created on one node, on another.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Cell {
    pub ok: u64,
    pub total: u64,
}

impl Cell {
    fn measured(self) -> bool {
        self.total >= MIN_READS
    }

    /// Enough reads, and at least one of them failed.
    fn failing(self) -> bool {
        self.measured() && self.ok < self.total
    }

    /// Enough reads, and none of them worked.
    fn broken(self) -> bool {
        self.measured() && self.ok == 0
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    pub nodes: Vec<String>,
    /// `cells[created][read]`.
    pub cells: Vec<Vec<Cell>>,
    /// One line naming what does not share, when something does not.
    pub diagnosis: Option<String>,
    /// The node the diagnosis blames, when it blames exactly one.
    pub odd_node: Option<String>,
}

impl Matrix {
    /// From the records of session reads (`me`, `get`) that know their session's creator; reads
    /// made unanswerable by a fault, and answers that are not about the session (5xx, no
    /// answer), do not count.
    pub fn from_records(records: &[Record], nodes: &[String]) -> Option<Matrix> {
        let nodes = with_builds(records, nodes);
        let node_count = nodes.len();
        let index = |name: &str| nodes.iter().position(|n| n == name);
        let mut cells = vec![vec![Cell::default(); node_count]; node_count];
        let mut any = false;
        let about_the_session =
            |r: &&Record| r.outcome != Outcome::Unavailable && matches!(r.status, Some(s) if s < 500);
        for r in records.iter().filter(about_the_session) {
            let (Some(created), Some(read)) =
                (r.created_on.as_deref().and_then(index), r.node.as_deref().and_then(index))
            else {
                continue;
            };
            let cell = &mut cells[created][read];
            cell.total += 1;
            cell.ok += u64::from(r.outcome == Outcome::Ok);
            any = true;
        }
        if !any {
            return None;
        }
        let (diagnosis, odd) = diagnose(&nodes, &cells);
        Some(Matrix { nodes: nodes.clone(), cells, diagnosis, odd_node: odd.map(|i| nodes[i].clone()) })
    }
}

/// The matrix's rows and columns: the nodes, or in a run that rolled builds (records name
/// `node-1@0.1.0`) each node on each build it ran, in node order, then in order of appearance.
fn with_builds(records: &[Record], nodes: &[String]) -> Vec<String> {
    let mut labelled: Vec<&str> = Vec::new();
    for label in records.iter().flat_map(|r| [r.created_on.as_deref(), r.node.as_deref()]).flatten() {
        if label.contains('@') && !labelled.contains(&label) {
            labelled.push(label);
        }
    }
    if labelled.is_empty() {
        return nodes.to_vec();
    }
    let place = |label: &str| {
        let node = label.split('@').next().unwrap_or(label);
        nodes.iter().position(|n| n == node).unwrap_or(usize::MAX)
    };
    // A stable sort: each node's builds stay in the order they appeared.
    labelled.sort_by_key(|label| place(label));
    labelled.into_iter().map(str::to_owned).collect()
}

/// What does not share, from the pattern of failing cells, and the one node it blames.
fn diagnose(nodes: &[String], cells: &[Vec<Cell>]) -> (Option<String>, Option<usize>) {
    let n = nodes.len();
    let all = || (0..n).flat_map(|c| (0..n).map(move |r| (c, r)));
    let thin_failures = all().filter(|&(c, r)| cells[c][r].ok < cells[c][r].total).count();
    let failing: Vec<(usize, usize)> = all().filter(|&(c, r)| cells[c][r].failing()).collect();
    if failing.is_empty() {
        if thin_failures == 0 {
            return (None, None);
        }
        return (
            Some(format!(
                "inconclusive: reads failed in {thin_failures} cell(s), each with fewer than {MIN_READS} reads; \
                 run more users for a diagnosis"
            )),
            None,
        );
    }
    let names = |list: Vec<usize>| list.into_iter().map(|i| nodes[i].as_str()).collect::<Vec<_>>().join(" and ");
    let measured_cells = all().filter(|&(c, r)| cells[c][r].measured()).count();
    if n > 1 && failing.len() == measured_cells && failing.iter().any(|(c, r)| c == r) {
        return (
            Some(
                "sessions were lost on every node, the node that created them included: the store lost them \
                 (a restart without persistence, an eviction), or no node keeps them"
                    .into(),
            ),
            None,
        );
    }
    // The nodes that take part in every failing pair; a pair on the diagonal involves one node.
    let common: Vec<usize> = (0..n).filter(|&i| failing.iter().all(|&(c, r)| c == i || r == i)).collect();
    if let [odd] = common[..] {
        let others: Vec<usize> = (0..n).filter(|o| *o != odd).collect();
        let row_failing = others.iter().any(|&o| cells[odd][o].failing());
        let col_failing = others.iter().any(|&o| cells[o][odd].failing());
        let row_measured = others.iter().any(|&o| cells[odd][o].measured());
        let col_measured = others.iter().any(|&o| cells[o][odd].measured());
        let who = &nodes[odd];
        let others = names(others);
        let line = match (row_failing, col_failing) {
            (true, true) => {
                format!("{who} is an island: sessions it creates are unknown to {others}, and it cannot read theirs")
            }
            (true, false) if col_measured => {
                format!("sessions {who} creates are unknown to {others} (it can read theirs)")
            }
            (true, false) => format!("sessions {who} creates are unknown to {others}"),
            (false, true) if row_measured => {
                format!("{who} cannot read sessions created on {others} (they can read its own)")
            }
            (false, true) => format!("{who} cannot read sessions created on {others}"),
            (false, false) => format!("{who} cannot read sessions it created itself"),
        };
        return (Some(line), Some(odd));
    }
    let off_diagonal = |f: &dyn Fn(Cell) -> bool| all().filter(|&(c, r)| c != r && f(cells[c][r])).count();
    let measured = off_diagonal(&|cell| cell.measured());
    if n > 1 && measured > 0 && off_diagonal(&|cell| cell.broken()) == measured {
        return (
            Some("no node can read another node's sessions: every node is an island (sessions are not shared)".into()),
            None,
        );
    }
    let own: Vec<usize> = failing.iter().filter(|(c, r)| c == r).map(|(c, _)| *c).collect();
    if own.len() == failing.len() {
        return (Some(format!("{} cannot read sessions they created themselves", names(own))), None);
    }
    let pairs: Vec<String> = failing
        .iter()
        .map(|&(c, r)| {
            format!(
                "{}→{} ({} of {} failed)",
                nodes[c],
                nodes[r],
                cells[c][r].total - cells[c][r].ok,
                cells[c][r].total
            )
        })
        .collect();
    (Some(format!("sessions are not reliably shared: reads failed from {}", pairs.join(", "))), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(grid: &[&[(u64, u64)]]) -> Option<String> {
        let nodes: Vec<String> = (1..=grid.len()).map(|i| format!("node-{i}")).collect();
        let cells: Vec<Vec<Cell>> =
            grid.iter().map(|row| row.iter().map(|(ok, total)| Cell { ok: *ok, total: *total }).collect()).collect();
        diagnose(&nodes, &cells).0
    }

    #[test]
    fn a_healthy_cluster_has_no_diagnosis() {
        assert_eq!(matrix(&[&[(5, 5), (5, 5)], &[(5, 5), (5, 5)]]), None);
    }

    #[test]
    fn the_island_is_named() {
        let grid: &[&[(u64, u64)]] = &[&[(4, 4), (0, 4), (4, 4)], &[(0, 3), (3, 3), (0, 3)], &[(5, 5), (0, 5), (5, 5)]];
        assert_eq!(
            matrix(grid).unwrap(),
            "node-2 is an island: sessions it creates are unknown to node-1 and node-3, and it cannot read theirs"
        );
    }

    #[test]
    fn one_way_breaks_are_told_apart() {
        let writes_elsewhere: &[&[(u64, u64)]] =
            &[&[(4, 4), (4, 4), (4, 4)], &[(0, 3), (3, 3), (0, 3)], &[(5, 5), (5, 5), (5, 5)]];
        assert_eq!(
            matrix(writes_elsewhere).unwrap(),
            "sessions node-2 creates are unknown to node-1 and node-3 (it can read theirs)"
        );
        let everyone: &[&[(u64, u64)]] =
            &[&[(4, 4), (0, 4), (0, 4)], &[(0, 3), (3, 3), (0, 3)], &[(0, 5), (0, 5), (5, 5)]];
        assert!(matrix(everyone).unwrap().starts_with("no node can read another node's sessions"));
    }

    /// One node with another cookie name: its sessions fail elsewhere and others' fail on it,
    /// some reads still work (logins that crossed nodes); every failing pair involves node-2.
    #[test]
    fn a_run_that_rolled_builds_shows_each_node_on_each_build() {
        let read = |created: &str, node: &str, ok: bool| Record {
            step: "me".into(),
            action: crate::scenario::Action::Me,
            user: "u".into(),
            identity: None,
            node: Some(node.into()),
            created_on: Some(created.into()),
            outcome: if ok { Outcome::Ok } else { Outcome::Failed },
            status: Some(if ok { 200 } else { 404 }),
            at_ms: 0.0,
            latency_ms: 1.0,
            detail: String::new(),
            harness: false,
            traceparent: None,
            request_id: None,
        };
        let records = vec![
            read("node-2@0.1.0", "node-1@0.2.0", true),
            read("node-1@0.1.0", "node-2@0.1.0", true),
            read("node-1@0.2.0", "node-2@0.1.0", false),
        ];
        let nodes: Vec<String> = (1..=2).map(|i| format!("node-{i}")).collect();
        let matrix = Matrix::from_records(&records, &nodes).unwrap();
        assert_eq!(matrix.nodes, ["node-1@0.2.0", "node-1@0.1.0", "node-2@0.1.0"]);
        assert_eq!(matrix.cells[0][2].total, 1);
        assert_eq!(matrix.cells[0][2].ok, 0, "created on the new build, refused on the old one");
    }

    #[test]
    fn the_node_common_to_every_failing_pair_is_named() {
        let grid: &[&[(u64, u64)]] = &[&[(6, 6), (1, 5), (7, 7)], &[(0, 4), (4, 4), (2, 6)], &[(5, 5), (0, 3), (4, 4)]];
        assert_eq!(
            matrix(grid).unwrap(),
            "node-2 is an island: sessions it creates are unknown to node-1 and node-3, and it cannot read theirs"
        );
        // Unmeasured cells elsewhere change nothing.
        let sparse: &[&[(u64, u64)]] =
            &[&[(6, 6), (0, 5), (0, 0)], &[(0, 4), (0, 0), (0, 6)], &[(0, 0), (0, 3), (0, 0)]];
        assert!(matrix(sparse).unwrap().starts_with("node-2 is an island"));
    }

    /// Cells of 1/1, 0/1 and 1/2 reads prove nothing: the diagnosis says so.
    #[test]
    fn too_few_reads_are_inconclusive() {
        let grid: &[&[(u64, u64)]] = &[&[(1, 1), (0, 1), (1, 2)], &[(0, 1), (1, 1), (0, 0)], &[(1, 2), (0, 0), (1, 1)]];
        assert!(matrix(grid).unwrap().starts_with("inconclusive:"), "{:?}", matrix(grid));
    }

    /// A 502 or a transport error is not an answer about the session: it is left out of the cells.
    #[test]
    fn only_answers_about_the_session_count() {
        use crate::scenario::model::Action;
        let read = |node: &str, status: Option<u16>, outcome: Outcome| Record {
            step: "me".into(),
            action: Action::Me,
            user: "u".into(),
            identity: None,
            node: Some(node.into()),
            created_on: Some("node-1".into()),
            outcome,
            status,
            at_ms: 0.0,
            latency_ms: 1.0,
            detail: String::new(),
            harness: false,
            traceparent: None,
            request_id: None,
        };
        let nodes = vec!["node-1".to_owned(), "node-2".to_owned()];
        let mut records = vec![read("node-2", Some(502), Outcome::Failed), read("node-2", None, Outcome::Failed)];
        records.extend((0..3).map(|_| read("node-2", Some(200), Outcome::Ok)));
        records.push(read("node-1", Some(404), Outcome::Failed));
        let matrix = Matrix::from_records(&records, &nodes).expect("a matrix");
        assert_eq!(matrix.cells[0][1], Cell { ok: 3, total: 3 });
        assert_eq!(matrix.cells[0][0], Cell { ok: 0, total: 1 });
        assert!(matrix.diagnosis.unwrap().starts_with("inconclusive"));
    }

    /// Every cell failing, the diagonal included: nobody shares less than anybody else; the
    /// sessions are gone.
    #[test]
    fn sessions_lost_everywhere_are_told_from_an_island() {
        let grid: &[&[(u64, u64)]] =
            &[&[(12, 18), (12, 18), (12, 18)], &[(4, 6), (4, 6), (4, 6)], &[(4, 6), (4, 6), (4, 6)]];
        assert!(matrix(grid).unwrap().starts_with("sessions were lost on every node"), "{:?}", matrix(grid));
    }
}
