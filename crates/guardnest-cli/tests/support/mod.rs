//! Running the real `guardnest` binary in tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_guardnest");
pub const WAIT: Duration = Duration::from_secs(10);

/// A running `guardnest run`, its log lines arriving on a channel.
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far.
    seen: Vec<String>,
    pub addr: SocketAddr,
    /// The child leads a process group (started with `process_group(0)`): end it whole, so
    /// a guardnest under dbus-run-session is not orphaned when a test fails.
    pub group: bool,
}

impl Running {
    pub fn start(cmd: &mut Command) -> Running {
        #[cfg(windows)]
        {
            use std::os::windows::process::CommandExt as _;
            // Its own console, so that `signal` can send it a Ctrl-C that reaches no one else.
            cmd.creation_flags(windows_sys::Win32::System::Threading::CREATE_NEW_CONSOLE);
        }
        let mut child = cmd.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().expect("spawn guardnest");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut running = Running { child, lines, seen: Vec::new(), addr: "0.0.0.0:0".parse().unwrap(), group: false };
        let line = running.wait_for("listening on ");
        running.addr = line.rsplit("listening on ").next().unwrap().trim().parse().expect("address in log");
        running
    }

    /// Every log line read so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// The first log line (already seen or still to come) containing `needle`.
    pub fn wait_for(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("no log line containing {needle:?}");
                }
            }
        }
    }

    /// How many lines read so far contain `needle`.
    pub fn seen_matching(&self, needle: &str) -> usize {
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }

    /// Sends `sig` (`-TERM`, `-INT`, `-KILL`). On Windows, `-TERM` and `-INT` are a Ctrl-C in
    /// the child's console (what Ctrl-C in a terminal, and Wine for a SIGINT, deliver) and
    /// `-KILL` is TerminateProcess.
    pub fn signal(&self, sig: &str) {
        #[cfg(unix)]
        {
            let status = Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap();
            assert!(status.success());
        }
        #[cfg(windows)]
        match sig {
            "-TERM" | "-INT" => win::ctrl_c(self.child.id()),
            "-KILL" => win::terminate(self.child.id()),
            other => panic!("no Windows equivalent for {other}"),
        }
    }

    pub fn wait_exit(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("guardnest did not exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.group {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An echo server on loopback, one thread per connection (a tunnel's destination).
pub fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut s);
            });
        }
    });
    addr
}

