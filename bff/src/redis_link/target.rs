//! Where Redis is: one address (`redis://`, `rediss://`), a master that Redis Sentinel names
//! and moves on a failover (`redis+sentinel://`), or a Redis Cluster found through any of its
//! seed nodes (`redis+cluster://[user:password@]host:port,host:port…`, `rediss+cluster://` for
//! TLS; port 6379 by default; no database: a cluster has only database 0). The sentinel form lists every sentinel, since
//! any one of them may be down when a node starts or the master moves:
//! `redis+sentinel://[:password@]host[:port][,host[:port]…]/master-name[/db]` (port 26379 by
//! default; the password is the master's), or `rediss+sentinel://…` for TLS to the sentinels and
//! to the master. The standard `url` parser reads a comma in the host part as a bad port, so this
//! form is read here.

/// A parsed Redis location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server, reconnected to at the same address.
    Direct { url: String },
    /// The master of `master`, as the sentinels say; `tls`: sentinels and master over TLS.
    Sentinel { sentinels: Vec<(String, u16)>, master: String, db: i64, password: Option<String>, tls: bool },
    /// A Redis Cluster; `seeds` are one `redis://` (or `rediss://`) URL per seed node, with the
    /// credentials, as redis-rs's cluster client takes them.
    Cluster { seeds: Vec<String>, hosts: Vec<(String, u16)>, tls: bool },
}

/// The sentinel port when an address has none.
pub const SENTINEL_PORT: u16 = 26379;

const SENTINEL_SCHEME: &str = "redis+sentinel://";
const SENTINEL_TLS_SCHEME: &str = "rediss+sentinel://";
const CLUSTER_SCHEME: &str = "redis+cluster://";
const CLUSTER_TLS_SCHEME: &str = "rediss+cluster://";
/// The port of a seed node given without one.
pub const REDIS_PORT: u16 = 6379;

impl RedisTarget {
    /// Reads a `redis://`, `rediss://`, `redis+sentinel://`, `rediss+sentinel://`,
    /// `redis+cluster://` or `rediss+cluster://` URL; the error says what is wrong.
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some((rest, tls)) = url
            .strip_prefix(CLUSTER_SCHEME)
            .map(|rest| (rest, false))
            .or_else(|| url.strip_prefix(CLUSTER_TLS_SCHEME).map(|rest| (rest, true)))
        {
            return parse_cluster(rest, tls);
        }
        let (rest, tls) = match (url.strip_prefix(SENTINEL_SCHEME), url.strip_prefix(SENTINEL_TLS_SCHEME)) {
            (Some(rest), _) => (rest, false),
            (_, Some(rest)) => (rest, true),
            (None, None) => {
                let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
                if !matches!(parsed.scheme(), "redis" | "rediss") {
                    return Err("must start with redis://, rediss://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://".into());
                }
                return Ok(RedisTarget::Direct { url: url.to_owned() });
            }
        };
        let (authority, path) =
            rest.split_once('/').ok_or("redis+sentinel:// needs /master-name after the sentinels")?;
        let (password, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => {
                let password = userinfo.split_once(':').map_or(userinfo, |(_, password)| password);
                (Some(password).filter(|p| !p.is_empty()).map(str::to_owned), hosts)
            }
            None => (None, authority),
        };
        let sentinels = parse_sentinels(hosts)?;
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let master = segments.next().ok_or("redis+sentinel:// needs /master-name after the sentinels")?.to_owned();
        let db = match segments.next() {
            None => 0,
            Some(db) => db.parse::<i64>().map_err(|_| format!("database must be a number, got {db:?}"))?,
        };
        if let Some(extra) = segments.next() {
            return Err(format!("unexpected {extra:?} after /master-name/db"));
        }
        Ok(RedisTarget::Sentinel { sentinels, master, db, password, tls })
    }

    /// Whether the connections are TLS (`rediss://`, `rediss+sentinel://`).
    pub fn tls(&self) -> bool {
        match self {
            RedisTarget::Direct { url } => url.starts_with("rediss://"),
            RedisTarget::Sentinel { tls, .. } | RedisTarget::Cluster { tls, .. } => *tls,
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisTarget::Cluster { .. })
    }

    /// The canonical URL for sentinels given one by one (`redis_sentinels`) and a master name.
    pub fn sentinel_url(sentinels: &str, master: &str) -> Result<String, String> {
        let sentinels = parse_sentinels(sentinels)?;
        if master.is_empty() || master.contains(['/', ' ']) {
            return Err(format!("not a master name: {master:?}"));
        }
        let hosts: Vec<String> = sentinels.iter().map(|(host, port)| format!("{host}:{port}")).collect();
        Ok(format!("{SENTINEL_SCHEME}{}/{master}", hosts.join(",")))
    }

    /// What every node must agree on, without the password: the address, or the sentinels and
    /// the master name.
    pub fn address(&self) -> String {
        match self {
            RedisTarget::Direct { url } => match url::Url::parse(url) {
                Ok(u) => format!("{}://{}:{}", u.scheme(), u.host_str().unwrap_or(""), u.port().unwrap_or(6379)),
                Err(_) => String::new(),
            },
            RedisTarget::Sentinel { sentinels, master, tls, .. } => {
                let mut hosts: Vec<String> = sentinels.iter().map(|(host, port)| format!("{host}:{port}")).collect();
                hosts.sort();
                let scheme = if *tls { SENTINEL_TLS_SCHEME } else { SENTINEL_SCHEME };
                format!("{scheme}{}/{master}", hosts.join(","))
            }
            RedisTarget::Cluster { hosts, tls, .. } => {
                let mut hosts: Vec<String> = hosts.iter().map(|(host, port)| format!("{host}:{port}")).collect();
                hosts.sort();
                hosts.dedup();
                let scheme = if *tls { CLUSTER_TLS_SCHEME } else { CLUSTER_SCHEME };
                format!("{scheme}{}", hosts.join(","))
            }
        }
    }

    pub fn db(&self) -> i64 {
        match self {
            RedisTarget::Direct { url } => url::Url::parse(url)
                .ok()
                .and_then(|u| u.path().trim_start_matches('/').parse::<i64>().ok())
                .unwrap_or(0),
            RedisTarget::Sentinel { db, .. } => *db,
            RedisTarget::Cluster { .. } => 0,
        }
    }

    pub fn password(&self) -> Option<String> {
        match self {
            RedisTarget::Direct { url } => url::Url::parse(url).ok().and_then(|u| u.password().map(str::to_owned)),
            RedisTarget::Sentinel { password, .. } => password.clone(),
            RedisTarget::Cluster { seeds, .. } => {
                seeds.first().and_then(|seed| url::Url::parse(seed).ok()).and_then(|u| u.password().map(str::to_owned))
            }
        }
    }
}

