//! `guardnest status | enable | disable | restart`: calls to the running instance's control
//! API, found through the data dir where `run` records its address and token.

use std::process::ExitCode;
use std::time::Duration;

use guardnest_core::control::{runtime_path, RuntimeInfo};
use serde_json::Value;

use crate::cli::CommonArgs;

/// Exit code when no instance is running.
pub const EXIT_NOT_RUNNING: u8 = 2;

enum Failure {
    NotRunning(String),
    Failed(String),
}

fn call(common: &CommonArgs, method: reqwest::Method, path: &str) -> Result<Value, Failure> {
    let data_dir = common.data_dir();
    let file = runtime_path(&data_dir);
    let info = RuntimeInfo::load(&file).map_err(|_| {
        Failure::NotRunning(format!("GuardNest is not running (no control API recorded in {})", data_dir.display()))
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Failed(e.to_string()))?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Failure::Failed(e.to_string()))?;
        let url = format!("http://{}{path}", info.addr);
        let response = client.request(method, &url).bearer_auth(&info.token).send().await.map_err(|e| {
            if e.is_connect() {
                Failure::NotRunning(format!("GuardNest is not running (nothing answers on {})", info.addr))
            } else {
                Failure::Failed(e.to_string())
            }
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| Failure::Failed(e.to_string()))?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| Failure::Failed(format!("bad answer: {e}")))?;
        if status.is_success() {
            Ok(body)
        } else {
            let message = body.get("message").and_then(Value::as_str).unwrap_or("request failed");
            Err(Failure::Failed(format!("{status}: {message}")))
        }
    })
}

fn finish(result: Result<String, Failure>) -> ExitCode {
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(Failure::NotRunning(m)) => {
            eprintln!("guardnest: {m}");
            ExitCode::from(EXIT_NOT_RUNNING)
        }
        Err(Failure::Failed(m)) => {
            eprintln!("guardnest: error: {m}");
            ExitCode::FAILURE
        }
    }
}

pub fn status(common: &CommonArgs, as_json: bool) -> ExitCode {
    finish(call(common, reqwest::Method::GET, "/v1/status").map(|v| {
        if as_json {
            return serde_json::to_string_pretty(&v).unwrap_or_default();
        }
        summary(&v)
    }))
}

/// One line: state, address, health, system proxy, lists.
fn summary(v: &Value) -> String {
    let running = v["running"].as_bool().unwrap_or(false);
    let sp = &v["system_proxy"];
    let system = match (sp["applied"].as_bool(), sp["last_error"].as_str()) {
        (Some(true), _) => format!("system proxy set ({})", sp["backend"].as_str().unwrap_or("?")),
        (_, Some(e)) => format!("system proxy not set: {e}"),
        _ => "system proxy not set".to_string(),
    };
    let lists = v["lists"].as_array().map_or(0, Vec::len);
    let names = v["names"].as_u64().unwrap_or(0);
    if !running {
        return format!("stopped; {system}; {lists} lists, {names} names");
    }
    let health = if v["healthy"].as_bool().unwrap_or(false) { "healthy" } else { "health check failing" };
    format!(
        "running on {}, {health}, up {}s; {system}; {lists} lists, {names} names",
        v["listen"].as_str().unwrap_or("?"),
        v["uptime_secs"].as_u64().unwrap_or(0)
    )
}

pub fn change(common: &CommonArgs, path: &str) -> ExitCode {
    finish(call(common, reqwest::Method::POST, path).map(|v| v["message"].as_str().unwrap_or("done").to_string()))
}
