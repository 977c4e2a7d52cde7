//! Reading test output as it streams by, for the closing summary: every `test NAME ... ok`,
//! `FAILED` and `ignored` line of libtest and libtest-mimic, with the reason of a skip
//! (`ignored, reason` from `#[ignore = "reason"]`, `ignored (reason)` from a run-time skip).

/// What one suite (the Linux workspace, the Windows build under Wine) reported.
#[derive(Default)]
pub struct Suite {
    pub name: &'static str,
    pub passed: usize,
    pub failed: Vec<String>,
    /// Test binaries cargo reported as failed (`error: test failed, to rerun pass …`): one
    /// that crashed, or never started, fails with no failed test to name.
    pub failed_binaries: Vec<String>,
    pub skipped: Vec<Skipped>,
    /// The whole suite did not run: a script said `SKIPPED: why`.
    pub suite_skip: Option<String>,
    /// Outcomes of the closed sections: for each test binary, the larger of what its
    /// `test result:` line says and the outcome lines read. Where a suite's stdout and
    /// stderr are merged (Wine), another test's output can break a `test NAME ... ok` line
    /// (the total still counts it) or a `Running` line (the binary's lines still count).
    pub totals: Totals,
    /// Outcome lines read since the last `test result:` or `Running` line: a binary still
    /// running, one that crashed before its total, or a script's own `test NAME ... ok`.
    section: Totals,
    /// The test binary whose results are being read (from cargo's `Running …` lines).
    binary: String,
}

