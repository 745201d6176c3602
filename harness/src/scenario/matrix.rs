//! The "created on × read on" matrix: for every session, the node that created it (the one that
//! answered the login callback) against each node that was asked to read it, and a one-line
//! diagnosis naming the node that does not share ("node-2 is an island: …").
//!
//! Symptoms (404 on node-3) become a cause: a node whose sessions nobody else knows and which
//! knows nobody else's has its own store, key or prefix; a node that cannot read the others'
//! but whose own sessions are read everywhere reads elsewhere than it writes.

use serde::Serialize;

use super::report::{Outcome, Record};

/// Reads of sessions created on one node, on another.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Cell {
    pub ok: u64,
    pub total: u64,
}

impl Cell {
    fn works(self) -> bool {
        self.total > 0 && self.ok == self.total
    }

    fn broken(self) -> bool {
        self.total > 0 && self.ok == 0
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    pub nodes: Vec<String>,
    /// `cells[created][read]`.
    pub cells: Vec<Vec<Cell>>,
    /// One line naming what does not share, when something does not.
    pub diagnosis: Option<String>,
}

impl Matrix {
    /// From the records of session reads (`me`, `get`) that know their session's creator; reads
    /// made unanswerable by a fault do not count.
    pub fn from_records(records: &[Record], nodes: &[String]) -> Option<Matrix> {
        let nodes = nodes.to_vec();
        let node_count = nodes.len();
        let index = |name: &str| nodes.iter().position(|n| n == name);
        let mut cells = vec![vec![Cell::default(); node_count]; node_count];
        let mut any = false;
        for r in records.iter().filter(|r| r.outcome != Outcome::Unavailable) {
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
        let diagnosis = diagnose(&nodes, &cells);
        Some(Matrix { nodes, cells, diagnosis })
    }
}

/// Names the node that does not share, from the pattern of broken cells.
fn diagnose(nodes: &[String], cells: &[Vec<Cell>]) -> Option<String> {
    let n = nodes.len();
    let off_diagonal = |f: &dyn Fn(usize, usize) -> bool| {
        (0..n).flat_map(|c| (0..n).map(move |r| (c, r))).filter(|(c, r)| c != r && f(*c, *r)).count()
    };
    let measured = off_diagonal(&|c, r| cells[c][r].total > 0);
    let broken = off_diagonal(&|c, r| cells[c][r].broken());
    let failing = off_diagonal(&|c, r| cells[c][r].total > 0 && !cells[c][r].works());
    let own_broken: Vec<&str> = (0..n).filter(|i| cells[*i][*i].broken()).map(|i| nodes[i].as_str()).collect();
    if failing == 0 && own_broken.is_empty() {
        return None;
    }
    // Every read across nodes failed, and not because of one node that all of them involve.
    let one_node_explains =
        (0..n).any(|odd| (0..n).all(|c| (0..n).all(|r| c == r || !cells[c][r].broken() || c == odd || r == odd)));
    if n > 1 && measured > 0 && broken == measured && !one_node_explains {
        return Some(
            "no node can read another node's sessions: every node is an island (sessions are not shared)".into(),
        );
    }
    let names = |list: Vec<usize>| list.into_iter().map(|i| nodes[i].as_str()).collect::<Vec<_>>().join(" and ");
    for odd in 0..n {
        let others: Vec<usize> = (0..n).filter(|o| *o != odd).collect();
        let row_measured = others.iter().any(|o| cells[odd][*o].total > 0);
        let col_measured = others.iter().any(|o| cells[*o][odd].total > 0);
        let row_broken = row_measured && others.iter().all(|o| cells[odd][*o].broken() || cells[odd][*o].total == 0);
        let col_broken = col_measured && others.iter().all(|o| cells[*o][odd].broken() || cells[*o][odd].total == 0);
        let rest_fine = others.iter().all(|c| others.iter().all(|r| c == r || !cells[*c][*r].broken()));
        if !rest_fine {
            continue;
        }
        let who = &nodes[odd];
        let others = names(others);
        match (row_broken, col_broken) {
            (true, true) => {
                return Some(format!(
                    "{who} is an island: sessions it creates are unknown to {others}, and it cannot read theirs"
                ));
            }
            (true, false) if col_measured => {
                return Some(format!("sessions {who} creates are unknown to {others} (it can read theirs)"));
            }
            (true, false) => return Some(format!("sessions {who} creates are unknown to {others}")),
            (false, true) if row_measured => {
                return Some(format!("{who} cannot read sessions created on {others} (they can read its own)"));
            }
            (false, true) => return Some(format!("{who} cannot read sessions created on {others}")),
            (false, false) => {}
        }
    }
    if !own_broken.is_empty() {
        return Some(format!("{} cannot read sessions it created itself", own_broken.join(" and ")));
    }
    let pairs: Vec<String> = (0..n)
        .flat_map(|c| (0..n).map(move |r| (c, r)))
        .filter(|(c, r)| c != r && cells[*c][*r].total > 0 && !cells[*c][*r].works())
        .map(|(c, r)| format!("{}→{}", nodes[c], nodes[r]))
        .collect();
    Some(format!("sessions are not reliably shared: reads failed from {}", pairs.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(grid: &[&[(u64, u64)]]) -> Option<String> {
        let nodes: Vec<String> = (1..=grid.len()).map(|i| format!("node-{i}")).collect();
        let cells: Vec<Vec<Cell>> =
            grid.iter().map(|row| row.iter().map(|(ok, total)| Cell { ok: *ok, total: *total }).collect()).collect();
        diagnose(&nodes, &cells)
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
}
