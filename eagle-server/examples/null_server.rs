//! A RESP server that stores nothing: the ceiling a client can drive on this machine.
//!
//! `eagle-server/bench/compare.sh` runs it as the `null` configuration, with the same
//! `redis-benchmark` commands as the real servers. It parses each request with eagle's own
//! parser and answers at once (`+OK` to everything, an empty array to `CONFIG`, whose reply
//! `redis-benchmark` reads as a list), one write per read, on tokio's multi-threaded runtime
//! like `eagle-server`. No server that does real work can go faster under the same client, so
//! its rate bounds every ratio the table can show: when `null / redis-always` is below a target
//! ratio, no server reaches that target on this machine.
//!
//! ```sh
//! cargo run --release -p eagle-server --example null_server -- 7399
//! ```

use bytes::BytesMut;
use eagle_core::resp::{Limits, RequestParser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        None => 7399,
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            eprintln!("usage: null_server [PORT]: {e}");
            std::process::exit(2);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream));
    }
}

/// Answers every complete request in each read, in one write, until the client closes or sends
/// what the parser refuses. `SHUTDOWN` ends the process (the benchmark script stops servers so).
async fn serve(mut stream: TcpStream) {
    let mut parser = RequestParser::new(Limits::default());
    let (mut rbuf, mut wbuf) = (BytesMut::with_capacity(16 * 1024), BytesMut::new());
    loop {
        if rbuf.capacity() - rbuf.len() < 1024 {
            rbuf.reserve(16 * 1024);
        }
        match stream.read_buf(&mut rbuf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            match parser.parse(&mut rbuf) {
                Ok(Some(argv)) => {
                    let is =
                        |name: &[u8]| argv.first().is_some_and(|a| a.eq_ignore_ascii_case(name));
                    if is(b"SHUTDOWN") {
                        std::process::exit(0);
                    } else if is(b"CONFIG") {
                        wbuf.extend_from_slice(b"*0\r\n");
                    } else {
                        wbuf.extend_from_slice(b"+OK\r\n");
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if stream.write_all(&wbuf).await.is_err() {
            return;
        }
        wbuf.clear();
    }
}
