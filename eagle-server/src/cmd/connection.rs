//! Connection commands: PING, ECHO, QUIT, SELECT, HELLO, AUTH, CLIENT, RESET.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use eagle_core::resp::{Frame, Protocol};

use super::ctx::Ctx;
use super::parse::{CmdError, Parse};
use super::table::{Command, Spec, quoted, run, subcommand, wrong_arity};
use crate::state::{ClientInfo, ServerState};

/// The Redis version EagleDB reports (HELLO, INFO), for clients that pick features by version.
pub const REDIS_VERSION: &str = "7.0.0";

const BAD_NAME: &str = "ERR Client names cannot contain spaces, newlines or special characters.";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// Compares without an early exit, so the time taken does not tell how much of a guess matched.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= (x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0)) as usize;
    }
    diff == 0
}

/// Checks credentials of the single user, `default`, whose password is `requirepass` (none: any
/// password is accepted for `default`, as Redis's `nopass` user).
fn check_credentials(
    server: &ServerState,
    user: Option<&[u8]>,
    pass: &[u8],
) -> Result<(), CmdError> {
    let required = server.with_config(|c| c.requirepass.clone());
    let user_ok = user.is_none_or(|u| u == b"default");
    match required {
        None if user.is_none() => Err(CmdError::new(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        )),
        None if user_ok => Ok(()),
        Some(p) if user_ok && same_secret(pass, p.as_bytes()) => Ok(()),
        _ => Err(CmdError::new(WRONGPASS)),
    }
}

/// Whether a client name (or library name) is acceptable: printable ASCII without spaces.
fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|b| (b'!'..=b'~').contains(b))
}

fn set_name(ctx: &mut Ctx<'_>, name: Bytes) -> Result<(), CmdError> {
    if !valid_name(&name) {
        return Err(CmdError::new(BAD_NAME));
    }
    // A copy: the argument is a slice of the read buffer, which a kept slice would keep whole.
    let name = (!name.is_empty()).then(|| Bytes::copy_from_slice(&name));
    if let Some(c) = &ctx.session.client {
        *c.name.lock() = name.clone();
    }
    ctx.session.name = name;
    Ok(())
}

fn set_protocol(ctx: &mut Ctx<'_>, proto: Protocol) {
    ctx.session.protocol = proto;
    if let Some(c) = &ctx.session.client {
        let v = if proto == Protocol::Resp3 { 3 } else { 2 };
        c.resp.store(v, Ordering::Relaxed);
    }
}

struct Ping(Option<Bytes>);
impl Command for Ping {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        if p.remaining() > 1 {
            return Err(wrong_arity("ping"));
        }
        Ok(Ping(p.maybe_bytes()))
    }
    fn apply(self, _ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        Ok(match self.0 {
            None => Frame::Simple(Bytes::from_static(b"PONG")),
            Some(m) => Frame::Bulk(m),
        })
    }
}

struct Echo(Bytes);
impl Command for Echo {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let m = p.bytes()?;
        p.finish()?;
        Ok(Echo(m))
    }
    fn apply(self, _ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        Ok(Frame::Bulk(self.0))
    }
}

struct Quit;
impl Command for Quit {
    fn parse(_p: &mut Parse) -> Result<Self, CmdError> {
        Ok(Quit)
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        ctx.session.close = true;
        Ok(Frame::ok())
    }
}

struct Select(Bytes);
impl Command for Select {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let db = p.bytes()?;
        p.finish()?;
        Ok(Select(db))
    }
    fn apply(self, _ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        match eagle_core::db::parse_i64(&self.0) {
            None => Err(CmdError::not_integer()),
            Some(0) => Ok(Frame::ok()),
            Some(_) => Err(CmdError::new("ERR DB index is out of range")),
        }
    }
}

struct Auth {
    user: Option<Bytes>,
    pass: Bytes,
}
impl Command for Auth {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let args = p.rest();
        match <[Bytes; 1]>::try_from(args) {
            Ok([pass]) => Ok(Auth { user: None, pass }),
            Err(args) => match <[Bytes; 2]>::try_from(args) {
                Ok([user, pass]) => Ok(Auth {
                    user: Some(user),
                    pass,
                }),
                Err(_) => Err(CmdError::syntax()),
            },
        }
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        check_credentials(ctx.server(), self.user.as_deref(), &self.pass)?;
        ctx.session.authenticated = true;
        Ok(Frame::ok())
    }
}

