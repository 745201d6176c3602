//! What a session read costs Redis in writes: commands, write commands, AOF bytes and
//! replication bytes per read, against a real master (append-only file on) with one replica.
//!
//! The test proves that a read which is not due (more than `idle - touch_interval` left) writes
//! nothing anywhere, and that the same measurement sees the writes of a read that pushes the
//! expiry every time. The ignored benchmark prints the figures of the docs chapter
//! (`docs/src/sessions-expiry.md`):
//! `cargo test -p bff --test session_read_writes -- --ignored --nocapture` (counts, not
//! timings: a debug build gives the same figures).

use std::time::Duration;

use bff::redis_link::RedisLink;
use bff::session::{RedisStore, SessionStore};
use harness::RedisProcess;

const IDLE: Duration = Duration::from_secs(20 * 60);
const DEFAULT_TOUCH: Duration = Duration::from_secs(60);

/// A master with the append-only file on and a replica of it, in sync.
async fn master_and_replica() -> (RedisProcess, RedisProcess) {
    let master = RedisProcess::start(true).await.unwrap();
    let replica = RedisProcess::start_with(
        harness::process::free_port(),
        false,
        vec!["--replicaof".into(), "127.0.0.1".into(), master.port().to_string()],
    )
    .await
    .unwrap();
    let mut conn = connect(&master).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !info(&mut conn, "replication").await.contains("state=online") {
        assert!(tokio::time::Instant::now() < deadline, "the replica never came in sync");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (master, replica)
}

async fn connect(server: &RedisProcess) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
}

async fn info(conn: &mut redis::aio::MultiplexedConnection, section: &str) -> String {
    redis::cmd("INFO").arg(section).query_async(conn).await.unwrap()
}

fn field(info: &str, name: &str) -> u64 {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("INFO has no {name}"))
        .trim()
        .parse()
        .unwrap()
}

/// Calls of one command in `INFO commandstats` (0 when never called).
fn calls(stats: &str, command: &str) -> u64 {
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .unwrap_or(0)
}

/// What Redis did, read from `INFO`.
#[derive(Clone, Copy)]
struct Counters {
    /// Commands clients sent (the read: `EVALSHA`, `EVAL`, `GETEX`).
    sent: u64,
    /// Write commands run, on their own or inside a script (`GETEX`, `PEXPIRE`).
    writes: u64,
    aof_bytes: u64,
    replication_bytes: u64,
}

async fn counters(conn: &mut redis::aio::MultiplexedConnection) -> Counters {
    let stats = info(conn, "commandstats").await;
    Counters {
        sent: ["evalsha", "eval", "getex"].iter().map(|c| calls(&stats, c)).sum(),
        writes: ["getex", "pexpire"].iter().map(|c| calls(&stats, c)).sum(),
        aof_bytes: field(&info(conn, "persistence").await, "aof_current_size"),
        replication_bytes: field(&info(conn, "replication").await, "master_repl_offset"),
    }
}

/// Per read, over `reads` reads.
struct PerRead {
    sent: f64,
    writes: f64,
    aof_bytes: f64,
    replication_bytes: f64,
}

/// How a read is made.
#[derive(Clone, Copy)]
enum Read {
    /// `GETEX key EX idle`: every read pushes the expiry (the read before this change).
    Getex,
    /// The store's read with this touch interval.
    Store(Duration),
}

/// Writes `sessions` sessions, then reads them round-robin `reads` times; answers what the reads
/// cost (the writes of the set-up are not counted).
async fn measure(master: &RedisProcess, read: Read, sessions: usize, reads: usize) -> PerRead {
    let link = RedisLink::new(&master.url(), Duration::from_secs(2)).unwrap();
    link.connect().await;
    let store = RedisStore::new(link, "bench");
    let mut conn = connect(master).await;
    let () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    let value = vec![7u8; 600];
    for i in 0..sessions {
        store.put(&format!("s:{i}"), value.clone(), IDLE).await.unwrap();
    }
    let before = counters(&mut conn).await;
    for i in 0..reads {
        let key = format!("s:{}", i % sessions);
        let found = match read {
            Read::Getex => {
                let mut cmd = redis::cmd("GETEX");
                cmd.arg(format!("bench:{key}")).arg("EX").arg(IDLE.as_secs());
                cmd.query_async::<Option<Vec<u8>>>(&mut conn).await.unwrap()
            }
            Read::Store(touch) => store.get_and_touch(&key, IDLE, touch).await.unwrap(),
        };
        assert!(found.is_some(), "session {key} is there");
    }
    let after = counters(&mut conn).await;
    let per = |a: u64, b: u64| (a - b) as f64 / reads as f64;
    PerRead {
        sent: per(after.sent, before.sent),
        writes: per(after.writes, before.writes),
        aof_bytes: per(after.aof_bytes, before.aof_bytes),
        replication_bytes: per(after.replication_bytes, before.replication_bytes),
    }
}

