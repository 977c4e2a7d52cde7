use super::*;

#[test]
fn empty_file_gives_design_defaults() {
    let c = Config::from_toml("", "t").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.proxy.listen.to_string(), "127.0.0.1:3000");
    assert_eq!(c.proxy.request_timeout, Duration::from_secs(10));
    assert_eq!(c.proxy.idle_timeout, Duration::from_secs(30));
    assert_eq!(c.proxy.shutdown_timeout, Duration::from_secs(5));
    assert_eq!(c.proxy.max_header_bytes, 65536);
}

#[test]
fn listen_addresses_say_what_form_is_expected() {
    assert_eq!(parse_listen("127.0.0.1:0").unwrap().to_string(), "127.0.0.1:0");
    assert_eq!(parse_listen("[::1]:3000").unwrap().to_string(), "[::1]:3000");
    let no_port = parse_listen("127.0.0.1").unwrap_err();
    assert!(no_port.contains("has no port") && no_port.contains("127.0.0.1:3000"), "{no_port}");
    assert!(parse_listen("::1").unwrap_err().contains("[::1]:3000"));
    let name = parse_listen("localhost:3200").unwrap_err();
    assert!(name.contains("host name") && name.contains("127.0.0.1:3200"), "{name}");
    assert!(parse_listen("nonsense").unwrap_err().contains("expected IP:PORT"));
    let file = Config::from_toml("[proxy]\nlisten = \"localhost:3200\"\n", "f.toml").unwrap_err().to_string();
    assert!(file.contains("expected IP:PORT, e.g. 127.0.0.1:3200"), "{file}");
}

#[test]
fn humantime_durations_and_sources() {
    let c = Config::from_toml(
        r#"
        [proxy]
        listen = "127.0.0.1:0"
        idle_timeout = "1m 30s"
        connect_timeout = "250ms"
        splice = false
        [blocklist]
        sources = ["/a/hosts", { source = "/b.txt", name = "mine", format = "plain", interval = "1h" }, "https://lists.example/x/hosts.txt"]
        update_interval = "5m"
        "#,
        "t",
    )
    .unwrap();
    assert_eq!(c.proxy.idle_timeout, Duration::from_secs(90));
    assert_eq!(c.proxy.connect_timeout, Duration::from_millis(250));
    assert!(!c.proxy.splice);
    assert!(Config::default().proxy.splice);
    assert_eq!(c.blocklist.sources.len(), 3);
    assert_eq!(c.blocklist.sources[0].display_name(), "hosts");
    assert_eq!(c.blocklist.sources[1].display_name(), "mine");
    assert_eq!(c.blocklist.sources[1].interval(), Some(Duration::from_secs(3600)));
    assert_eq!(c.blocklist.sources[2].display_name(), "lists.example/hosts.txt");
    assert!(c.blocklist.sources[2].is_url());
    assert_eq!(c.blocklist.update_interval, Duration::from_secs(300));
}

#[test]
fn unknown_key_is_named() {
    let err = Config::from_toml("[proxy]\nlisten_addr = \"127.0.0.1:1\"\n", "cfg.toml").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("listen_addr"), "{msg}");
    assert!(msg.contains("cfg.toml"), "{msg}");
    let err = Config::from_toml("[prxy]\n", "cfg.toml").unwrap_err();
    assert!(err.to_string().contains("prxy"), "{err}");
}

#[test]
fn control_and_system_proxy() {
    let c = Config::from_toml("[control]\nlisten = \"none\"\n[system_proxy]\nenabled = true\nbackend = \"kde\"\n", "t")
        .unwrap();
    assert_eq!(c.control.addr().unwrap(), None);
    assert!(c.system_proxy.enabled);
    assert!(Config::from_toml("[control]\nlisten = \"0.0.0.0:3001\"\n", "t").is_err(), "control API beyond loopback");
    assert!(Config::from_toml("[system_proxy]\nbackend = \"amiga\"\n", "t").is_err());
    assert!(Config::from_toml("[control]\nlisten = \"none\"\n[system_proxy]\nmode = \"pac\"\n", "t").is_err());
    assert_eq!(Config::default().control.addr().unwrap(), Some("127.0.0.1:3001".parse().unwrap()));
}

#[test]
fn bad_values_are_errors() {
    assert!(Config::from_toml("[proxy]\nidle_timeout = \"soon\"\n", "t").is_err());
    assert!(Config::from_toml("[proxy]\nidle_timeout = \"0s\"\n", "t").is_err());
    assert!(Config::from_toml("[proxy]\nmax_connections = 0\n", "t").is_err());
    assert!(Config::from_toml("[proxy]\nlisten = \"nowhere\"\n", "t").is_err());
}

#[test]
fn upstream_section() {
    assert_eq!(Config::default().upstream.mode, UpstreamMode::System);
    let c = Config::from_toml(
        "[upstream]\nmode = \"fixed\"\nproxy = \"http://corp.example:8123\"\nbypass = [\"*.corp.example\"]\nuser = \"me\"\npassword = \"s3cret\"\n",
        "t",
    )
    .unwrap();
    assert_eq!(c.upstream.proxy_server().unwrap().unwrap().to_string(), "corp.example:8123");
    assert!(!format!("{c:?}").contains("s3cret"), "the password is never printed");
    let bad = |t: &str| Config::from_toml(t, "t").unwrap_err().to_string();
    assert!(bad("[upstream]\nmode = \"fixed\"\n").contains("needs upstream.proxy"));
    assert!(bad("[upstream]\nproxy = \"http://a:1\"\n").contains("mode = \"fixed\""));
    assert!(bad("[upstream]\nmode = \"fixed\"\nproxy = \"socks5://a:1\"\n").contains("only HTTP parents"));
    assert!(bad("[upstream]\nmode = \"fixed\"\npac = \"wpad\"\n").contains("upstream.pac"));
    assert!(bad("[upstream]\nuser = \"me\"\n").contains("both user and password"));
    assert!(bad("[upstream]\nmode = \"proxied\"\n").contains("proxied"));
}

#[test]
fn never_an_open_proxy() {
    let err = Config::from_toml("[proxy]\nlisten = \"0.0.0.0:3128\"\n", "t").unwrap_err().to_string();
    assert!(err.contains("[access] allow"), "{err}");
    assert!(Config::from_toml("[proxy]\nproxy_protocol = true\n", "t").is_err());
    let c = Config::from_toml(
        "[proxy]\nlisten = \"0.0.0.0:3128\"\n[access]\nallow = [\"192.168.1.0/24\", \"10.0.0.7\"]\n",
        "t",
    )
    .unwrap();
    assert_eq!(c.access.allow_nets().unwrap().len(), 2);
    assert!(
        Config::from_toml("[proxy]\nlisten = \"0.0.0.0:3128\"\n[access]\nallow = [\"10.0.0.0/33\"]\n", "t").is_err()
    );
    let bad_hash =
        "[proxy]\nlisten = \"0.0.0.0:3128\"\n[access]\nusers = [{ name = \"a\", password_hash = \"plain\" }]\n";
    assert!(Config::from_toml(bad_hash, "t").unwrap_err().to_string().contains("argon2"));
    let phc = crate::access::hash_password("pw").unwrap();
    let good = format!(
        "[proxy]\nlisten = \"0.0.0.0:3128\"\n[access]\nusers = [{{ name = \"a\", password_hash = \"{phc}\" }}]\n"
    );
    assert!(Config::from_toml(&good, "t").is_ok());
}