/// Reads one response head, byte by byte so nothing after it is consumed.
pub fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The status code of a response head (0 if there is none).
pub fn status_of(head: &str) -> u16 {
    head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// CONNECT through the proxy; returns the status code.
pub fn connect_status(proxy: SocketAddr, target: &str) -> u16 {
    let mut s = TcpStream::connect_timeout(&proxy, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    status_of(&read_head(&mut s))
}

/// Resident memory of a process in KiB (Linux: VmRSS; Windows: the working set).
pub fn rss_kib(pid: u32) -> u64 {
    #[cfg(unix)]
    return proc_status_kib(pid, "VmRSS:");
    #[cfg(windows)]
    return win::memory(pid).0;
}

/// Peak resident memory of a process in KiB (Linux: VmHWM; Windows: the peak working set).
pub fn peak_rss_kib(pid: u32) -> u64 {
    #[cfg(unix)]
    return proc_status_kib(pid, "VmHWM:");
    #[cfg(windows)]
    return win::memory(pid).1;
}

/// Open descriptors of a process (Linux: /proc/PID/fd; Windows: its handle count, sockets
/// included).
pub fn open_fds(pid: u32) -> usize {
    #[cfg(unix)]
    return std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    #[cfg(windows)]
    return win::handles(pid);
}

#[cfg(unix)]
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The Windows side of the helpers above.
#[cfg(windows)]
pub mod win {
    use parking_lot::Mutex;

    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, STILL_ACTIVE, TRUE};
    use windows_sys::Win32::System::Console::{
        AttachConsole, FreeConsole, GenerateConsoleCtrlEvent, GetStdHandle, SetConsoleCtrlHandler, SetStdHandle,
        CTRL_C_EVENT, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
    };
    use windows_sys::Win32::System::ProcessStatus::{GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS};
    use windows_sys::Win32::System::Threading::{
        GetExitCodeProcess, GetProcessHandleCount, OpenProcess, TerminateProcess, PROCESS_QUERY_INFORMATION,
        PROCESS_TERMINATE, PROCESS_VM_READ,
    };

    /// Attaching to another console is per process: one Ctrl-C at a time.
    static CONSOLE: Mutex<()> = Mutex::new(());

    /// Swallows the Ctrl-C this process sends while attached to a child's console.
    unsafe extern "system" fn swallow(_event: u32) -> i32 {
        TRUE
    }

    /// How often `ctrl_c` tries the attach again, until it works or [`WAIT`](super::WAIT) has passed.
    const ATTACH_POLL: std::time::Duration = std::time::Duration::from_millis(25);

    /// Sends Ctrl-C to the console of `pid` (started with CREATE_NEW_CONSOLE): attach to it,
    /// generate the event for every process on it, detach. A handler (not the inherited
    /// ignore flag) keeps this process alive, so later children still see their Ctrl-C; the
    /// standard handles are put back after, since attaching points them at that console
    /// (Wine does), where libtest's output would be lost.
    ///
    /// Wine 8 once in a while refuses the attach with ERROR_INVALID_HANDLE (seen twice in
    /// about 250 runs of the faults suite, both on a child started just before). Wine maps
    /// every refusal of the bind to that one error: this process still counted as on a
    /// console, or the child not (yet) on its own. A failed attach frees the half-made
    /// connection, so the attach is tried again until it works or the harness's usual bound
    /// has passed; the refusals are counted, and their distinct errors kept for the message.
    pub fn ctrl_c(pid: u32) {
        let _one = CONSOLE.lock();
        let std_handles = [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE];
        // SAFETY: console and handle calls with no pointers but a static handler function;
        // the saved handles stay open (they are this process's own).
        unsafe {
            let saved = std_handles.map(|h| GetStdHandle(h));
            SetConsoleCtrlHandler(Some(swallow), TRUE);
            let deadline = std::time::Instant::now() + super::WAIT;
            let mut refusals = 0;
            let mut attach_errors: Vec<String> = Vec::new();
            let mut attached = 0;
            while attached == 0 && std::time::Instant::now() < deadline {
                FreeConsole();
                attached = AttachConsole(pid);
                if attached == 0 {
                    refusals += 1;
                    let error = std::io::Error::last_os_error().to_string();
                    if !attach_errors.contains(&error) {
                        attach_errors.push(error);
                    }
                    std::thread::sleep(ATTACH_POLL);
                }
            }
            let sent = attached != 0 && GenerateConsoleCtrlEvent(CTRL_C_EVENT, 0) != 0;
            let send_error = std::io::Error::last_os_error();
            std::thread::sleep(std::time::Duration::from_millis(50));
            FreeConsole();
            for (h, old) in std_handles.iter().zip(saved) {
                SetStdHandle(*h, old);
            }
            assert_ne!(
                attached,
                0,
                "cannot attach to the console of {pid} (it is {}): {refusals} refusal(s): {attach_errors:?}",
                if alive(pid) { "running" } else { "gone" }
            );
            if refusals > 0 {
                eprintln!("attached to the console of {pid} after {refusals} refusal(s): {attach_errors:?}");
            }
            assert!(sent, "GenerateConsoleCtrlEvent: {send_error}");
        }
    }

    /// Whether `pid` is still running (for messages).
    fn alive(pid: u32) -> bool {
        // SAFETY: a plain handle request; the handle is closed below.
        let h = unsafe { OpenProcess(PROCESS_QUERY_INFORMATION, 0, pid) };
        if h.is_null() {
            return false;
        }
        let mut code = 0u32;
        // SAFETY: a valid handle and an out parameter.
        let ok = unsafe { GetExitCodeProcess(h, &mut code) };
        // SAFETY: valid handle.
        unsafe { CloseHandle(h) };
        ok != 0 && code == STILL_ACTIVE as u32
    }

    fn open(pid: u32, access: u32) -> HANDLE {
        // SAFETY: a plain handle request, checked below.
        let h = unsafe { OpenProcess(access, 0, pid) };
        assert!(!h.is_null(), "OpenProcess({pid}): {}", std::io::Error::last_os_error());
        h
    }

    /// The hard kill (SIGKILL's counterpart): no handler runs.
    pub fn terminate(pid: u32) {
        let h = open(pid, PROCESS_TERMINATE);
        // SAFETY: a valid handle, closed after.
        unsafe {
            TerminateProcess(h, 9);
            CloseHandle(h);
        }
    }

    /// (working set, peak working set) in KiB.
    pub fn memory(pid: u32) -> (u64, u64) {
        let h = open(pid, PROCESS_QUERY_INFORMATION | PROCESS_VM_READ);
        let mut c = PROCESS_MEMORY_COUNTERS { cb: size_of::<PROCESS_MEMORY_COUNTERS>() as u32, ..Default::default() };
        // SAFETY: `c` is a properly sized out parameter.
        let ok = unsafe { GetProcessMemoryInfo(h, &mut c, c.cb) };
        // SAFETY: valid handle.
        unsafe { CloseHandle(h) };
        assert_ne!(ok, 0, "GetProcessMemoryInfo: {}", std::io::Error::last_os_error());
        ((c.WorkingSetSize / 1024) as u64, (c.PeakWorkingSetSize / 1024) as u64)
    }

    /// The process's open handles (files, sockets, events, threads...).
    pub fn handles(pid: u32) -> usize {
        let h = open(pid, PROCESS_QUERY_INFORMATION);
        let mut n = 0u32;
        // SAFETY: `n` is an out parameter.
        let ok = unsafe { GetProcessHandleCount(h, &mut n) };
        // SAFETY: valid handle.
        unsafe { CloseHandle(h) };
        assert_ne!(ok, 0, "GetProcessHandleCount: {}", std::io::Error::last_os_error());
        n as usize
    }
}
