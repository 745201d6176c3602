//! Refuses `BFF_*` environment variables that nothing reads, as `source.rs` refuses unknown file
//! keys: a misspelt `BFF_REDIS_ULR` would otherwise leave `redis_url` unset and start the node on
//! its in-memory store, an island no other node shares sessions with. The error names every
//! unknown variable and, when one is a few letters away from a known one, suggests it.

use std::collections::HashMap;

use super::ConfigError;
use super::keys::KEYS;

/// Variables that are not configuration keys but are fine to find in a node's environment:
/// `BFF_CONFIG` names the file (read by the argument parser in `main.rs`); `BFF_BIN` is read by
/// the harness and `bffctl` to find this binary, and a shell that exports it for them may start
/// `bff` too.
const OTHER_KNOWN: &[&str] = &["BFF_CONFIG", "BFF_BIN"];

/// Most edits between a misspelt name and the name suggested for it.
const MOST_EDITS: usize = 3;

pub(super) fn refuse_unknown(env: &HashMap<String, String>) -> Result<(), ConfigError> {
    let mut unknown: Vec<&str> = env.keys().map(String::as_str).filter(|name| is_unknown(name)).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort_unstable();
    let names = unknown
        .iter()
        .map(|name| match closest_known(name) {
            Some(known) => format!("{name} (did you mean {known}?)"),
            None => (*name).to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    Err(ConfigError::UnknownEnv { names })
}

fn known_names() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|key| key.env).chain(OTHER_KNOWN.iter().copied())
}

fn is_unknown(name: &str) -> bool {
    name.starts_with("BFF_") && !known_names().any(|known| known == name)
}

fn closest_known(name: &str) -> Option<&'static str> {
    known_names()
        .map(|known| (edit_distance(name, known), known))
        .filter(|(edits, _)| *edits <= MOST_EDITS)
        .min()
        .map(|(_, known)| known)
}

/// Levenshtein distance, counting a swap of two neighbours (`ULR` for `URL`) as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    rows[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1).min(rows[i][j - 1] + 1).min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(names: &[&str]) -> String {
        let env = names.iter().map(|n| ((*n).to_owned(), "x".to_owned())).collect();
        refuse_unknown(&env).unwrap_err().to_string()
    }

    #[test]
    fn a_typo_is_refused_with_the_closest_known_name() {
        assert_eq!(
            refused(&["BFF_REDIS_ULR"]),
            "unknown environment variable BFF_REDIS_ULR (did you mean BFF_REDIS_URL?)"
        );
    }

    #[test]
    fn every_unknown_name_is_listed_and_far_ones_get_no_suggestion() {
        let message = refused(&["BFF_REDIS_CLUSTER_NODES", "BFF_PUBLIC_URL", "BFF_OIDC_AUTHORTY"]);
        assert_eq!(
            message,
            "unknown environment variable BFF_OIDC_AUTHORTY (did you mean BFF_OIDC_AUTHORITY?), BFF_REDIS_CLUSTER_NODES"
        );
    }

    #[test]
    fn the_standard_opentelemetry_variables_pass() {
        // Read by `traces::TraceSettings` and the OpenTelemetry SDK, not configuration keys.
        let env: HashMap<String, String> = [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_SERVICE_NAME",
            "OTEL_BSP_SCHEDULE_DELAY",
        ]
        .iter()
        .map(|n| ((*n).to_owned(), "x".to_owned()))
        .collect();
        assert!(refuse_unknown(&env).is_ok());
    }

    #[test]
    fn keys_and_the_variables_around_the_binary_pass() {
        let mut env: HashMap<String, String> = KEYS.iter().map(|k| (k.env.to_owned(), String::new())).collect();
        env.insert("BFF_CONFIG".into(), "/etc/bff.toml".into());
        env.insert("BFF_BIN".into(), "/usr/bin/bff".into());
        env.insert("NOT_OURS".into(), "x".into());
        assert!(refuse_unknown(&env).is_ok());
    }
}
