//! The owner of a loopback connection, asked of the real OS with real processes: this test
//! binary run again as a client of its own (a client `.exe` of ours on Windows), whose PID
//! the test knows.
//!
//! - this process and a child are named with their PIDs and programs;
//! - a connection whose program has exited is not found (never named after someone else);
//! - Linux, as root: a client run as `nobody` is named with its user, and a GuardNest run as
//!   `nobody` names root's client by its user only ("a program of user root"), never
//!   guessing at what it may not read.
//!
//! Under Wine 8, GetExtendedTcpTable lists the connections but with owning PID 0 on every
//! row: the owner is reported as unknown (`Restricted` without a PID), never guessed, and
//! the naming tests are a named platform limit.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use guardnest_sysproxy::peer::{program_name, Ends, Owner, Owners};
use guardnest_testkit::{passed, platform_limit, Outcome};

/// Set in a child: what it does instead of running the tests.
const CHILD: &str = "GUARDNEST_PEER_TEST_CHILD";
/// How long any wait of these tests lasts at most.
const WAIT: Duration = Duration::from_secs(20);

fn main() {
    if let Ok(role) = std::env::var(CHILD) {
        child(&role);
        return;
    }
    guardnest_testkit::run(vec![
        guardnest_testkit::trial("this_process_and_a_child_are_named_by_pid_and_program", named),
        guardnest_testkit::trial("a_connection_whose_program_exited_is_not_found", exited),
        guardnest_testkit::trial("a_pair_nobody_holds_is_not_found", nobody_holds),
        guardnest_testkit::trial(
            "one_resolver_names_each_new_connection_after_its_own_program_as_owners_come_and_go",
            owners_come_and_go,
        ),
        guardnest_testkit::trial("one_resolver_shared_by_threads_names_every_connection", shared_by_threads),
        guardnest_testkit::trial("another_users_program_is_named_by_its_user_only", other_user),
    ]);
}

/// `connect:ADDR`: connect, print the local address, hold the connection until stdin
/// closes. `resolve:CLIENT,SERVER`: print the owner found, one line.
fn child(role: &str) {
    if let Some(addr) = role.strip_prefix("connect:") {
        let stream = TcpStream::connect(addr).expect("child connects");
        println!("{}", stream.local_addr().expect("local address"));
        std::io::stdout().flush().expect("stdout");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        drop(stream);
    } else if let Some(pair) = role.strip_prefix("resolve:") {
        let (client, server) = pair.split_once(',').expect("CLIENT,SERVER");
        let ends = Ends::new(client.parse().expect("client"), server.parse().expect("server"));
        println!("{:?}", Owners::new().owner(ends));
    }
}

/// A child client connected to `server`, and its address.
fn client(server: SocketAddr, user: Option<&str>) -> (Child, SocketAddr) {
    let exe = std::env::current_exe().unwrap();
    let mut command = match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let mut child =
        command.env(CHILD, format!("connect:{server}")).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().parse().unwrap_or_else(|_| panic!("the child's address, got {line:?}"));
    (child, addr)
}

/// What Wine reports instead of an owner, as a platform limit; `None` elsewhere.
fn wine_limit(owner: &Owner) -> Option<Outcome> {
    if !guardnest_testkit::under_wine() {
        return None;
    }
    assert_eq!(
        *owner,
        Owner::Restricted { pid: None, user: None },
        "under Wine a connection is listed without its owner, and reported as unknown"
    );
    Some(platform_limit(
        "Wine 8 lists loopback connections in GetExtendedTcpTable(TCP_TABLE_OWNER_PID_CONNECTIONS) with \
         owning PID 0 on every row (seen for this process and for a child .exe of ours: both ends listed, state \
         ESTABLISHED, PID 0), so no program can be named; GuardNest reports such a connection as 'a program the \
         OS does not name'",
    ))
}

fn same_program(found: &Path, expected: &Path) {
    let (found_name, expected_name) = (program_name(found), program_name(expected));
    assert_eq!(
        found_name.map(|n| n.to_lowercase()),
        expected_name.map(|n| n.to_lowercase()),
        "{found:?} vs {expected:?}"
    );
    #[cfg(unix)]
    assert_eq!(found.canonicalize().unwrap(), expected.canonicalize().unwrap());
}

