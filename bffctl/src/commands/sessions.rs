//! `sessions list|end`: a user's sessions through a gateway's session API for operators
//! ([`harness::session_api`]), on a deployment (`--target`, `--ops-token`) or on the cluster a
//! `bffctl up` runs (its state file gives both).

use std::process::ExitCode;

use anyhow::Context;
use harness::cluster::control::ControlClient;
use harness::session_api::{SessionApi, Whose};

use crate::cli::{SessionsAction, SessionsArgs};
use crate::output;

pub async fn run(args: SessionsArgs) -> anyhow::Result<ExitCode> {
    let (api, whose) = connect(&args)?;
    match args.action {
        SessionsAction::List => {
            anyhow::ensure!(args.id.is_none(), "--id names the session to end: use it with `end`");
            output::sessions(&api.list(&whose).await?, args.output.json);
        }
        SessionsAction::End => output::sessions_ended(&api.end(&whose, args.id.as_deref()).await?, args.output.json),
    }
    Ok(ExitCode::SUCCESS)
}

/// The API to ask and whose sessions: `--target`/`--ops-token` as given, the rest from the
/// cluster `bffctl up` runs.
fn connect(args: &SessionsArgs) -> anyhow::Result<(SessionApi, Whose)> {
    let whose = match (&args.sub, &args.sid) {
        (Some(sub), _) => Whose::Sub(sub.clone()),
        (None, Some(sid)) => Whose::Sid(sid.clone()),
        (None, None) => anyhow::bail!("name the user: --sub S or --sid S"),
    };
    let (target, token) = match (&args.target, &args.ops_token) {
        (Some(target), Some(token)) => (target.clone(), token.clone()),
        (target, token) => {
            let state = args.state.path();
            let cluster = ControlClient::open(&state).with_context(|| match target {
                Some(_) => "--target needs --ops-token (or BFF_OPS_TOKEN)",
                None => "no --target given, and no cluster up",
            })?;
            let token = match token {
                Some(token) => token.clone(),
                None => cluster.file.ops_token.clone().context(
                    "the cluster's state file has no ops token (started by an older bffctl): give --ops-token",
                )?,
            };
            (target.clone().unwrap_or_else(|| cluster.file.lb_url.clone()), token)
        }
    };
    Ok((SessionApi::new(&target, &token), whose))
}
