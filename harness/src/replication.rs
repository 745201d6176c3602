//! Checks on a Redis master and its replicas, over plain connections to their addresses: what
//! the Sentinel group needs before and after a failover, the same whether its servers run as
//! processes ([`crate::process::SentinelGroup`]) or as containers.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

/// A connection to the server at `address`, bounded by a second to connect and to answer.
pub async fn connect(address: SocketAddr) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://{address}"))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)));
    client.get_multiplexed_async_connection_with_config(&config).await
}

/// `master` or `slave`, as the server at `address` says (`None` when it does not answer).
pub async fn role(address: SocketAddr) -> Option<String> {
    let mut conn = connect(address).await.ok()?;
    let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await.ok()?;
    match role.first()? {
        redis::Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        redis::Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

/// `INFO replication` of the server at `address` (empty when it does not answer).
pub async fn replication_info(address: SocketAddr) -> String {
    let Ok(mut conn) = connect(address).await else { return String::new() };
    redis::cmd("INFO").arg("replication").query_async(&mut conn).await.unwrap_or_default()
}

/// The `slaveN:` lines of an `INFO replication` whose link is online.
pub fn online_replicas(info: &str) -> impl Iterator<Item = &str> {
    info.lines().filter(|line| line.starts_with("slave") && line.contains("state=online"))
}

/// How many replicas the master at `address` calls online.
pub async fn replicas_online(address: SocketAddr) -> usize {
    online_replicas(&replication_info(address).await).count()
}

/// Whether a write on the master reaches every one of `replicas` within 200 ms. `state=online`
/// is not enough: measured here, for about a second after a replica's sync a master's writes do
/// not reach it yet, and a master SIGKILLed then took every write since the sync with it. The
/// marker key expires after a minute.
pub async fn replication_flows(master: SocketAddr, replicas: &[SocketAddr]) -> bool {
    if replicas.is_empty() {
        return false;
    }
    let marker = format!("harness:replication-check:{:016x}", rand::random::<u64>());
    let Ok(mut conn) = connect(master).await else { return false };
    if redis::cmd("SET").arg(&marker).arg(1).arg("PX").arg(60_000).query_async::<()>(&mut conn).await.is_err() {
        return false;
    }
    for _ in 0..10 {
        let mut everywhere = true;
        for replica in replicas {
            let seen = match connect(*replica).await {
                Ok(mut conn) => redis::cmd("EXISTS").arg(&marker).query_async::<u32>(&mut conn).await.unwrap_or(0) == 1,
                Err(_) => false,
            };
            everywhere = everywhere && seen;
        }
        if everywhere {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Until every online replica of the master at `address` has acknowledged the replication
/// stream up to where it was when this was called (replicas acknowledge once a second; writes
/// that go on meanwhile are not waited for). The error quotes the replication state at the end.
pub async fn wait_until_in_sync(address: SocketAddr, bound: Duration) -> Result<(), String> {
    let deadline = Instant::now() + bound;
    let offset = |info: &str| -> Option<u64> {
        info.lines().find_map(|line| line.strip_prefix("master_repl_offset:")).and_then(|v| v.trim().parse().ok())
    };
    let master_offset = offset(&replication_info(address).await);
    loop {
        let info = replication_info(address).await;
        let offsets: Vec<u64> = online_replicas(&info)
            .filter_map(|line| line.split(',').find_map(|kv| kv.strip_prefix("offset="))?.parse().ok())
            .collect();
        if let Some(master_offset) = master_offset
            && !offsets.is_empty()
            && offsets.iter().all(|offset| *offset >= master_offset)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            let state: Vec<&str> =
                info.lines().filter(|l| l.starts_with("slave") || l.starts_with("master_repl_offset")).collect();
            return Err(format!(
                "the replica of the master at {address} did not catch up within {bound:?}: {}",
                state.join("; ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_replicas_whose_link_is_online_count() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
                    slave0:ip=192.168.0.3,port=6379,state=online,offset=42,lag=0\r\n\
                    slave1:ip=192.168.0.4,port=6379,state=wait_bgsave,offset=0,lag=0\r\n\
                    master_repl_offset:42\r\n";
        let online: Vec<&str> = online_replicas(info).collect();
        assert_eq!(online.len(), 1);
        assert!(online[0].contains("192.168.0.3"));
    }
}
