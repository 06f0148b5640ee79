//! Protected mode: without a password, clients that are not on the loopback interface get
//! Redis 7's DENIED error and are disconnected. The sandbox only allows loopback traffic, so the
//! refusal is checked on the connection handler itself with a non-loopback peer address (over
//! an in-memory stream), and on the real binary bound to 0.0.0.0 for loopback clients.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use common::*;
use eagle_core::pmem::FlushMode;
use eagle_core::{Db, DbOptions, PoolOptions};
use eagle_server::cmd::Shared;
use eagle_server::config::Config;
use eagle_server::net::{PROTECTED_MODE_ERROR, protected_mode_denies, serve_connection};
use eagle_server::state::{OpenKind, ServerState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn the_decision_refuses_only_remote_clients_without_a_password() {
    let remote: IpAddr = "192.0.2.7".parse().unwrap();
    let remote6: IpAddr = "2001:db8::1".parse().unwrap();
    for local in ["127.0.0.1", "127.3.4.5", "::1", "::ffff:127.0.0.1"] {
        assert!(
            !protected_mode_denies(true, false, local.parse().unwrap()),
            "{local}"
        );
    }
    assert!(protected_mode_denies(true, false, remote));
    assert!(protected_mode_denies(true, false, remote6));
    assert!(protected_mode_denies(
        true,
        false,
        "::ffff:192.0.2.7".parse().unwrap()
    ));
    assert!(
        !protected_mode_denies(true, true, remote),
        "a password lifts it"
    );
    assert!(
        !protected_mode_denies(false, false, remote),
        "protected-mode no lifts it"
    );
}

fn shared(dir: &TempDir, config: Config) -> Arc<Shared> {
    let db = Db::open(
        dir.join("p.pool"),
        DbOptions {
            pool: PoolOptions {
                size: 16 << 20,
                flush: Some(FlushMode::None),
                ..PoolOptions::default()
            },
            ..DbOptions::default()
        },
    )
    .unwrap();
    Arc::new(Shared {
        db: Arc::new(db),
        server: ServerState::new(config, OpenKind::Created),
    })
}

/// Runs one connection from `peer` sending `request`; everything the server wrote back.
fn talk(shared: &Arc<Shared>, peer: &str, request: &[u8]) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut client, server_end) = tokio::io::duplex(1 << 16);
        let peer: SocketAddr = peer.parse().unwrap();
        let local: SocketAddr = "0.0.0.0:6379".parse().unwrap();
        let shared = shared.clone();
        let task =
            tokio::spawn(
                async move { serve_connection(server_end, peer, local, -1, &shared).await },
            );
        client.write_all(request).await.unwrap();
        client.shutdown().await.unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        task.await.unwrap();
        out
    })
}

#[test]
fn a_remote_client_gets_denied_and_closed_a_local_one_is_served() {
    let dir = TempDir::new("protected");
    let shared = shared(&dir, Config::default());
    let out = talk(&shared, "192.0.2.7:40000", b"PING\r\n");
    assert_eq!(out, PROTECTED_MODE_ERROR);
    assert!(out.starts_with(
        b"-DENIED Redis is running in protected mode because protected mode is enabled and no \
          password is set for the default user."
    ));
    assert_eq!(talk(&shared, "127.0.0.1:40000", b"PING\r\n"), b"+PONG\r\n");
    assert_eq!(talk(&shared, "[::1]:40000", b"PING\r\n"), b"+PONG\r\n");

    // With a password the remote client is let in (and must authenticate).
    shared
        .server
        .update_config(|c| c.requirepass = Some("pw".into()));
    assert_eq!(
        talk(&shared, "192.0.2.7:40000", b"PING\r\nAUTH pw\r\nPING\r\n"),
        b"-NOAUTH Authentication required.\r\n+OK\r\n+PONG\r\n"
    );
    // protected-mode no lets it in without one.
    shared.server.update_config(|c| {
        c.requirepass = None;
        c.protected_mode = false;
    });
    assert_eq!(talk(&shared, "192.0.2.7:40000", b"PING\r\n"), b"+PONG\r\n");
}

#[test]
fn bound_to_every_address_without_a_password_it_warns_and_serves_loopback() {
    let s = Server::start("bindall", &["--bind", "0.0.0.0"]);
    assert!(
        s.output()
            .contains("Listening beyond the loopback interface without a password"),
        "{}",
        s.output()
    );
    assert!(
        s.output().contains("listening:  0.0.0.0:"),
        "{}",
        s.output()
    );
    assert_eq!(s.cli(&["PING"]), "PONG");
    let mut c = s.raw();
    let eagle_core::resp::Frame::Array(kv) = c.cmd(&["CONFIG", "GET", "protected-mode"]) else {
        panic!()
    };
    assert_eq!(kv[1], bulk("yes"));
}
