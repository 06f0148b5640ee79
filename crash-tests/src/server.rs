//! Driving a real `eagle-server` process: starting it on a pool, and a minimal RESP client
//! that pipelines commands and reads replies (the kill -9 harnesses).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use eagle_core::resp::{Frame, Protocol, encode, parse_frame};

/// The `eagle-server` binary beside this test's (built by `cargo build` or `nextest` for the
/// workspace), built here if missing.
pub fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = dir.join("eagle-server");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "eagle-server", "--bin", "eagle-server"])
            .status()
            .expect("run cargo");
        assert!(status.success(), "building eagle-server failed");
    }
    bin
}

/// A TCP port free on 127.0.0.1 when asked.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `bin` on `pool` (64 MiB, created if missing) and `port`; returns once it accepts.
pub fn start(bin: &Path, pool: &Path, port: u16) -> Child {
    let child = Command::new(bin)
        .args(["--port", &port.to_string(), "--metrics-addr", "off"])
        .arg("--pool")
        .arg(pool)
        .args(["--pool-size", "64mb", "--loglevel", "warning"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start eagle-server");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "eagle-server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// A RESP2 connection.
pub struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Connects to 127.0.0.1:`port` (replies time out after 10 s).
    pub fn new(port: u16) -> std::io::Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Conn { s, buf: Vec::new() })
    }

    /// Sends `cmds` in one write (a pipeline).
    pub fn send(&mut self, cmds: &[Vec<Vec<u8>>]) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        for c in cmds {
            let f = Frame::Array(
                c.iter()
                    .map(|a| Frame::Bulk(Bytes::from(a.clone())))
                    .collect(),
            );
            encode(&f, Protocol::Resp2, &mut out);
        }
        self.s.write_all(&out)
    }

    /// Reads the next reply.
    pub fn reply(&mut self) -> std::io::Result<Frame> {
        loop {
            if let Ok(Some((f, n))) = parse_frame(&self.buf) {
                self.buf.drain(..n);
                return Ok(f);
            }
            let mut chunk = [0u8; 16384];
            let n = self.s.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one command and reads its reply.
    pub fn call(&mut self, cmd: Vec<Vec<u8>>) -> std::io::Result<Frame> {
        self.send(&[cmd])?;
        self.reply()
    }
}
