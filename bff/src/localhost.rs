//! `localhost` and `*.localhost` resolve to loopback (RFC 6761 §6.3), as curl and browsers do.
//! glibc resolves `localhost` from `/etc/hosts` but not `issuer.localhost`, so without this a
//! gateway configured with the URL a browser on the same host uses
//! (`http://issuer.localhost:9400`) never loads the issuer's discovery. A name the system
//! resolver does know keeps its answer (a container whose `issuer.localhost` is its host's
//! gateway through `--add-host`, or another container through a network alias); only a
//! localhost name it cannot resolve goes to loopback, as nss-myhostname does. Every other name
//! goes to the system resolver alone.
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

/// For `reqwest::ClientBuilder::dns_resolver`.
pub struct LocalhostResolver;

impl reqwest::dns::Resolve for LocalhostResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await.map(|found| found.collect::<Vec<_>>());
            if is_localhost(&host) && !found.as_ref().is_ok_and(|f| !f.is_empty()) {
                let addrs: reqwest::dns::Addrs = Box::new(loopback().into_iter());
                return Ok(addrs);
            }
            let found = found?;
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
        let localhost = is_localhost(name.as_str());
        let lookup = self.0.call(name);
        Box::pin(async move {
            let found: Result<Vec<SocketAddr>, std::io::Error> = lookup.await.map(|f| f.collect());
            let addrs: ResolvedAddrs = match found {
                Ok(found) if !found.is_empty() => Box::new(found.into_iter()),
                _ if localhost => Box::new(loopback().into_iter()),
                Ok(found) => Box::new(found.into_iter()),
                Err(error) => return Err(error),
            };
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

    /// A localhost name the system knows keeps its address (here `localhost` itself, from the
    /// hosts file); the test below shows the loopback for one it does not know.
    #[tokio::test]
    async fn a_name_the_system_resolves_keeps_its_answer() {
        use std::str::FromStr;
        let mut resolver = LocalhostAwareGai::default();
        let addrs: Vec<SocketAddr> =
            tower::Service::call(&mut resolver, Name::from_str("localhost").unwrap()).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty(), "{addrs:?}");
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