#[tokio::test]
async fn reads_that_are_not_due_reach_neither_the_aof_nor_the_replicas() {
    let (master, _replica) = master_and_replica().await;
    let reads = 500;
    let quiet = measure(&master, Read::Store(DEFAULT_TOUCH), 50, reads).await;
    // The first read finds the script unknown (`NOSCRIPT`) and sends its body once.
    assert!(quiet.sent <= 1.0 + 1.0 / reads as f64, "one command per read: {}", quiet.sent);
    assert_eq!(quiet.writes, 0.0, "no write command runs");
    assert_eq!(quiet.aof_bytes, 0.0, "nothing is appended to the AOF");
    // The master pings its replicas every 10 s through the replication stream (14 bytes).
    assert!(quiet.replication_bytes * (reads as f64) < 100.0, "{} bytes replicated", quiet.replication_bytes);
    // The same measurement sees every read write when every read is due.
    let busy = measure(&master, Read::Store(Duration::ZERO), 50, reads).await;
    assert_eq!(busy.writes, 1.0);
    assert!(busy.aof_bytes > 20.0 && busy.replication_bytes > 20.0, "a pushed expiry is replicated");
}

/// A replica refuses the read (`READONLY`), as it refused `GETEX`: a node whose link reached a
/// demoted master learns it from its next read instead of serving what may be stale there.
#[tokio::test]
async fn a_replica_refuses_the_read() {
    let (master, replica) = master_and_replica().await;
    let on_master = RedisStore::new(
        {
            let link = RedisLink::new(&master.url(), Duration::from_secs(2)).unwrap();
            link.connect().await;
            link
        },
        "bench",
    );
    on_master.put("s:r", b"x".to_vec(), IDLE).await.unwrap();
    let link = RedisLink::new(&replica.url(), Duration::from_secs(2)).unwrap();
    link.connect().await;
    let on_replica = RedisStore::new(link, "bench");
    let answer = on_replica.get_and_touch("s:r", IDLE, DEFAULT_TOUCH).await;
    assert!(answer.as_ref().is_err_and(|e| e.to_string().contains("read only replica")), "{answer:?}");
    assert!(on_master.get_and_touch("s:r", IDLE, DEFAULT_TOUCH).await.unwrap().is_some());
}

#[tokio::test]
#[ignore = "benchmark: prints the figures of docs/src/sessions-expiry.md"]
async fn session_read_writes_benchmark() {
    let (master, _replica) = master_and_replica().await;
    let (sessions, reads) = (1000, 20_000);
    let mut table = comfy_table::Table::new();
    table.set_header(["read", "commands/read", "writes/read", "AOF bytes/read", "replication bytes/read"]);
    for (name, read) in [
        ("GETEX key EX idle (before)", Read::Getex),
        ("read script, touch_interval 0", Read::Store(Duration::ZERO)),
        ("read script, touch_interval 60s (default)", Read::Store(DEFAULT_TOUCH)),
    ] {
        let cost = measure(&master, read, sessions, reads).await;
        table.add_row([
            name.to_owned(),
            format!("{:.3}", cost.sent),
            format!("{:.3}", cost.writes),
            format!("{:.1}", cost.aof_bytes),
            format!("{:.1}", cost.replication_bytes),
        ]);
    }
    println!("{sessions} sessions, {reads} reads round-robin, idle timeout 20m; master with AOF + 1 replica");
    println!("{table}");
}
