//! `bffctl issuer`: the mock OpenID Connect issuer on its own, so a deployment bffctl did not
//! build (a staging gateway, the compose deployment in `deploy/compose/`) can log users in
//! without a real identity provider. It runs until Ctrl-C or SIGTERM (a container stop).

use std::process::ExitCode;

use harness::MockIssuer;

use crate::cli::IssuerArgs;

pub async fn run(args: IssuerArgs) -> anyhow::Result<ExitCode> {
    let mut builder = MockIssuer::builder();
    if args.form_login {
        let file = args.users_file.as_ref().ok_or_else(|| anyhow::anyhow!("--form-login needs --users-file FILE"))?;
        let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let users = harness::login_form::read_users(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        println!("form login for {} user(s) from {}", users.len(), file.display());
        builder = builder.form_login(users);
    }
    let issuer = builder
        .bind(args.listen)
        .host(&args.host)
        .client(&args.client_id, &args.client_secret)
        .redirect_uris(args.redirect_uris.clone())
        .run()
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    println!("mock issuer at {} (client {}), listening on {}", issuer.url(), args.client_id, args.listen);
    if !args.redirect_uris.is_empty() {
        println!("registered redirect URIs: {}", args.redirect_uris.join(", "));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(ExitCode::SUCCESS)
}
