//! Talking to the running instance (the CLI's `run` or the desktop app) through its control
//! API, found through the data dir where it records its address and token.

use std::process::ExitCode;
use std::time::Duration;

use guardnest_core::control::{proof, runtime_path, RuntimeInfo};
use guardnest_core::service::instance::is_held;
use serde_json::Value;

use crate::cli::CommonArgs;

/// Exit code when no instance is running.
pub const EXIT_NOT_RUNNING: u8 = 2;

/// Why a call did not get an answer.
pub enum Failure {
    /// No instance: no control file, or nothing answers at its address.
    NotRunning(String),
    /// The instance rejected what was asked (400: a value out of range, not a host name):
    /// a usage error, said in the instance's words.
    Rejected(String),
    /// The instance answered with an error, or the call failed otherwise.
    Failed(String),
}

/// A running instance's control API.
pub struct Instance {
    info: RuntimeInfo,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Instance {
    /// The instance recorded in the data dir, if its file is there (whether it answers
    /// shows at the first call).
    pub fn find(common: &CommonArgs) -> Result<Instance, Failure> {
        let data_dir = common.data_dir();
        let file = runtime_path(&data_dir);
        let info = RuntimeInfo::load(&file).map_err(|_| {
            Failure::NotRunning(format!("GuardNest is not running (no control API recorded in {})", data_dir.display()))
        })?;
        // A GuardNest that was killed leaves its file; whatever listens on its port now is
        // not it. Its process (PID and start time) and the data dir's lock tell.
        if !info.owner.is_alive() && !is_held(&data_dir) {
            return Err(Failure::NotRunning(format!(
                "GuardNest is not running: the instance recorded in {} (PID {}) has exited; if your \
                 internet stopped working, `guardnest repair` puts your own proxy settings back",
                file.display(),
                info.pid()
            )));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::Failed(e.to_string()))?;
        // Never through a proxy: the system proxy may be GuardNest itself.
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| Failure::Failed(e.to_string()))?;
        Ok(Instance { info, client, runtime })
    }

    /// The running instance, if one answers: the calls that work without one (`check`,
    /// `lists`) use this to decide.
    pub fn running(common: &CommonArgs) -> Option<Instance> {
        let instance = Instance::find(common).ok()?;
        std::net::TcpStream::connect_timeout(&instance.info.addr, Duration::from_secs(1)).ok()?;
        Some(instance)
    }

    /// The process serving.
    pub fn pid(&self) -> u32 {
        self.info.pid()
    }