/// HELLO's arguments, checked in Redis's order when applied: the version first (an error for
/// one that is not 2 or 3, whatever follows), then each option in turn, AUTH authenticating
/// where it stands (a failed AUTH answers WRONGPASS before a later bad option is looked at)
/// and SETNAME naming the client where it stands.
struct Hello {
    version: Option<Bytes>,
    options: Vec<Bytes>,
}
impl Command for Hello {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let version = p.maybe_bytes();
        Ok(Hello {
            version,
            options: p.rest(),
        })
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let proto = match &self.version {
            None => None,
            Some(v) => match eagle_core::db::parse_i64(v) {
                None => {
                    return Err(CmdError::new(
                        "ERR Protocol version is not an integer or out of range",
                    ));
                }
                Some(2) => Some(Protocol::Resp2),
                Some(3) => Some(Protocol::Resp3),
                Some(_) => return Err(CmdError::new("NOPROTO unsupported protocol version")),
            },
        };
        let mut opts = self.options.into_iter();
        while let Some(opt) = opts.next() {
            let more = opts.len();
            if opt.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
                let user = opts.next().unwrap_or_default();
                let pass = opts.next().unwrap_or_default();
                check_credentials(ctx.server(), Some(&user), &pass)?;
                ctx.session.authenticated = true;
            } else if opt.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
                // Set where it stands, as Redis does: the name stays even when a later option
                // is refused or the client is not authenticated.
                set_name(ctx, opts.next().unwrap_or_default())?;
            } else {
                return Err(CmdError::new(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(&opt)
                )));
            }
        }
        if ctx.server().password_set() && !ctx.session.authenticated {
            return Err(CmdError::new(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
                 HELLO AUTH <user> <pass> option can be used to authenticate the client and \
                 select the RESP protocol version at the same time",
            ));
        }
        if let Some(proto) = proto {
            set_protocol(ctx, proto);
        }
        let proto = if ctx.session.protocol == Protocol::Resp3 {
            3
        } else {
            2
        };
        let s = |t: &'static str| Frame::Bulk(Bytes::from_static(t.as_bytes()));
        Ok(Frame::Map(vec![
            (s("server"), s("redis")),
            (s("version"), s(REDIS_VERSION)),
            (s("proto"), Frame::Integer(proto)),
            (s("id"), Frame::Integer(ctx.session.id as i64)),
            (s("mode"), s("standalone")),
            (s("role"), s("master")),
            (s("modules"), Frame::Array(Vec::new())),
        ]))
    }
}

struct Reset;
impl Command for Reset {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        p.finish()?;
        Ok(Reset)
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        super::multi::reset(ctx);
        set_protocol(ctx, Protocol::Resp2);
        let _ = set_name(ctx, Bytes::new());
        // As Redis's RESET: OFF and a pending SKIP end, but a SKIP just before drops this reply.
        ctx.session.reply_off = false;
        ctx.session.skip_next = false;
        ctx.session.authenticated = !ctx.server().password_set();
        Ok(Frame::Simple(Bytes::from_static(b"RESET")))
    }
}

/// CLIENT's subcommands.
struct Client {
    sub: String,
    args: Vec<Bytes>,
}

const CLIENT_HELP: &[&str] = &[
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "GETNAME",
    "    Return the name of the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "SETINFO <LIB-NAME|LIB-VER> <value>",
    "    Set client library name or version.",
    "LIST [TYPE (NORMAL|MASTER|REPLICA|PUBSUB)] [ID <id> [<id> ...]]",
    "    Return information about client connections.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are: ID <id>, ADDR <ip:port>, LADDR <ip:port>,",
    "    TYPE (NORMAL|MASTER|REPLICA|PUBSUB), USER <username>, SKIPME (YES|NO), MAXAGE <seconds>.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "NO-EVICT (ON|OFF)",
    "    Accepted; EagleDB never evicts clients.",
    "NO-TOUCH (ON|OFF)",
    "    Accepted; EagleDB keeps no access times.",
    "HELP",
    "    Print this help.",
];

fn client_arity_error(sub: &str) -> CmdError {
    CmdError::new(format!(
        "ERR wrong number of arguments for 'client|{}' command",
        sub.to_ascii_lowercase()
    ))
}

fn on_off(v: &[u8]) -> Result<bool, CmdError> {
    if v.eq_ignore_ascii_case(b"on") {
        Ok(true)
    } else if v.eq_ignore_ascii_case(b"off") {
        Ok(false)
    } else {
        Err(CmdError::syntax())
    }
}

