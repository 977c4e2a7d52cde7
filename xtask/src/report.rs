//! Reading test output as it streams by, for the closing summary: every `test NAME ... ok`,
//! `FAILED` and `ignored` line of libtest and libtest-mimic, with the reason of a skip
//! (`ignored, reason` from `#[ignore = "reason"]`, `ignored (reason)` from a run-time skip).

/// What one suite (the Linux workspace, the Windows build under Wine) reported.
#[derive(Default)]
pub struct Suite {
    pub name: &'static str,
    pub passed: usize,
    pub failed: Vec<String>,
    pub skipped: Vec<Skipped>,
    /// The whole suite did not run: a script said `SKIPPED: why`.
    pub suite_skip: Option<String>,
    /// The test binary whose results are being read (from cargo's `Running …` lines).
    binary: String,
}

/// A test that did not run, and why.
pub struct Skipped {
    pub test: String,
    pub reason: String,
}

impl Suite {
    pub fn new(name: &'static str) -> Suite {
        Suite { name, ..Suite::default() }
    }

    /// Takes one line of output (cargo's and the test binaries', merged).
    pub fn line(&mut self, line: &str) {
        let line = line.trim_end();
        if let Some(why) = line.strip_prefix("SKIPPED: ") {
            self.suite_skip = Some(format!("the {} suite: {why}", self.name));
            return;
        }
        if let Some(rest) = line.trim_start().strip_prefix("Running ") {
            // `Running tests/desktop.rs (target/debug/deps/desktop-…)` or `Running unittests src/lib.rs (…)`.
            self.binary = rest.split(" (").next().unwrap_or(rest).to_string();
            return;
        }
        if line.trim_start().starts_with("Doc-tests ") {
            self.binary = line.trim().to_string();
            return;
        }
        let Some(rest) = line.strip_prefix("test ") else { return };
        let Some((name, outcome)) = rest.split_once(" ... ") else { return };
        let test = if self.binary.is_empty() { name.to_string() } else { format!("{}: {name}", self.binary) };
        match outcome {
            "ok" => self.passed += 1,
            o if o.starts_with("FAILED") => self.failed.push(test),
            o if o.starts_with("ignored") => {
                let reason = o["ignored".len()..].trim_start_matches(',').trim();
                let reason = reason.strip_prefix('(').and_then(|r| r.strip_suffix(')')).unwrap_or(reason);
                let reason = if reason.is_empty() { "no reason given".to_string() } else { reason.to_string() };
                self.skipped.push(Skipped { test, reason });
            }
            _ => {}
        }
    }

    /// Skips that are limits of the platform under test (allowed in CI), not of this machine.
    pub fn platform_limits(&self) -> impl Iterator<Item = &Skipped> {
        self.skipped.iter().filter(|s| s.reason.starts_with("platform limit:"))
    }

    /// Skips of tests that could run here with the right tools or rights.
    pub fn machine_skips(&self) -> impl Iterator<Item = &Skipped> {
        self.skipped.iter().filter(|s| !s.reason.starts_with("platform limit:"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_both_harnesses() {
        let mut s = Suite::new("linux");
        for line in [
            "     Running tests/desktop.rs (target/debug/deps/desktop-1234)",
            "test gnome_settings_come_back_exactly ... ok",
            "test kde_settings_come_back_exactly ... ignored (needs kwriteconfig5 (apt-get install libkf5config-bin))",
            "test wine_only ... ignored, platform limit: Wine 8's netsh is a stub",
            "test bare ... ignored",
            "test broken ... FAILED",
            "test result: FAILED. 1 passed; 1 failed; 3 ignored; 0 measured; 0 filtered out",
        ] {
            s.line(line);
        }
        assert_eq!(s.passed, 1);
        assert_eq!(s.failed, ["tests/desktop.rs: broken"]);
        let reasons: Vec<&str> = s.skipped.iter().map(|k| k.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "needs kwriteconfig5 (apt-get install libkf5config-bin)",
                "platform limit: Wine 8's netsh is a stub",
                "no reason given"
            ]
        );
        assert_eq!(s.platform_limits().count(), 1);
        assert_eq!(s.machine_skips().count(), 2);
    }
}
