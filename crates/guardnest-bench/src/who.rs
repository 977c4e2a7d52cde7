//! `guardnest-bench who`: what naming the program behind one client connection costs
//! ([`guardnest_core::who`]), with 500 other processes running as the issue asks: median and
//! 99th percentile, for the resolver as the proxy keeps it (the asking program found among
//! the latest owners) and for a new resolver each time (every process of the user read).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::Instant;

use guardnest_core::sysproxy::peer::{Ends, Owner, Owners};

/// Other processes running during the measurement.
const OTHERS: usize = 500;
/// Connections named per row.
const LOOKUPS: usize = 400;

struct Others(Vec<Child>);

impl Drop for Others {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn run() -> anyhow::Result<()> {
    let mut others = Others(Vec::with_capacity(OTHERS));
    for _ in 0..OTHERS {
        others.0.push(Command::new("sleep").arg("600").spawn()?);
    }
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let server = listener.local_addr()?;
    let processes = std::fs::read_dir("/proc")?
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit())))
        .count();
    println!("who: {processes} processes running ({OTHERS} of them started for this); {LOOKUPS} lookups per row");
    println!("{:<58} {:>10} {:>10}", "lookup (the asking program's open descriptors)", "median µs", "p99 µs");
    let mut held = Vec::new();
    // The asking program is this one: first with few descriptors, then with many (a browser
    // holds hundreds; each one's link is read until the connection's socket is found).
    for connections in [8, LOOKUPS] {
        while held.len() < connections {
            let client = TcpStream::connect(server)?;
            let (accepted, _) = listener.accept()?;
            held.push((Ends::new(client.local_addr()?, server), client, accepted));
        }
        let fds = std::fs::read_dir("/proc/self/fd")?.count();
        let kept = Owners::new();
        for (name, fresh) in [("kept resolver", false), ("new resolver each time", true)] {
            let mut times = Vec::with_capacity(LOOKUPS);
            for i in 0..LOOKUPS {
                let ends = held[i % held.len()].0;
                let owners;
                let resolver = if fresh {
                    owners = Owners::new();
                    &owners
                } else {
                    &kept
                };
                let start = Instant::now();
                let owner = resolver.owner(ends)?;
                times.push(start.elapsed().as_secs_f64() * 1e6);
                anyhow::ensure!(
                    matches!(&owner, Owner::Program(p) if p.pid == std::process::id()),
                    "named wrongly: {owner:?}"
                );
            }
            times.sort_by(f64::total_cmp);
            let row = format!("{name} ({fds} descriptors)");
            println!("{row:<58} {:>10.1} {:>10.1}", percentile(&times, 0.5), percentile(&times, 0.99));
        }
    }
    Ok(())
}
