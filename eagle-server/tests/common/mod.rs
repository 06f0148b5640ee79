//! Test harness: runs the real `eagle-server` binary on free loopback ports with a pool in a
//! temporary directory (in /dev/shm when there is one), and talks to it with raw sockets
//! (exact bytes), the `redis` crate and `redis-cli`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eagle_core::resp::{Frame, parse_frame};

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory named after `name`.
    pub fn new(name: &str) -> TempDir {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let unique = format!("eagle-test-{name}-{}-{}", std::process::id(), rand_u64());
        let dir = base.join(unique);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// A path inside.
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(7);
    h.finish()
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Raises this process's open-files limit (tests open many sockets).
pub fn raise_fd_limit(want: u64) {
    // SAFETY: rlimit is plain data.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a valid, writable rlimit.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if (lim.rlim_cur as u64) < want {
        lim.rlim_cur = want.min(lim.rlim_max as u64) as libc::rlim_t;
        // SAFETY: `lim` is a valid rlimit.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

/// A running `eagle-server`.
pub struct Server {
    pub dir: Arc<TempDir>,
    pub pool: PathBuf,
    pub port: u16,
    pub metrics_port: u16,
    pub extra: Vec<String>,
    pub child: Option<Child>,
    /// Everything it printed (stdout and stderr).
    pub output: Arc<Mutex<String>>,
}

impl Server {
    /// Starts a server with a new pool and these extra flags.
    pub fn start(name: &str, extra: &[&str]) -> Server {
        let dir = Arc::new(TempDir::new(name));
        let pool = dir.join("eagle.pool");
        Server::start_on(dir, pool, extra)
    }

    /// Starts a server on an existing directory and pool.
    pub fn start_on(dir: Arc<TempDir>, pool: PathBuf, extra: &[&str]) -> Server {
        for _ in 0..5 {
            let mut s = Server {
                dir: dir.clone(),
                pool: pool.clone(),
                port: free_port(),
                metrics_port: free_port(),
                extra: extra.iter().map(|s| s.to_string()).collect(),
                child: None,
                output: Arc::default(),
            };
            if s.spawn() {
                return s;
            }
            let out = s.output();
            assert!(
                out.contains("Address already in use") || out.contains("could not listen"),
                "server failed to start:\n{out}"
            );
        }
        panic!("could not find free ports");
    }

    /// The same pool, a new process (after this one has exited).
    pub fn restart(&self, extra: &[&str]) -> Server {
        Server::start_on(self.dir.clone(), self.pool.clone(), extra)
    }

    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eagle-server"));
        // In its directory: SAVE and BGSAVE write there by default (`dir` is the working one).
        cmd.current_dir(&self.dir.0)
            .arg("--pool")
            .arg(&self.pool)
            .args(["--pool-size", "64mb", "--port"])
            .arg(self.port.to_string())
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .args(["--threads", "2"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn eagle-server");
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = self.output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut o = out.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            // The banner (stdout) and the log (stderr) arrive through separate pipes.
            let out = self.output();
            if out.contains("Ready to accept connections") && out.contains("\nlistening:  ") {
                return true;
            }
            if let Some(_status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                self.child = None;
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("server not ready after 30 s:\n{}", self.output());
    }

    /// What it printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// `redis://` address.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A `redis` crate connection.
    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// A raw RESP connection.
    pub fn raw(&self) -> Raw {
        Raw::connect(self.port)
    }

    /// Runs `redis-cli -p PORT args...`; its stdout (trimmed) and whether it succeeded.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-p")
            .arg(self.port.to_string())
            .args(args)
            .output()
            .expect("redis-cli is installed (Debian package redis-tools)");
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// The field `field` of `INFO section`, read with redis-cli.
    pub fn info_field(&self, section: &str, field: &str) -> String {
        let info = self.cli(&["INFO", section]);
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in:\n{info}"))
            .trim()
            .to_string()
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// Waits for the process to exit (at most `secs`).
    pub fn wait_exit(&mut self, secs: u64) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within {secs} s:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait_exit(10);
    }

    /// One HTTP GET on the metrics port: (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A raw RESP client: exact bytes in, parsed frames out.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// RESP2 multibulk encoding of a command.
pub fn encode_cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Several commands encoded back to back (one pipeline, sent with one write).
pub fn encode_pipeline(cmds: &[&[&str]]) -> Vec<u8> {
    let mut out = Vec::new();
    for args in cmds {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        out.extend(encode_cmd(&args));
    }
    out
}

impl Raw {
    /// Connects to the server on `port`.
    pub fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends a command and reads its reply.
    pub fn cmd(&mut self, args: &[&str]) -> Frame {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.send(&encode_cmd(&args));
        self.read().expect("a reply")
    }

    /// The next reply; `None` at end of stream.
    pub fn read(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf).expect("well-formed reply") {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).ok()?;
            if n == 0 {
                assert!(self.buf.is_empty(), "stream ended inside a reply");
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next reply and its bytes as they came (where two encodings parse to one frame: a
    /// RESP2 and a RESP3 null).
    pub fn read_wire(&mut self) -> Option<(Frame, Vec<u8>)> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf).expect("well-formed reply") {
                let wire = self.buf.drain(..used).collect();
                return Some((frame, wire));
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The bytes that come until they end with `end` (for replies a frame parser cannot split:
    /// an EXEC under CLIENT REPLY whose header counts more replies than follow).
    pub fn read_until(&mut self, end: &[u8]) -> Vec<u8> {
        while !self.buf.ends_with(end) {
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).expect("more of the reply");
            assert!(
                n > 0,
                "stream ended before {:?}: {:?}",
                String::from_utf8_lossy(end),
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
        std::mem::take(&mut self.buf)
    }

    /// Whether the server closed the connection (reads to the end, which must come soon).
    pub fn closed(&mut self) -> bool {
        self.read().is_none()
    }

    /// Closes our side.
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// A simple-string frame.
pub fn simple(s: &str) -> Frame {
    Frame::Simple(Bytes::copy_from_slice(s.as_bytes()))
}

/// An error frame.
pub fn error(s: &str) -> Frame {
    Frame::Error(Bytes::copy_from_slice(s.as_bytes()))
}

/// A bulk frame.
pub fn bulk(s: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

/// The `+OK` frame.
pub fn ok() -> Frame {
    simple("OK")
}

/// Waits until `f` holds (at most `secs`).
pub fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A real `redis-server` (Debian's) without persistence on a free port, killed on drop.
pub struct RedisServer {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl RedisServer {
    /// Starts it; waits until it accepts connections.
    pub fn start() -> RedisServer {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (Debian package redis-server)");
        let server = RedisServer { child, port };
        eventually(10, "redis-server to accept connections", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        server
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
