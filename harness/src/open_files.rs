//! The open-files limit. A run holds a socket per virtual user per connection it keeps (to the
//! load balancer, to each node directly, to the issuer), and the load balancer and the issuer
//! hold the other ends: a thousand users on eight nodes need over ten thousand descriptors,
//! past the usual soft limit of 1 024. The soft limit is raised to the hard one (what
//! `ulimit -n $(ulimit -Hn)` does, no privilege needed); the nodes and Redis started afterwards
//! inherit it.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raises this process's soft limit on open files to its hard limit; returns the limit now in
/// force (the soft one), or the error when it could not be read or set.
/// The open-files limit this process has now (its soft limit).
pub fn current_limit() -> u64 {
    getrlimit(Resource::RLIMIT_NOFILE).map(|(soft, _)| soft).unwrap_or(1024)
}

pub fn raise_to_hard_limit() -> Result<u64, nix::Error> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    // A privileged process may raise the hard limit itself, up to the kernel's ceiling: ten
    // thousand users hold more sockets than a stock 20,000.
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|t| t.trim().parse::<u64>().ok());
    if let Some(ceiling) = ceiling.filter(|c| *c > hard)
        && setrlimit(Resource::RLIMIT_NOFILE, ceiling, ceiling).is_ok()
    {
        return Ok(getrlimit(Resource::RLIMIT_NOFILE)?.0);
    }
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(getrlimit(Resource::RLIMIT_NOFILE)?.0)
}

#[cfg(test)]
mod tests {
    /// After the call the soft limit is at least the hard one (lowered first, so the call has work
    /// to do; a lowered soft limit may be raised again up to the hard one without privileges).
    #[test]
    fn soft_limit_reaches_the_hard_limit() {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        setrlimit(Resource::RLIMIT_NOFILE, hard.min(512), hard).expect("lower the soft limit");
        assert!(super::raise_to_hard_limit().expect("raise") >= hard);
    }
}
