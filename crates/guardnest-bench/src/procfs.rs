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
