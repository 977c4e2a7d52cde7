//! Process memory and CPU figures from /proc (Linux).

/// A field of /proc/self/status in KiB (VmRSS, VmHWM), or 0 when unavailable.
pub fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident set size in bytes.
pub fn rss() -> u64 {
    status_kib("VmRSS") * 1024
}

/// Peak resident set size in bytes since start or the last [`reset_hwm`].
pub fn hwm() -> u64 {
    status_kib("VmHWM") * 1024
}

/// Resets the peak RSS to the current RSS (Linux: write 5 to clear_refs).
pub fn reset_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

// ---------- other processes (the proxies under test) ----------

/// The process and its descendants (tinyproxy serves from forked children).
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
            if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                parents.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

/// CPU time (ns) of the target: user + system time of the process and its children,
/// including threads that already exited (tinyproxy and Privoxy use a thread per
/// connection), from /proc/PID/stat, in clock ticks.
pub fn cpu_ns(pid: Option<u32>) -> Option<u64> {
    let root = pid?;
    // SAFETY: sysconf has no preconditions.
    let tick_ns = 1e9 / (unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64).max(1.0);
    let mut ticks = 0.0;
    for p in process_tree(root) {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime, stime, cutime, cstime are fields 14-17; after ")" they are 11..15.
        ticks += fields.get(11..15).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    }
    Some((ticks * tick_ns) as u64)
}

/// RSS of the target's process tree, KiB (shared pages of forked children count twice).
pub fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let mut total = 0;
    for p in process_tree(pid?) {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{p}/status")) else { continue };
        total += status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

pub fn open_fds(pid: Option<u32>) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{}/fd", pid?)).ok()?.count())
}
