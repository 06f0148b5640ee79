//! Prometheus metrics through the `metrics` facade and `metrics-exporter-prometheus`, served by
//! a small HTTP responder of our own on `--metrics-addr`:
//!
//! - `GET /metrics`: the exposition text. Gauges (keys, pool and WAL bytes, clients, epoch
//!   garbage) and per-command call counters are refreshed from the server at each scrape, so a
//!   scrape is never staler than the request. The latency histograms are ours
//!   ([`crate::latency`]), appended to the exporter's text.
//! - `GET /health`: `200 OK` while serving, `503` once a shutdown has begun.
//!
//! Our own responder rather than the exporter's hyper listener: it refreshes the gauges at
//! scrape time, answers 404 for other paths, reports draining as unhealthy, and keeps hyper out
//! of the build.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::cmd::Shared;

/// Installs the global recorder (once per process) and returns the handle that renders it.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| e.to_string())?;
    metrics::describe_counter!("eagle_commands_total", "Commands run, by command.");
    metrics::describe_gauge!("eagle_connected_clients", "Clients connected.");
    metrics::describe_gauge!("eagle_keys", "Keys in the keyspace.");
    metrics::describe_counter!(
        "eagle_expired_keys_total",
        "Keys removed because they expired."
    );
    metrics::describe_counter!(
        "eagle_evicted_keys_total",
        "Keys evicted from the full pool (maxmemory-policy; INFO's evicted_keys)."
    );
    metrics::describe_counter!(
        "eagle_keyspace_hits_total",
        "Key lookups by read commands that found the key (INFO's keyspace_hits)."
    );
    metrics::describe_counter!(
        "eagle_keyspace_misses_total",
        "Key lookups by read commands that found no key (INFO's keyspace_misses)."
    );
    metrics::describe_gauge!(
        "eagle_pool_used_bytes",
        "Heap bytes handed out in the pool."
    );
    metrics::describe_gauge!("eagle_pool_free_bytes", "Heap bytes free in the pool.");
    metrics::describe_gauge!(
        "eagle_pool_free_chunks",
        "Heap chunks (256 KiB) assigned to nothing."
    );
    metrics::describe_gauge!(
        "eagle_pool_reserved_chunks",
        "Free chunks held back for HDEL, RENAME and logged multi-key writes (fewer may be free)."
    );
    metrics::describe_counter!(
        "eagle_hash_part_appends_total",
        "Large-hash parts grown by appending new fields in place."
    );
    metrics::describe_counter!(
        "eagle_hash_part_writes_total",
        "Large-hash parts written anew (a copy of the part with the change)."
    );
    metrics::describe_counter!(
        "eagle_hash_table_doublings_total",
        "Large-hash tables doubled without rewriting their parts."
    );
    metrics::describe_gauge!("eagle_wal_used_bytes", "Write-ahead log bytes in use.");
    metrics::describe_gauge!("eagle_wal_capacity_bytes", "Write-ahead log capacity.");
    metrics::describe_gauge!(
        "eagle_epoch_garbage_bytes",
        "Bytes retired to epoch reclamation, not yet freed."
    );
    metrics::describe_gauge!(
        "eagle_recovery_duration_seconds",
        "How long opening (and recovering) the pool took."
    );
    metrics::describe_counter!("eagle_connections_total", "Connections accepted.");
    metrics::describe_counter!(
        "eagle_rejected_connections_total",
        "Connections refused for maxclients."
    );
    metrics::describe_counter!(
        "eagle_protocol_errors_total",
        "Connections closed for a malformed request."
    );
    metrics::describe_counter!(
        "eagle_grouped_sets_total",
        "Pipelined SETs run in groups that share their fences."
    );
    metrics::describe_counter!(
        "eagle_grouped_incrs_total",
        "Pipelined INCRs and DECRs run in groups that share their fences."
    );
    Ok(handle)
}

