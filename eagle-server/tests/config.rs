//! Settings: redis.conf sizes, file syntax and errors, flags over the file, CPU lists.

use std::path::Path;

use clap::Parser;
use eagle_core::FlushMode;
use eagle_server::affinity::{
    allowed_cpus, check_cpus, configured_cpus, format_cpulist, parse_cpulist, round_robin,
};
use eagle_server::config::{
    self, Cli, Config, CpuList, FlushSetting, parse_size, split_config_line,
};

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

#[test]
fn cpu_lists_parse_like_redis() {
    assert_eq!(parse_cpulist("0"), Ok(vec![0]));
    assert_eq!(parse_cpulist("0-7:2,12"), Ok(vec![0, 2, 4, 6, 12]));
    assert_eq!(parse_cpulist("0-10:3"), Ok(vec![0, 3, 6, 9]));
    assert_eq!(parse_cpulist("4-4"), Ok(vec![4]));
    // Ascending, each CPU once, whatever the order and overlaps.
    assert_eq!(parse_cpulist("3,1-2,2"), Ok(vec![1, 2, 3]));
    for bad in [
        "",
        ",",
        "0,",
        ",0",
        "a",
        "1-",
        "-1",
        "1-2:",
        "1:2",
        " 1",
        "1 ,2",
        "0-1-2",
        "1-2:1:1",
        "+1",
        "99999999999999999999999",
        "0-100000",
    ] {
        assert!(parse_cpulist(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(
        parse_cpulist("0,x").unwrap_err(),
        "'x' is not a CPU id or range (N, N-M or N-M:STEP) in '0,x'"
    );
    assert_eq!(
        parse_cpulist("3-1").unwrap_err(),
        "the range '3-1' ends before it starts"
    );
    assert_eq!(
        parse_cpulist("1-2:0").unwrap_err(),
        "the step of '1-2:0' is 0"
    );
    assert_eq!(format_cpulist(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
    assert_eq!(format_cpulist(&[5]), "5");
}

#[test]
fn cpu_lists_are_checked_against_the_host() {
    assert_eq!(check_cpus(&[0, 2], 4, Some(&[0, 1, 2, 3])), Ok(()));
    assert_eq!(check_cpus(&[3], 4, None), Ok(()));
    assert_eq!(
        check_cpus(&[4], 4, None).unwrap_err(),
        "CPU 4 does not exist: this host has 4 CPUs (0-3)"
    );
    let err = check_cpus(&[1], 4, Some(&[0, 2, 3])).unwrap_err();
    assert!(
        err.starts_with("CPU 1 is not available to this process, which may run on CPUs 0,2-3 only"),
        "{err}"
    );
    assert!(check_cpus(&[], 4, None).is_err());

    // Through the file and the flags: errors name the file, the line and the key.
    let cpu = allowed_cpus().unwrap()[0];
    let mut c = Config::default();
    assert_eq!(c.server_cpulist, None);
    c.apply_file(Path::new("eagle.conf"), &format!("server-cpulist {cpu}\n"))
        .unwrap();
    assert_eq!(
        c.server_cpulist,
        Some(CpuList {
            text: cpu.to_string(),
            cpus: vec![cpu]
        })
    );
    assert!(!config::param("server-cpulist").unwrap().mutable);
    assert_eq!(
        (config::param("server-cpulist").unwrap().get)(&c),
        cpu.to_string()
    );
    c.apply_file(Path::new("eagle.conf"), "server-cpulist \"\"\n")
        .unwrap();
    assert_eq!(c.server_cpulist, None, "empty: no pinning");
    let err = c
        .apply_file(Path::new("x.conf"), "threads 2\nserver-cpulist 0-3:0\n")
        .unwrap_err();
    assert_eq!(
        err.0,
        "x.conf:2: 'server-cpulist': the step of '0-3:0' is 0"
    );
    let n = configured_cpus();
    let err = c
        .apply_file(Path::new("x.conf"), &format!("server-cpulist 0,{n}\n"))
        .unwrap_err();
    assert_eq!(
        err.0,
        format!(
            "x.conf:1: 'server-cpulist': CPU {n} does not exist: this host has {n} CPUs (0-{})",
            n - 1
        )
    );
    let err = Config::load(&Cli::parse_from([
        "eagle-server",
        "--server-cpulist",
        "5-2",
    ]))
    .unwrap_err();
    assert_eq!(
        err.0,
        "--server-cpulist '5-2': the range '5-2' ends before it starts"
    );
}

#[test]
fn round_robin_pins_threads_to_one_cpu_each_in_turn() {
    let allowed = allowed_cpus().unwrap();
    let cpus: Vec<usize> = allowed.iter().copied().take(2).collect();
    let hook = std::sync::Arc::new(round_robin(cpus.clone()));
    for i in 0..4 {
        let hook = hook.clone();
        let pinned = std::thread::spawn(move || {
            hook();
            allowed_cpus().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(pinned, vec![cpus[i % cpus.len()]], "thread {i}");
    }
    // This thread was not touched.
    assert_eq!(allowed_cpus().unwrap(), allowed);
}
