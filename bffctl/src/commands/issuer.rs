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
        .require_pkce(args.require_pkce)
        .rotate_refresh_tokens(args.rotate_refresh_tokens)
        .run()
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    println!("mock issuer at {} (client {}), listening on {}", issuer.url(), args.client_id, args.listen);
    let pkce = if args.require_pkce { "required" } else { "enforced when the client sends a challenge" };
    let rotation = if args.rotate_refresh_tokens { "rotated at each use" } else { "not rotated" };
    println!("PKCE {pkce}; refresh tokens {rotation}");
    if is_loopback(&args.host) {
        println!(
            "hint: inside a container {} is the container itself; for gateways in containers use \
             --host NAME with NAME mapped to this host (docker: --add-host NAME:host-gateway)",
            args.host
        );
    }
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

/// Whether `host` names this machine's loopback, which a container cannot reach under that name.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) || host.eq_ignore_ascii_case("localhost")
}
