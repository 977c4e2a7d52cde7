use boa_engine::{js_string, Context, JsValue, NativeFunction, Source, JsResult, JsArgs};
use std::time::Instant;
const PRELUDE: &str = include_str!("../../../../crates/guardnest-core/src/pac_utils.js");
const SCRIPT: &str = include_str!("../../script.js");
fn dns(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let host = args.get_or_undefined(0).to_string(ctx)?.to_std_string_escaped();
    let ip = if host.parse::<std::net::IpAddr>().is_ok() { host } else { "192.0.2.7".into() };
    Ok(JsValue::from(js_string!(ip)))
}
fn me(_: &JsValue, _: &[JsValue], _: &mut Context) -> JsResult<JsValue> { Ok(JsValue::from(js_string!("192.0.2.1"))) }
fn build() -> Context {
    let mut ctx = Context::default();
    ctx.register_global_callable(js_string!("dnsResolve"), 1, NativeFunction::from_fn_ptr(dns)).unwrap();
    ctx.register_global_callable(js_string!("myIpAddress"), 0, NativeFunction::from_fn_ptr(me)).unwrap();
    ctx.eval(Source::from_bytes(PRELUDE)).unwrap();
    ctx.eval(Source::from_bytes(SCRIPT)).unwrap();
    ctx
}
fn call(ctx: &mut Context, url: &str, host: &str) -> String {
    let f = ctx.global_object().get(js_string!("FindProxyForURL"), ctx).unwrap();
    let f = f.as_callable().unwrap().clone();
    let r = f.call(&JsValue::undefined(), &[JsValue::from(js_string!(url)), JsValue::from(js_string!(host))], ctx).unwrap();
    r.to_string(ctx).unwrap().to_std_string_escaped()
}
fn main() {
    let n = 20;
    let t = Instant::now();
    for _ in 0..n { let mut ctx = build(); std::hint::black_box(call(&mut ctx, "https://a.b.example/", "a.b.example")); }
    let cold = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let mut ctx = build();
    let hosts: Vec<String> = (0..1000).map(|i| format!("h{i}.x.y.example")).collect();
    let t = Instant::now();
    let mut out = String::new();
    for h in &hosts { out = call(&mut ctx, &format!("https://{h}/"), h); }
    let warm = t.elapsed().as_secs_f64() * 1e6 / hosts.len() as f64;
    println!("boa: cold {cold:.1} us (context+prelude+script+1 call), warm {warm:.2} us/call; last={out}");
}
