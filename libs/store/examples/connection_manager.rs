//! Measures how `redis::aio::ConnectionManager`, configured as
//! `RedisStore::connect` configures it, behaves while Redis is down: how long
//! a call takes to fail, and whether it reconnects by itself when Redis
//! comes back on the same port.
//!
//! `cargo run -p weir-store --example connection_manager [-- /usr/bin/redis-server]`

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(bin: &str, port: u16) -> Child {
    let child = Command::new(bin)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

async fn ping(conn: &mut ConnectionManager) -> (Duration, Result<String, String>) {
    let t = Instant::now();
    let r = redis::cmd("PING")
        .query_async::<String>(conn)
        .await
        .map_err(|e| {
            format!(
                "{:?} io={} timeout={} dropped={} refused={}: {e}",
                e.kind(),
                e.is_io_error(),
                e.is_timeout(),
                e.is_connection_dropped(),
                e.is_connection_refusal()
            )
        });
    (t.elapsed(), r)
}

#[tokio::main]
async fn main() {
    let bin = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/usr/bin/redis-server".into());
    let port = free_port();
    let mut redis = start(&bin, port);
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let config = weir_store::redis::connection_config();
    println!("config: {config:?}");
    let mut conn = ConnectionManager::new_with_config(client, config)
        .await
        .unwrap();
    println!("up: {:?}", ping(&mut conn).await);

    println!("-- SIGKILL");
    redis.kill().unwrap();
    redis.wait().unwrap();
    for i in 0..6 {
        println!("down call {i}: {:?}", ping(&mut conn).await);
    }
    // Eight concurrent calls while down.
    let t = Instant::now();
    let all = futures_join(&conn, 8).await;
    println!(
        "8 concurrent calls while down: all done in {:?}; each {all:?}",
        t.elapsed()
    );

    println!("-- restarted on the same port");
    let mut redis = start(&bin, port);
    let back = Instant::now();
    for i in 0..5 {
        let r = ping(&mut conn).await;
        println!("after restart call {i} (+{:?}): {r:?}", back.elapsed());
        if r.1.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    println!("-- SIGSTOP (hung server)");
    let pid = redis.id().to_string();
    Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    for i in 0..3 {
        println!("hung call {i}: {:?}", ping(&mut conn).await);
    }
    Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    for i in 0..5 {
        let r = ping(&mut conn).await;
        println!("after SIGCONT call {i}: {r:?}");
        if r.1.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    redis.kill().unwrap();
    let _ = redis.wait();
}

async fn futures_join(conn: &ConnectionManager, n: usize) -> Vec<Duration> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let mut c = conn.clone();
        tasks.push(tokio::spawn(async move { ping(&mut c).await.0 }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}
