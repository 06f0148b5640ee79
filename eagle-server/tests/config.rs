//! Settings: redis.conf sizes, file syntax and errors, flags over the file.

use std::path::Path;

use clap::Parser;
use eagle_core::FlushMode;
use eagle_server::config::{Cli, Config, FlushSetting, parse_size, split_config_line};

#[test]
fn sizes_follow_redis_units() {
    assert_eq!(parse_size("64mb"), Ok(64 << 20));
    assert_eq!(parse_size("1GB"), Ok(1 << 30));
    assert_eq!(parse_size("1g"), Ok(1_000_000_000));
    assert_eq!(parse_size("4096"), Ok(4096));
    assert_eq!(parse_size("10k"), Ok(10_000));
    assert!(parse_size("1tb").is_err());
    assert!(parse_size("mb").is_err());
    assert!(parse_size("-1").is_err());
}

#[test]
fn lines_split_like_redis_conf() {
    assert_eq!(
        split_config_line(r#"requirepass "a b\"c\x41" 'it\'s'"#).unwrap(),
        vec!["requirepass", "a b\"cA", "it's"]
    );
    assert!(split_config_line("x \"open").is_err());
    assert!(split_config_line("x \"closed\"tail").is_err());
}

#[test]
fn file_lines_quotes_and_errors_name_file_line_and_key() {
    let mut c = Config::default();
    let text = "# comment\n\nport 7000\nrequirepass \"a b\\\"c\"\nbind 127.0.0.1 ::1\n";
    c.apply_file(Path::new("eagle.conf"), text).unwrap();
    assert_eq!(c.port, 7000);
    assert_eq!(c.requirepass.as_deref(), Some("a b\"c"));
    assert_eq!(c.bind, vec!["127.0.0.1", "::1"]);

    let err = c
        .apply_file(Path::new("eagle.conf"), "port 1\n\nfo bar\n")
        .unwrap_err();
    assert_eq!(err.0, "eagle.conf:3: unknown key 'fo'");
    let err = c
        .apply_file(Path::new("x.conf"), "maxclients lots\n")
        .unwrap_err();
    assert_eq!(
        err.0,
        "x.conf:1: 'maxclients': argument couldn't be parsed into an integer"
    );
    let err = c
        .apply_file(Path::new("x.conf"), "timeout 1 2\n")
        .unwrap_err();
    assert!(err.0.starts_with("x.conf:1: 'timeout'"), "{err}");
    let err = c
        .apply_file(Path::new("x.conf"), "requirepass \"open\n")
        .unwrap_err();
    assert!(err.0.contains("unbalanced quotes"), "{err}");
    let err = c
        .apply_file(Path::new("x.conf"), "appendonly yes\n")
        .unwrap_err();
    assert_eq!(err.0, "x.conf:1: 'appendonly': can't set immutable config");
}

#[test]
fn flags_override_the_file() {
    let dir = std::env::temp_dir().join(format!("eagle-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("eagle.conf");
    std::fs::write(
        &file,
        "port 7001\nmaxclients 5\nflush none\npool-size 64mb\n",
    )
    .unwrap();
    let cli = Cli::parse_from([
        "eagle-server",
        "--config",
        file.to_str().unwrap(),
        "--port",
        "7002",
        "--metrics-addr",
        "off",
    ]);
    let c = Config::load(&cli).unwrap();
    assert_eq!(c.port, 7002);
    assert_eq!(c.maxclients, 5);
    assert_eq!(c.pool_size, 64 << 20);
    assert_eq!(c.flush, FlushSetting::Mode(FlushMode::None));
    assert_eq!(c.metrics_addr, None);
    assert_eq!(c.config_file.as_deref(), Some(file.as_path()));
    let cli = Cli::parse_from(["eagle-server", "--port", "high"]);
    let err = Config::load(&cli).unwrap_err();
    assert_eq!(
        err.0,
        "--port 'high': argument couldn't be parsed into an integer"
    );
    let d = Config::load(&Cli::parse_from(["eagle-server"])).unwrap();
    assert_eq!(
        (d.port, d.bind.clone(), d.maxclients, d.timeout),
        (6379, vec!["127.0.0.1".to_string()], 10000, 0)
    );
    assert_eq!(d.metrics_addr.as_deref(), Some("127.0.0.1:9121"));
    assert_eq!(d.pool_size, 1 << 30);
    std::fs::remove_dir_all(&dir).unwrap();
}