fn named() -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let owners = Owners::new();
    let exe = std::env::current_exe().unwrap();

    // This process, on both ends.
    let mine = TcpStream::connect(server).unwrap();
    let (_accepted, peer) = listener.accept().unwrap();
    let started = Instant::now();
    let own = owners.owner(Ends::new(peer, server)).unwrap();
    eprintln!("this process ({}): {own:?} in {:?}", std::process::id(), started.elapsed());

    // A child, a program of our own run again as a client.
    let (mut child, addr) = client(server, None);
    let (_accepted, peer) = listener.accept().unwrap();
    assert_eq!(peer, addr);
    let started = Instant::now();
    let theirs = owners.owner(Ends::new(peer, server)).unwrap();
    eprintln!("child ({}): {theirs:?} in {:?}", child.id(), started.elapsed());
    let child_pid = child.id();
    drop(child.stdin.take());
    child.wait().unwrap();
    drop(mine);

    if let Some(limit) = wine_limit(&own) {
        wine_limit(&theirs);
        return limit;
    }
    match own {
        Owner::Program(p) => {
            assert_eq!(p.pid, std::process::id());
            same_program(p.path.as_deref().expect("our own program's path"), &exe);
            assert!(p.user.is_some(), "our own user is named");
        }
        other => panic!("expected this process, got {other:?}"),
    }
    match theirs {
        Owner::Program(p) => {
            assert_eq!(p.pid, child_pid, "the child's PID");
            same_program(p.path.as_deref().expect("the child's program"), &exe);
        }
        other => panic!("expected the child, got {other:?}"),
    }
    passed()
}