impl Command for Client {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let sub = subcommand(&p.bytes()?);
        Ok(Client {
            sub,
            args: p.rest(),
        })
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let n = self.args.len();
        let want = |ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(client_arity_error(&self.sub))
            }
        };
        let shared = ctx.shared;
        let server = &shared.server;
        match self.sub.to_ascii_uppercase().as_str() {
            "ID" => {
                want(n == 0)?;
                Ok(Frame::Integer(ctx.session.id as i64))
            }
            "GETNAME" => {
                want(n == 0)?;
                Ok(ctx.session.name.clone().map_or(Frame::Null, Frame::Bulk))
            }
            "SETNAME" => {
                want(n == 1)?;
                set_name(ctx, self.args[0].clone())?;
                Ok(Frame::ok())
            }
            "SETINFO" => {
                want(n == 2)?;
                let attr = String::from_utf8_lossy(&self.args[0]).to_ascii_lowercase();
                let value = &self.args[1];
                if attr != "lib-name" && attr != "lib-ver" {
                    return Err(CmdError::new(format!(
                        "ERR Unrecognized option '{}'",
                        String::from_utf8_lossy(&self.args[0])
                    )));
                }
                if !valid_name(value) {
                    return Err(CmdError::new(format!(
                        "ERR {attr} cannot contain spaces, newlines or special characters."
                    )));
                }
                if let Some(c) = &ctx.session.client {
                    let mut lib = c.lib.lock();
                    let v = String::from_utf8_lossy(value).into_owned();
                    if attr == "lib-name" {
                        lib.0 = v;
                    } else {
                        lib.1 = v;
                    }
                }
                Ok(Frame::ok())
            }
            "INFO" => {
                want(n == 0)?;
                let line = match &ctx.session.client {
                    Some(c) => c.line(server),
                    None => format!("id={} addr=? laddr=? fd=-1", ctx.session.id),
                };
                Ok(Frame::verbatim_txt(line + "\n"))
            }
            "LIST" => client_list(server, &self.args),
            "KILL" => client_kill(ctx, &self.args),
            "REPLY" => {
                want(n == 1)?;
                let mode = String::from_utf8_lossy(&self.args[0]).to_ascii_uppercase();
                match mode.as_str() {
                    "ON" => {
                        // A SKIP just before is undone too (Redis clears both flags), so this
                        // +OK is sent; one queued in the same EXEC still skips the next reply.
                        ctx.session.reply_off = false;
                        ctx.session.reply_skip = false;
                        Ok(Frame::ok())
                    }
                    "OFF" => {
                        ctx.session.reply_off = true;
                        ctx.session.silent = true;
                        Ok(Frame::ok())
                    }
                    "SKIP" => {
                        // No reply of its own, and none to the next command; nothing while
                        // replies are off, as in Redis (a later ON then answers).
                        if !ctx.session.reply_off {
                            ctx.session.skip_next = true;
                        }
                        ctx.session.silent = true;
                        Ok(Frame::ok())
                    }
                    _ => Err(CmdError::syntax()),
                }
            }
            "NO-EVICT" | "NO-TOUCH" => {
                want(n == 1)?;
                on_off(&self.args[0])?;
                Ok(Frame::ok())
            }
            "HELP" if n > 0 => Err(client_arity_error(&self.sub)),
            "HELP" => Ok(Frame::Array(
                CLIENT_HELP
                    .iter()
                    .map(|l| Frame::Simple(Bytes::from_static(l.as_bytes())))
                    .collect(),
            )),
            _ => Err(CmdError::new(format!(
                "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                quoted(&self.sub)
            ))),
        }
    }
}

/// CLIENT LIST [TYPE type | ID id [id ...]], as Redis 7.0: every client, those of a type
/// (only normal clients here), or the clients with the ids given, in the order given (an id
/// given twice lists its client twice; an id of no client lists nothing; one that is no
/// integer is an error). Each id is one lookup.
fn client_list(server: &ServerState, args: &[Bytes]) -> Result<Frame, CmdError> {
    let mut out = String::new();
    let mut list = |c: &ClientInfo| {
        out.push_str(&c.line(server));
        out.push('\n');
    };
    match args {
        [] => server.clients.all().iter().for_each(|c| list(c)),
        [opt, t] if opt.eq_ignore_ascii_case(b"TYPE") => {
            match String::from_utf8_lossy(t).to_ascii_lowercase().as_str() {
                "normal" => server.clients.all().iter().for_each(|c| list(c)),
                "master" | "replica" | "slave" | "pubsub" => {}
                _ => {
                    return Err(CmdError::new(format!(
                        "ERR Unknown client type '{}'",
                        String::from_utf8_lossy(t)
                    )));
                }
            }
        }
        [opt, ids @ ..] if opt.eq_ignore_ascii_case(b"ID") && !ids.is_empty() => {
            for id in ids {
                let id = eagle_core::db::parse_i64(id)
                    .ok_or_else(|| CmdError::new("ERR Invalid client ID"))?;
                if let Some(c) = u64::try_from(id).ok().and_then(|id| server.clients.get(id)) {
                    list(&c);
                }
            }
        }
        _ => return Err(CmdError::syntax()),
    }
    Ok(Frame::verbatim_txt(out))
}

