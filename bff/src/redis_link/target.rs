//! Where Redis is: one address (`redis://`, `rediss://`), or a master that Redis Sentinel names
//! and moves on a failover (`redis+sentinel://`). The sentinel form lists every sentinel, since
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
}

/// The sentinel port when an address has none.
pub const SENTINEL_PORT: u16 = 26379;

const SENTINEL_SCHEME: &str = "redis+sentinel://";
const SENTINEL_TLS_SCHEME: &str = "rediss+sentinel://";

impl RedisTarget {
    /// Reads a `redis://`, `rediss://`, `redis+sentinel://` or `rediss+sentinel://` URL; the
    /// error says what is wrong.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (rest, tls) = match (url.strip_prefix(SENTINEL_SCHEME), url.strip_prefix(SENTINEL_TLS_SCHEME)) {
            (Some(rest), _) => (rest, false),
            (_, Some(rest)) => (rest, true),
            (None, None) => {
                let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
                if !matches!(parsed.scheme(), "redis" | "rediss") {
                    return Err("must start with redis://, rediss://, redis+sentinel:// or rediss+sentinel://".into());
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
            RedisTarget::Sentinel { tls, .. } => *tls,
        }
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
        }
    }

    pub fn db(&self) -> i64 {
        match self {
            RedisTarget::Direct { url } => url::Url::parse(url)
                .ok()
                .and_then(|u| u.path().trim_start_matches('/').parse::<i64>().ok())
                .unwrap_or(0),
            RedisTarget::Sentinel { db, .. } => *db,
        }
    }

    pub fn password(&self) -> Option<String> {
        match self {
            RedisTarget::Direct { url } => url::Url::parse(url).ok().and_then(|u| u.password().map(str::to_owned)),
            RedisTarget::Sentinel { password, .. } => password.clone(),
        }
    }
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