/// `[user:password@]host[:port],host[:port]…[/]` after `redis+cluster://`: one seed URL per host,
/// each with the credentials. A path other than `/` or `/0` is refused: a cluster has one
/// database.
fn parse_cluster(rest: &str, tls: bool) -> Result<RedisTarget, String> {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !matches!(path, "" | "0") {
        return Err(format!("a Redis Cluster has only database 0; unexpected /{path} after the seed nodes"));
    }
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    let hosts = hosts
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|address| {
            let (host, port) = match address.rsplit_once(':') {
                Some((host, port)) if !host.ends_with(':') => {
                    (host, port.parse::<u16>().map_err(|_| format!("bad port in seed node address {address:?}"))?)
                }
                _ => (address, REDIS_PORT),
            };
            if host.is_empty() || host.contains(['/', '@', ' ', '?', '#']) {
                return Err(format!("not a seed node address: {address:?}"));
            }
            Ok((host.to_owned(), port))
        })
        .collect::<Result<Vec<_>, String>>()?;
    if hosts.is_empty() {
        return Err("redis+cluster:// needs at least one seed node (host:port)".into());
    }
    let scheme = if tls { "rediss" } else { "redis" };
    let credentials = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    let seeds = hosts
        .iter()
        .map(|(host, port)| {
            let seed = format!("{scheme}://{credentials}{host}:{port}");
            url::Url::parse(&seed).map_err(|e| format!("seed node {host}:{port}: {e}"))?;
            Ok(seed)
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(RedisTarget::Cluster { seeds, hosts, tls })
}

/// `host:port,host:port…` (the port required), at least one: the addresses a master may have
/// (`redis_sentinel_masters`). Hosts are kept without IPv6 brackets, as sentinels name them.
pub fn parse_master_addresses(list: &str) -> Result<Vec<(String, u16)>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|address| {
            let (host, port) = address.rsplit_once(':').ok_or(format!("{address:?} needs a port (host:port)"))?;
            let port = port.parse::<u16>().map_err(|_| format!("bad port in {address:?}"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() || host.contains(['/', '@', ' ']) {
                return Err(format!("not a host:port: {address:?}"));
            }
            Ok((host.to_owned(), port))
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|masters| if masters.is_empty() { Err("no address given".into()) } else { Ok(masters) })
}

/// `host[:port],host[:port]…`, at least one.
fn parse_sentinels(list: &str) -> Result<Vec<(String, u16)>, String> {
    let sentinels = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|address| {
            let (host, port) = match address.rsplit_once(':') {
                Some((host, port)) => {
                    (host, port.parse::<u16>().map_err(|_| format!("bad port in sentinel address {address:?}"))?)
                }
                None => (address, SENTINEL_PORT),
            };
            if host.is_empty() || host.contains(['/', '@', ' ']) {
                return Err(format!("not a sentinel address: {address:?}"));
            }
            Ok((host.to_owned(), port))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if sentinels.is_empty() {
        return Err("no sentinel address given".into());
    }
    Ok(sentinels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sentinels_master_db_and_password() {
        let target = RedisTarget::parse("redis+sentinel://:pw@10.0.0.1:26380,sentinel-b,[::1]:1/cache/3").unwrap();
        assert_eq!(
            target,
            RedisTarget::Sentinel {
                sentinels: vec![("10.0.0.1".into(), 26380), ("sentinel-b".into(), SENTINEL_PORT), ("[::1]".into(), 1)],
                master: "cache".into(),
                db: 3,
                password: Some("pw".into()),
                tls: false,
            }
        );
        assert_eq!(target.address(), "redis+sentinel://10.0.0.1:26380,[::1]:1,sentinel-b:26379/cache");
        let tls = RedisTarget::parse("rediss+sentinel://s1:26379/cache").unwrap();
        assert!(tls.tls() && matches!(tls, RedisTarget::Sentinel { ref master, .. } if master == "cache"));
        assert_eq!(tls.address(), "rediss+sentinel://s1:26379/cache");
    }

    #[test]
    fn reads_cluster_seeds_with_credentials_and_tls() {
        let target = RedisTarget::parse("redis+cluster://app:s%40cret@10.0.0.2:7001,10.0.0.1,[::1]:7003").unwrap();
        let RedisTarget::Cluster { seeds, hosts, tls } = &target else { panic!("{target:?}") };
        assert!(!tls);
        assert_eq!(hosts, &[("10.0.0.2".into(), 7001), ("10.0.0.1".into(), REDIS_PORT), ("[::1]".into(), 7003)]);
        assert_eq!(seeds[0], "redis://app:s%40cret@10.0.0.2:7001");
        assert_eq!(target.password().as_deref(), Some("s%40cret"));
        // Sorted: the same seeds in another order are the same target for the drift check.
        assert_eq!(target.address(), "redis+cluster://10.0.0.1:6379,10.0.0.2:7001,[::1]:7003");
        let tls = RedisTarget::parse("rediss+cluster://a:1,b:2/").unwrap();
        assert!(tls.tls() && tls.is_cluster());
        assert_eq!(tls.address(), "rediss+cluster://a:1,b:2");
        let RedisTarget::Cluster { seeds, .. } = tls else { unreachable!() };
        assert_eq!(seeds, ["rediss://a:1", "rediss://b:2"]);
        for (bad, words) in [
            ("redis+cluster://", "at least one seed"),
            ("redis+cluster://a:x", "bad port"),
            ("redis+cluster://a:1/3", "only database 0"),
            ("redis+cluster://a b:1", "not a seed node"),
        ] {
            let error = RedisTarget::parse(bad).unwrap_err();
            assert!(error.contains(words), "{bad}: {error}");
        }
    }

    #[test]
    fn master_addresses_need_a_port() {
        assert_eq!(
            parse_master_addresses("10.0.0.5:6379, [::1]:6380").unwrap(),
            vec![("10.0.0.5".to_owned(), 6379), ("::1".to_owned(), 6380)]
        );
        for bad in ["", "10.0.0.5", "a:x", ":1"] {
            assert!(parse_master_addresses(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        for (url, words) in [
            ("redis+sentinel://a:1,b:2", "master-name"),
            ("redis+sentinel://a:x/m", "bad port"),
            ("redis+sentinel:///m", "no sentinel"),
            ("redis+sentinel://a/m/zero", "database must be a number"),
            ("http://a", "must start with"),
        ] {
            let error = RedisTarget::parse(url).unwrap_err();
            assert!(error.contains(words), "{url}: {error}");
        }
    }

    #[test]
    fn sentinels_given_one_by_one_make_the_same_target() {
        let url = RedisTarget::sentinel_url("a:1, b", "mymaster").unwrap();
        assert_eq!(url, "redis+sentinel://a:1,b:26379/mymaster");
        assert!(matches!(RedisTarget::parse(&url), Ok(RedisTarget::Sentinel { .. })));
        assert!(RedisTarget::sentinel_url("a:1", "").is_err());
    }
}