fn exited() -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let (mut child, addr) = client(server, None);
    let (_accepted, peer) = listener.accept().unwrap();
    assert_eq!(peer, addr);
    let owners = Owners::new();
    child.kill().unwrap();
    child.wait().unwrap();
    // Its socket closes as it exits; until the OS has dropped it, whatever is found must
    // not be a program.
    let deadline = Instant::now() + WAIT;
    loop {
        match owners.owner(Ends::new(peer, server)).unwrap() {
            Owner::NotFound => break,
            Owner::Program(p) => panic!("a connection of a program that exited named after {p:?}"),
            other if Instant::now() > deadline => panic!("still {other:?} after {WAIT:?}"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    passed()
}

/// The resolver keeps what it learnt of recent owners (their open descriptor directories,
/// where their sockets were, their programs): none of it may name a connection after the
/// wrong process. Connections reopened one after another by this process (each usually at a
/// number the last one freed), a child that exits, then another child: each named by its
/// own PID, by the same resolver.
fn owners_come_and_go() -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let owners = Owners::new();
    let me = std::process::id();
    for i in 0..50 {
        let _mine = TcpStream::connect(server).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        match owners.owner(Ends::new(peer, server)).unwrap() {
            Owner::Program(p) => assert_eq!(p.pid, me, "connection {i}"),
            other => {
                if let Some(limit) = wine_limit(&other) {
                    return limit;
                }
                panic!("connection {i}: expected this process, got {other:?}")
            }
        }
    }
    let mut pids = Vec::new();
    for round in 0..3 {
        let (mut child, addr) = client(server, None);
        let (_accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, addr);
        match owners.owner(Ends::new(peer, server)).unwrap() {
            Owner::Program(p) => assert_eq!(p.pid, child.id(), "child {round}"),
            other => panic!("child {round}: expected its PID {}, got {other:?}", child.id()),
        }
        pids.push(child.id());
        drop(child.stdin.take());
        child.wait().unwrap();
        // And this process again, after a kept owner has gone.
        let _mine = TcpStream::connect(server).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        match owners.owner(Ends::new(peer, server)).unwrap() {
            Owner::Program(p) => assert_eq!(p.pid, me, "this process after child {round} exited"),
            other => panic!("expected this process, got {other:?}"),
        }
    }
    eprintln!("children named in turn: {pids:?}");
    passed()
}

/// One resolver asked from several threads at once (GuardNest's namer and a sweep can
/// overlap): what one lookup keeps of a recent owner while it reads it must not hide that
/// owner from the others. Each thread holds a connection of this process and asks for it
/// again and again; every answer is this process.
fn shared_by_threads() -> Outcome {
    const THREADS: usize = 4;
    const LOOKUPS: usize = 150;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let owners = std::sync::Arc::new(Owners::new());
    let me = std::process::id();
    let mut held = Vec::new();
    let mut threads = Vec::new();
    for t in 0..THREADS {
        let mine = TcpStream::connect(server).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        held.push((mine, accepted));
        let owners = owners.clone();
        threads.push(std::thread::spawn(move || {
            (0..LOOKUPS).map(|i| (t, i, owners.owner(Ends::new(peer, server)).unwrap())).collect::<Vec<_>>()
        }));
    }
    let answers: Vec<_> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    drop(held);
    if let Some(limit) = wine_limit(&answers[0].2) {
        return limit;
    }
    // Another trial's child, between its fork and its exec, holds this process's sockets
    // too: named after it is named after this program, and right. Any other answer is not.
    let exe = std::env::current_exe().unwrap();
    let ours = |o: &Owner| match o {
        Owner::Program(p) => {
            p.pid == me || p.path.as_deref().is_some_and(|path| program_name(path) == program_name(&exe))
        }
        _ => false,
    };
    let wrong: Vec<_> = answers.iter().filter(|(_, _, o)| !ours(o)).collect();
    assert!(
        wrong.is_empty(),
        "{} of {} lookups named someone else: {:?}",
        wrong.len(),
        answers.len(),
        &wrong[..wrong.len().min(3)]
    );
    passed()
}

fn nobody_holds() -> Outcome {
    let owners = Owners::new();
    let ends = Ends::new("127.0.0.1:9".parse().unwrap(), "127.0.0.1:7".parse().unwrap());
    assert_eq!(owners.owner(ends).unwrap(), Owner::NotFound);
    let v6 = Ends::new("[::1]:9".parse().unwrap(), "[::1]:7".parse().unwrap());
    assert_eq!(owners.owner(v6).unwrap(), Owner::NotFound);
    passed()
}

#[cfg(not(target_os = "linux"))]
fn other_user() -> Outcome {
    platform_limit("the two-user test uses runuser and /proc permissions: Linux only")
}

#[cfg(target_os = "linux")]
fn other_user() -> Outcome {
    // SAFETY: no arguments.
    if unsafe { libc::geteuid() } != 0 {
        return guardnest_testkit::skip("needs root, to run a client and a resolver as the user nobody (runuser)");
    }
    if let Some(skipped) = guardnest_testkit::needs_tools(&["runuser"], "apt-get install util-linux") {
        return skipped;
    }
    let exe = std::env::current_exe().unwrap();
    if Command::new("runuser")
        .args(["-u", "nobody", "--", "test", "-x"])
        .arg(&exe)
        .status()
        .map_or(true, |s| !s.success())
    {
        return guardnest_testkit::skip(format!(
            "the user nobody cannot run {} (a private directory on its path)",
            exe.display()
        ));
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();

    // Root looks at nobody's client: named, with its user.
    let (mut child, addr) = client(server, Some("nobody"));
    let (_accepted, peer) = listener.accept().unwrap();
    assert_eq!(peer, addr);
    let owner = Owners::new().owner(Ends::new(peer, server)).unwrap();
    eprintln!("nobody's client, seen by root: {owner:?}");
    match owner {
        // runuser runs the program as its child: the client is runuser's child.
        Owner::Program(p) => {
            assert_eq!(p.user.as_deref(), Some("nobody"));
            same_program(p.path.as_deref().unwrap(), &exe);
            assert_ne!(p.pid, std::process::id());
        }
        other => panic!("expected nobody's program, got {other:?}"),
    }
    drop(child.stdin.take());
    child.wait().unwrap();

    // nobody looks at root's client (this process): its user only.
    let mine = TcpStream::connect(server).unwrap();
    let (_accepted, peer) = listener.accept().unwrap();
    let seen = Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(&exe)
        .env(CHILD, format!("resolve:{peer},{server}"))
        .output()
        .unwrap();
    let seen = String::from_utf8_lossy(&seen.stdout).trim().to_string();
    eprintln!("root's client, seen by nobody: {seen}");
    assert_eq!(seen, r#"Ok(Restricted { pid: None, user: Some("root") })"#);
    drop(mine);
    passed()
}
