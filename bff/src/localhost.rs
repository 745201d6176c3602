//! `localhost` and `*.localhost` resolve to loopback (RFC 6761 §6.3), as curl and browsers do.
//! glibc resolves `localhost` from `/etc/hosts` but not `issuer.localhost`, so without this a
//! gateway configured with the URL a browser on the same host uses
//! (`http://issuer.localhost:9400`) never loads the issuer's discovery. A name the hosts file
//! maps explicitly keeps that mapping (a container whose `issuer.localhost` is its host's
//! gateway, `--add-host`), as nss-myhostname does; no DNS is asked for a localhost name. Every
//! other name goes to the system resolver.
//!
//! Two resolvers over the same rule: one for the reqwest client that talks to the issuer, one
//! for the hyper connector of the upstream proxy client.

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};

/// Whether `host` is `localhost` or a name under it (case and a final dot aside).
pub fn is_localhost(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    host.eq_ignore_ascii_case("localhost")
        || (host.len() > ".localhost".len()
            && host.as_bytes()[host.len() - ".localhost".len()..].eq_ignore_ascii_case(b".localhost"))
}

/// The loopback addresses, IPv4 first (a server bound to `0.0.0.0` only is still reached).
fn loopback() -> [SocketAddr; 2] {
    [SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), SocketAddr::from((Ipv6Addr::LOCALHOST, 0))]
}

/// Where a localhost name goes: the hosts file's own entry for it, else loopback.
fn localhost_addrs(host: &str) -> Vec<SocketAddr> {
    let mapped = std::fs::read_to_string("/etc/hosts").map(|text| hosts_entry(&text, host)).unwrap_or_default();
    if mapped.is_empty() { loopback().to_vec() } else { mapped }
}

/// The addresses `hosts` (the hosts file's format: an address, then names; `#` comments) gives
/// `name`, in file order.
fn hosts_entry(hosts: &str, name: &str) -> Vec<SocketAddr> {
    let name = name.trim_end_matches('.');
    hosts
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address: std::net::IpAddr = fields.next()?.parse().ok()?;
            fields.any(|n| n.trim_end_matches('.').eq_ignore_ascii_case(name)).then(|| SocketAddr::new(address, 0))
        })
        .collect()
}

/// For `reqwest::ClientBuilder::dns_resolver`.
pub struct LocalhostResolver;

impl reqwest::dns::Resolve for LocalhostResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            if is_localhost(&host) {
                let addrs: reqwest::dns::Addrs = Box::new(localhost_addrs(&host).into_iter());
                return Ok(addrs);
            }
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// For `hyper_util`'s `HttpConnector`: the system resolver (getaddrinfo on a blocking thread),
/// except for localhost names.
#[derive(Clone)]
pub struct LocalhostAwareGai(GaiResolver);

impl Default for LocalhostAwareGai {
    fn default() -> Self {
        LocalhostAwareGai(GaiResolver::new())
    }
}

pub type ResolvedAddrs = Box<dyn Iterator<Item = SocketAddr> + Send>;

impl tower::Service<Name> for LocalhostAwareGai {
    type Response = ResolvedAddrs;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<ResolvedAddrs, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        tower::Service::<Name>::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        if is_localhost(name.as_str()) {
            let addrs: ResolvedAddrs = Box::new(localhost_addrs(name.as_str()).into_iter());
            return Box::pin(std::future::ready(Ok(addrs)));
        }
        let lookup = self.0.call(name);
        Box::pin(async move {
            let addrs: ResolvedAddrs = Box::new(lookup.await?);
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_names_are_localhost_and_their_lookalikes_are_not() {
        for name in ["localhost", "LOCALHOST", "localhost.", "issuer.localhost", "a.b.Localhost."] {
            assert!(is_localhost(name), "{name}");
        }
        for name in ["notlocalhost", "localhost.example", "evil-localhost", ".localhost", "127.0.0.1", ""] {
            assert!(!is_localhost(name), "{name}");
        }
    }

    /// A container's hosts file maps `issuer.localhost` to its host's gateway: that mapping holds.
    #[test]
    fn an_explicit_hosts_entry_wins_over_loopback() {
        let hosts = "127.0.0.1\tlocalhost\n# a comment issuer.localhost\n172.17.0.1 host.docker.internal issuer.localhost # added\n";
        assert_eq!(hosts_entry(hosts, "issuer.localhost"), vec![SocketAddr::from(([172, 17, 0, 1], 0))]);
        assert_eq!(hosts_entry(hosts, "ISSUER.localhost."), vec![SocketAddr::from(([172, 17, 0, 1], 0))]);
        assert!(hosts_entry(hosts, "api.localhost").is_empty(), "unmapped: loopback is used");
    }

    #[tokio::test]
    async fn the_upstream_resolver_answers_loopback_for_localhost_names() {
        use std::str::FromStr;
        let mut resolver = LocalhostAwareGai::default();
        let addrs: Vec<SocketAddr> =
            tower::Service::call(&mut resolver, Name::from_str("api.localhost").unwrap()).await.unwrap().collect();
        assert_eq!(addrs, loopback());
    }
}