/// Copies the server's counters and the keyspace's numbers into the recorder.
pub fn refresh(shared: &Shared) {
    let server = &shared.server;
    let stats = shared.db.stats();
    let engine = shared.db.engine();
    gauge!("eagle_connected_clients").set(server.clients.connected() as f64);
    gauge!("eagle_keys").set(stats.keys as f64);
    counter!("eagle_expired_keys_total").absolute(stats.expired_keys);
    counter!("eagle_evicted_keys_total").absolute(stats.evicted_keys);
    counter!("eagle_keyspace_hits_total").absolute(stats.keyspace_hits);
    counter!("eagle_keyspace_misses_total").absolute(stats.keyspace_misses);
    gauge!("eagle_pool_used_bytes").set(stats.heap.used as f64);
    gauge!("eagle_pool_free_bytes").set(stats.heap.free() as f64);
    gauge!("eagle_pool_free_chunks").set(f64::from(stats.heap.free_chunks));
    gauge!("eagle_pool_reserved_chunks").set(f64::from(stats.heap.reserved_chunks));
    counter!("eagle_hash_part_appends_total").absolute(stats.hash_part_appends);
    counter!("eagle_hash_part_writes_total").absolute(stats.hash_part_writes);
    counter!("eagle_hash_table_doublings_total").absolute(stats.hash_table_doublings);
    gauge!("eagle_wal_used_bytes").set(stats.wal_used as f64);
    gauge!("eagle_wal_capacity_bytes").set(stats.wal_capacity as f64);
    gauge!("eagle_epoch_garbage_bytes").set(stats.index.garbage_bytes as f64);
    gauge!("eagle_recovery_duration_seconds").set(engine.open_ns() as f64 / 1e9);
    let st = &server.stats;
    counter!("eagle_connections_total").absolute(st.connections_received.load(Ordering::Relaxed));
    counter!("eagle_rejected_connections_total")
        .absolute(st.rejected_connections.load(Ordering::Relaxed));
    counter!("eagle_protocol_errors_total").absolute(st.protocol_errors.load(Ordering::Relaxed));
    counter!("eagle_grouped_sets_total").absolute(st.grouped_sets.load(Ordering::Relaxed));
    counter!("eagle_grouped_incrs_total").absolute(st.grouped_incrs.load(Ordering::Relaxed));
    for (name, cmd) in st.cmds() {
        let calls = cmd.calls.load(Ordering::Relaxed);
        if calls > 0 {
            counter!("eagle_commands_total", "cmd" => *name).absolute(calls);
        }
    }
}

/// Serves `/metrics` and `/health` on `listener` until the server shuts down.
pub async fn serve_http(listener: TcpListener, handle: PrometheusHandle, shared: Arc<Shared>) {
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let handle = handle.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(10), respond(stream, &handle, &shared))
                    .await;
        });
    }
}

/// Reads one request head and answers it.
async fn respond(mut stream: TcpStream, handle: &PrometheusHandle, shared: &Shared) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 16 * 1024 {
            let _ = write_response(&mut stream, 431, "text/plain", b"header too large\n").await;
            return;
        }
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("").split('?').next().unwrap_or("");
    let (status, ctype, body): (u16, &str, Vec<u8>) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            refresh(shared);
            (200, "text/plain; version=0.0.4; charset=utf-8", {
                let cmds = shared.server.stats.cmds().iter();
                let latency = crate::latency::render(cmds.map(|(n, s)| (*n, &s.latency)));
                (handle.render() + &latency).into_bytes()
            })
        }
        ("GET" | "HEAD", "/health") => {
            if shared.server.shutting_down() {
                (503, "text/plain", b"shutting down\n".to_vec())
            } else {
                (200, "text/plain", b"OK\n".to_vec())
            }
        }
        ("GET" | "HEAD", _) => (
            404,
            "text/plain",
            b"not found: try /metrics or /health\n".to_vec(),
        ),
        _ => (405, "text/plain", b"method not allowed\n".to_vec()),
    };
    let body = if method == "HEAD" { &[][..] } else { &body[..] };
    let _ = write_response(&mut stream, status, ctype, body).await;
}

async fn write_response(
    stream: &mut TcpStream,
    status: u16,
    ctype: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}
