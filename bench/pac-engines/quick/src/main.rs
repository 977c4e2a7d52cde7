use rquickjs::{Context, Function, Runtime};
use std::time::Instant;
const PRELUDE: &str = include_str!("../../../../crates/guardnest-core/src/pac_utils.js");
const SCRIPT: &str = include_str!("../../script.js");
fn dns(host: String) -> Option<String> { if host.parse::<std::net::IpAddr>().is_ok() { Some(host) } else { Some("192.0.2.7".into()) } }
fn build() -> (Runtime, Context) {
    let rt = Runtime::new().unwrap();
    rt.set_memory_limit(16 << 20);
    let ctx = Context::full(&rt).unwrap();
    ctx.with(|c| {
        c.globals().set("dnsResolve", Function::new(c.clone(), dns).unwrap()).unwrap();
        c.globals().set("myIpAddress", Function::new(c.clone(), || "192.0.2.1".to_string()).unwrap()).unwrap();
        c.eval::<(), _>(PRELUDE).unwrap();
        c.eval::<(), _>(SCRIPT).unwrap();
    });
    (rt, ctx)
}
fn call(ctx: &Context, url: &str, host: &str) -> String {
    ctx.with(|c| { let f: Function = c.globals().get("FindProxyForURL").unwrap(); f.call((url, host)).unwrap() })
}
fn main() {
    let n = 20;
    let t = Instant::now();
    for _ in 0..n { let (_rt, ctx) = build(); std::hint::black_box(call(&ctx, "https://a.b.example/", "a.b.example")); }
    let cold = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let (_rt, ctx) = build();
    let hosts: Vec<String> = (0..1000).map(|i| format!("h{i}.x.y.example")).collect();
    let t = Instant::now();
    let mut out = String::new();
    for h in &hosts { out = call(&ctx, &format!("https://{h}/"), h); }
    let warm = t.elapsed().as_secs_f64() * 1e6 / hosts.len() as f64;
    println!("rquickjs: cold {cold:.1} us (runtime+prelude+script+1 call), warm {warm:.2} us/call; last={out}");
}