fn client_kill(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<Frame, CmdError> {
    let server = &ctx.shared.server;
    let me = ctx.session.id;
    if args.len() == 1 {
        // Old form: CLIENT KILL addr:port.
        let addr = String::from_utf8_lossy(&args[0]).into_owned();
        let Some(c) = server
            .clients
            .all()
            .into_iter()
            .find(|c| c.addr.to_string() == addr)
        else {
            return Err(CmdError::new("ERR No such client"));
        };
        if c.id == me {
            ctx.session.close = true;
        } else {
            c.kill();
        }
        return Ok(Frame::ok());
    }
    if args.is_empty() {
        return Err(client_arity_error("kill"));
    }
    let mut id = None;
    let mut addr = None;
    let mut laddr = None;
    let mut normal = true;
    let mut user_ok = true;
    let mut skipme = true;
    let mut maxage = None;
    for pair in args.chunks(2) {
        if pair.len() < 2 {
            return Err(CmdError::syntax());
        }
        let opt = String::from_utf8_lossy(&pair[0]).to_ascii_uppercase();
        let val = String::from_utf8_lossy(&pair[1]).into_owned();
        match opt.as_str() {
            "ID" => match eagle_core::db::parse_i64(&pair[1]) {
                Some(v) if v > 0 => id = Some(v as u64),
                _ => return Err(CmdError::new("ERR client-id should be greater than 0")),
            },
            "ADDR" => addr = Some(val),
            "LADDR" => laddr = Some(val),
            "TYPE" => {
                normal = match val.to_ascii_lowercase().as_str() {
                    "normal" => true,
                    "master" | "replica" | "slave" | "pubsub" => false,
                    _ => return Err(CmdError::new(format!("ERR Unknown client type '{val}'"))),
                }
            }
            "USER" => user_ok = val == "default",
            "SKIPME" => {
                skipme = match val.to_ascii_lowercase().as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(CmdError::syntax()),
                }
            }
            "MAXAGE" => match eagle_core::db::parse_i64(&pair[1]) {
                Some(v) => maxage = Some(v),
                None => return Err(CmdError::not_integer()),
            },
            _ => return Err(CmdError::syntax()),
        }
    }
    let mut killed = 0;
    if normal && user_ok {
        for c in server.clients.all() {
            let matches = id.is_none_or(|id| id == c.id)
                && addr.as_ref().is_none_or(|a| *a == c.addr.to_string())
                && laddr.as_ref().is_none_or(|a| *a == c.laddr.to_string())
                && maxage.is_none_or(|m| c.created.elapsed().as_secs() as i64 >= m);
            if !matches || (skipme && c.id == me) {
                continue;
            }
            if c.id == me {
                ctx.session.close = true;
            } else {
                c.kill();
            }
            killed += 1;
        }
    }
    Ok(Frame::Integer(killed))
}

const CONN: &[&str] = &["noscript", "loading", "stale", "fast"];
const NOAUTH: &[&str] = &[
    "noscript",
    "loading",
    "stale",
    "fast",
    "no_auth",
    "allow_busy",
];

/// This family's commands.
#[rustfmt::skip]
pub static SPECS: &[Spec] = &[
    Spec { name: "ping", arity: -1, flags: &["fast"], keys: (0, 0, 0), run: run::<Ping> },
    Spec { name: "echo", arity: 2, flags: &["fast"], keys: (0, 0, 0), run: run::<Echo> },
    Spec { name: "quit", arity: -1, flags: &["allow_busy", "noscript", "loading", "stale", "fast", "no_auth"], keys: (0, 0, 0), run: run::<Quit> },
    Spec { name: "select", arity: 2, flags: &["loading", "stale", "fast"], keys: (0, 0, 0), run: run::<Select> },
    Spec { name: "auth", arity: -2, flags: NOAUTH, keys: (0, 0, 0), run: run::<Auth> },
    Spec { name: "hello", arity: -1, flags: NOAUTH, keys: (0, 0, 0), run: run::<Hello> },
    Spec { name: "reset", arity: 1, flags: NOAUTH, keys: (0, 0, 0), run: run::<Reset> },
    Spec { name: "client", arity: -2, flags: CONN, keys: (0, 0, 0), run: run::<Client> },
];