    /// `GET` (or `POST`) `path` and the JSON answer. The token is never sent: the request
    /// proves it holds it, and the answer must prove the same, or it is not believed.
    pub fn call(&self, method: reqwest::Method, path: &str) -> Result<Value, Failure> {
        self.runtime.block_on(async {
            let url = format!("http://{}{path}", self.info.addr);
            let nonce = proof::nonce().map_err(|e| Failure::Failed(e.to_string()))?;
            let authorization = proof::authorization(&self.info.token, &nonce, method.as_str(), path, self.info.addr);
            let request = self.client.request(method, &url).header(reqwest::header::AUTHORIZATION, authorization);
            let response = request.send().await.map_err(|e| {
                if e.is_connect() {
                    Failure::NotRunning(format!("GuardNest is not running (nothing answers on {})", self.info.addr))
                } else {
                    Failure::Failed(e.to_string())
                }
            })?;
            let status = response.status();
            let presented = response.headers().get(proof::HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
            let bytes = response.bytes().await.map_err(|e| Failure::Failed(e.to_string()))?;
            let wanted = proof::expected(&self.info.token, &nonce, status.as_u16(), &bytes);
            if status == reqwest::StatusCode::UNAUTHORIZED {
                // Nothing to believe or not: the call was refused.
                return Err(Failure::Failed(format!(
                    "{status}: the program on {} does not accept the token in control.json",
                    self.info.addr
                )));
            }
            if presented.as_deref() != Some(wanted.as_str()) {
                return Err(Failure::Failed(format!(
                    "the program answering on {} is not the GuardNest recorded there (it cannot prove it holds \
                     the token); its answer was ignored",
                    self.info.addr
                )));
            }
            let body: Value =
                serde_json::from_slice(&bytes).map_err(|e| Failure::Failed(format!("bad answer: {e}")))?;
            if status.is_success() {
                Ok(body)
            } else {
                let message = body.get("message").and_then(Value::as_str).unwrap_or("request failed");
                Err(match status {
                    reqwest::StatusCode::BAD_REQUEST => Failure::Rejected(message.to_string()),
                    _ => Failure::Failed(format!("{status}: {message}")),
                })
            }
        })
    }
}

/// Prints a line, or the failure; the exit code.
pub fn finish(result: Result<String, Failure>) -> ExitCode {
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(Failure::NotRunning(m)) => {
            eprintln!("guardnest: {m}");
            ExitCode::from(EXIT_NOT_RUNNING)
        }
        Err(Failure::Rejected(m)) => {
            eprintln!("guardnest: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(m)) => {
            eprintln!("guardnest: error: {m}");
            ExitCode::FAILURE
        }
    }
}

/// `guardnest status`.
pub fn status(common: &CommonArgs, as_json: bool) -> ExitCode {
    let answer = Instance::find(common).and_then(|i| i.call(reqwest::Method::GET, "/v1/status"));
    finish(answer.map(|v| match as_json {
        true => serde_json::to_string_pretty(&v).unwrap_or_default(),
        false => summary(&v),
    }))
}

/// `guardnest programs`: who used GuardNest in the last hour.
pub fn programs(common: &CommonArgs, as_json: bool) -> ExitCode {
    let answer = Instance::find(common).and_then(|i| i.call(reqwest::Method::GET, "/v1/stats"));
    finish(answer.map(|v| match as_json {
        true => serde_json::to_string_pretty(&v["programs"]).unwrap_or_default(),
        false => programs_table(&v["programs"]),
    }))
}

/// One line per program: connections, blocks, the program; then what the list cannot show.
fn programs_table(rows: &Value) -> String {
    let rows = rows.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = String::from("programs seen through GuardNest in the last hour:\n");
    if rows.is_empty() {
        out += "  none yet\n";
    } else {
        out += &format!("  {:>11}  {:>6}  program\n", "connections", "blocks");
        for r in rows {
            out += &format!(
                "  {:>11}  {:>6}  {}\n",
                r["connections"].as_u64().unwrap_or(0),
                r["blocks"].as_u64().unwrap_or(0),
                r["label"].as_str().unwrap_or("?")
            );
        }
    }
    out += "programs that ignore the system proxy are not listed, and not protected";
    out
}

/// Three lines: state, address, health, system proxy, lists; whether it protects; where
/// allowed traffic goes (the upstream).
fn summary(v: &Value) -> String {
    let running = v["running"].as_bool().unwrap_or(false);
    let sp = &v["system_proxy"];
    let system = match (sp["applied"].as_bool(), sp["last_error"].as_str()) {
        (Some(true), _) => format!("system proxy set ({})", sp["backend"].as_str().unwrap_or("?")),
        (_, Some(e)) => format!("system proxy not set: {e}"),
        _ => "system proxy not set".to_string(),
    };
    // Block lists are "lists"; the allowlists (the user's own among them) are said apart.
    let all = v["lists"].as_array().map_or(&[][..], Vec::as_slice);
    let lists = all.iter().filter(|l| l["role"] != "allow").count() as u64;
    let allowed: u64 = all.iter().filter(|l| l["role"] == "allow").map(|l| l["entries"].as_u64().unwrap_or(0)).sum();
    let names = v["names_blocked"].as_u64().unwrap_or(0);
    let pid = v["pid"].as_u64().unwrap_or(0);
    // Blocked only while protection blocks: off or paused, the names are only listed.
    let blocking = v["protection"]["state"] == "protected";
    let verb = if blocking { "blocked" } else { "listed, none blocked now" };
    let mut counts = format!("{lists} {}, {names} {} {verb}", noun(lists, "list"), noun(names, "name"));
    if all.iter().any(|l| l["role"] == "allow") {
        counts += &format!(" ({allowed} allowed)");
    }
    let first = if running {
        let health = if v["healthy"].as_bool().unwrap_or(false) { "healthy" } else { "health check failing" };
        format!(
            "running on {} (pid {pid}), {health}, up {}s; {system}; {counts}",
            v["listen"].as_str().unwrap_or("?"),
            v["uptime_secs"].as_u64().unwrap_or(0)
        )
    } else {
        format!("not listening (GuardNest pid {pid} runs; `guardnest enable` turns protection on); {system}; {counts}")
    };
    let mut out = format!("{first}\n{}\n{}", protection_line(&v["protection"]), upstream_line(&v["upstream"]));
    for note in v["repaired"].as_array().into_iter().flatten() {
        out += &format!("\nat start: {}", note["message"].as_str().unwrap_or("?"));
    }
    out
}

/// The `upstream` object of a status, as one line: where allowed traffic goes (the user's
/// own proxy, GuardNest chaining through it), and a parent the last check could not reach.
fn upstream_line(u: &Value) -> String {
    let mut line = format!("upstream: {}", u["summary"].as_str().unwrap_or("unknown"));
    for p in u["unreachable"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        line += &format!("; parent proxy {p}");
    }
    line
}

/// The `protection` object of a status, as one line.
fn protection_line(p: &Value) -> String {
    match p["state"].as_str() {
        Some("protected") => {
            let n = p["names"].as_u64().unwrap_or(0);
            let missing: Vec<String> = p["missing"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| match m["problem"]["summary"].as_str() {
                    Some(why) => format!("{}: {why}", m["name"].as_str().unwrap_or("?")),
                    None => format!("{}: downloading", m["name"].as_str().unwrap_or("?")),
                })
                .collect();
            match missing.is_empty() {
                true => format!("protected: {n} {} blocked", noun(n, "name")),
                false => {
                    format!("partly protected: {n} {} blocked; not loaded: {}", noun(n, "name"), missing.join("; "))
                }
            }
        }
        Some("unprotected") => format!("NOT PROTECTED: {}", p["message"].as_str().unwrap_or("?")),
        Some("paused") => {
            let left = guardnest_core::service::minutes(p["secs"].as_u64().unwrap_or(0));
            match p["until"].as_u64().and_then(local_clock) {
                Some(at) => format!("paused: blocking again at {at}, in {left}"),
                None => format!("paused: blocking again in {left}"),
            }
        }
        Some("off") => match p["error"]["message"].as_str() {
            Some(e) => format!("off: {e}"),
            None => "off".into(),
        },
        _ => "protection unknown".into(),
    }
}

fn noun(n: u64, one: &str) -> String {
    if n == 1 {
        one.to_string()
    } else {
        format!("{one}s")
    }
}

/// `guardnest enable | disable | restart`.
pub fn change(common: &CommonArgs, path: &str) -> ExitCode {
    let answer = Instance::find(common).and_then(|i| i.call(reqwest::Method::POST, path));
    finish(answer.map(|v| v["message"].as_str().unwrap_or("done").to_string()))
}

/// `guardnest pause [MINUTES]`: as [`change`], and when it ends, on the local clock.
pub fn pause(common: &CommonArgs, minutes: u64) -> ExitCode {
    let instance = match Instance::find(common) {
        Ok(i) => i,
        Err(e) => return finish(Err(e)),
    };
    let answer = instance.call(reqwest::Method::POST, &format!("/v1/pause?minutes={minutes}"));
    finish(answer.map(|v| {
        let message = v["message"].as_str().unwrap_or("done").to_string();
        let until = instance.call(reqwest::Method::GET, "/v1/status").ok().and_then(|s| s["paused_until"].as_u64());
        match until.and_then(local_clock) {
            Some(at) => format!("{message}, until {at}; `guardnest resume` ends it sooner"),
            None => message,
        }
    }))
}

/// A moment as the local "HH:MM" (Unix; elsewhere the message goes without it).
#[cfg(unix)]
fn local_clock(epoch: u64) -> Option<String> {
    let t = libc::time_t::try_from(epoch).ok()?;
    // SAFETY: an all-zero `tm` is a valid value of this plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r writes into the `tm` we own; both pointers are valid for the call.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return None;
    }
    Some(format!("{:02}:{:02}", tm.tm_hour, tm.tm_min))
}

#[cfg(not(unix))]
fn local_clock(_: u64) -> Option<String> {
    None
}