/// Outcomes as the test binaries counted them.
#[derive(Default, Clone, Copy)]
pub struct Totals {
    pub passed: usize,
    pub failed: usize,
    pub ignored: usize,
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
        if let Some(rest) = line.trim_start().strip_prefix("error: test failed, to rerun pass `") {
            self.failed_binaries.push(rest.trim_end_matches('`').to_string());
            return;
        }
        if let Some(rest) = line.trim_start().strip_prefix("Running ") {
            // `Running tests/desktop.rs (target/debug/deps/desktop-…)` or `Running unittests src/lib.rs (…)`.
            self.close_section(Totals::default());
            self.binary = rest.split(" (").next().unwrap_or(rest).to_string();
            return;
        }
        if line.trim_start().starts_with("Doc-tests ") {
            self.close_section(Totals::default());
            self.binary = line.trim().to_string();
            return;
        }
        if let Some(counts) = line.trim_start().strip_prefix("test result: ") {
            // `ok. 15 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 8.19s`
            let mut reported = Totals::default();
            for part in counts.split(';') {
                let words: Vec<&str> = part.split_whitespace().collect();
                let [.., n, kind] = words[..] else { continue };
                let Ok(n) = n.parse::<usize>() else { continue };
                match kind {
                    "passed" => reported.passed += n,
                    "failed" => reported.failed += n,
                    "ignored" => reported.ignored += n,
                    _ => {}
                }
            }
            self.close_section(reported);
            // What comes after a binary's total is not that binary's (a script's own lines).
            self.binary.clear();
            return;
        }
        let Some(rest) = line.strip_prefix("test ") else { return };
        let Some((name, outcome)) = rest.split_once(" ... ") else { return };
        let test = if self.binary.is_empty() { name.to_string() } else { format!("{}: {name}", self.binary) };
        match outcome {
            "ok" => {
                self.passed += 1;
                self.section.passed += 1;
            }
            o if o.starts_with("FAILED") => {
                self.failed.push(test);
                self.section.failed += 1;
            }
            o if o.starts_with("ignored") => {
                self.section.ignored += 1;
                let reason = o["ignored".len()..].trim_start_matches(',').trim();
                let reason = reason.strip_prefix('(').and_then(|r| r.strip_suffix(')')).unwrap_or(reason);
                let reason = if reason.is_empty() { "no reason given".to_string() } else { reason.to_string() };
                self.skipped.push(Skipped { test, reason });
            }
            _ => {}
        }
    }

    /// Ends a section of outcome lines: each count is the larger of the lines read and the
    /// total `reported` for them (nothing when no total came).
    fn close_section(&mut self, reported: Totals) {
        let read = std::mem::take(&mut self.section);
        self.totals.passed += read.passed.max(reported.passed);
        self.totals.failed += read.failed.max(reported.failed);
        self.totals.ignored += read.ignored.max(reported.ignored);
    }

    /// Passed, failed and skipped: per test binary the larger of the lines read and its own
    /// total (a binary that crashed prints no total), plus the lines after the last total.
    pub fn counts(&self) -> Totals {
        Totals {
            passed: self.totals.passed + self.section.passed,
            failed: self.totals.failed + self.section.failed,
            ignored: self.totals.ignored + self.section.ignored,
        }
    }

    /// Outcomes the binaries counted whose own line was not read (broken by other output).
    pub fn unnamed(&self) -> usize {
        let c = self.counts();
        (c.passed - self.passed) + (c.failed - self.failed.len()) + (c.ignored - self.skipped.len())
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
        assert_eq!(s.unnamed(), 0, "every outcome the total counts was read");
    }

    /// Under Wine the two streams are one: a test's `eprintln!` can break the harness's
    /// line. The binary's total still counts that test.
    #[test]
    fn a_broken_line_is_counted_by_the_total() {
        let mut s = Suite::new("wine");
        for line in [
            "     Running tests/cli.rs (target/x86_64-pc-windows-gnu/debug/deps/cli-1.exe)",
            "test a ... ok",
            "under Wine, the DACL reads back as Dacl { entries: [(truetest b          ... , (true, ignored (platform limit: x)",
            "test c ... ok",
            "test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.10s",
            "test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s",
        ] {
            s.line(line);
        }
        let c = s.counts();
        assert_eq!((c.passed, c.failed, c.ignored), (2, 1, 1));
        assert_eq!(s.skipped.len(), 0);
        assert_eq!(s.unnamed(), 2, "the broken skip and the failure whose line never came");
    }

    /// A binary that failed with no failed test (it crashed, or never started) is named.
    #[test]
    fn a_binary_that_failed_without_a_failed_test_is_named() {
        let mut s = Suite::new("wine");
        for line in [
            "     Running tests/logind.rs (target/x86_64-pc-windows-gnu/debug/deps/logind-1.exe)",
            "error: test failed, to rerun pass `-p guardnest-sysproxy --test logind`",
        ] {
            s.line(line);
        }
        assert_eq!(s.failed_binaries, ["-p guardnest-sysproxy --test logind"]);
        assert!(s.failed.is_empty());
    }

    /// Each binary is counted on its own: one binary's extra lines never hide another's
    /// broken ones, and a script's own outcome lines after the last total count once.
    #[test]
    fn each_binary_is_counted_on_its_own() {
        let mut s = Suite::new("wine");
        for line in [
            "     Running tests/instance.rs (target/x86_64-pc-windows-gnu/debug/deps/instance-1.exe)",
            "test a ... ok",
            "Press any key to continue...test b ... ok",
            "test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s",
            // A binary that crashed: its lines, no total; the next binary's `Running` line was
            // broken too, so only the next total ends the section.
            "     Running tests/crash.rs (target/x86_64-pc-windows-gnu/debug/deps/crash-1.exe)",
            "test c ... ok",
            "test d ... ok",
            "error: test failed, to rerun pass `--test crash`",
            "garbage     Running tests/next.rs (target/x86_64-pc-windows-gnu/debug/deps/next-1.exe)",
            "test e ... ok",
            "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.10s",
            // A script's own checks, after the last binary.
            "test installer_upgrade ... ok",
        ] {
            s.line(line);
        }
        let c = s.counts();
        assert_eq!(c.passed, 2 + 3 + 1, "instance's total, the crashed binary's and next's lines, the script's");
        assert_eq!(s.unnamed(), 1, "instance's broken line");
    }
}
