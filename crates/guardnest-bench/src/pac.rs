//! `guardnest-bench pac`: what a PAC lookup costs. Cold: a new script (load, the helper
//! functions, the first `FindProxyForURL`); uncached: a loaded script asked about a host it
//! has not seen (one evaluation on the script's thread, and the trip there and back);
//! warm: a host answered from the cache.

use std::time::Instant;

use guardnest_core::pac::Pac;

/// A corporate-style script: domains, networks, patterns, several entries. `isInNet` is
/// asked only of address literals: for a name it resolves it, and this machine has no DNS
/// (what a resolver costs is the OS's figure, not the engine's).
const SCRIPT: &str = r#"
function FindProxyForURL(url, host) {
  if (isPlainHostName(host) || dnsDomainIs(host, ".corp.example")) return "DIRECT";
  if (/^[0-9.]+$/.test(host) && isInNet(host, "10.0.0.0", "255.0.0.0")) return "DIRECT";
  if (shExpMatch(host, "*.internal.*") || localHostOrDomainIs(host, "intranet.corp.example")) return "DIRECT";
  if (shExpMatch(url, "http://*") && dnsDomainLevels(host) > 3) return "PROXY a.corp.example:3128";
  return "PROXY parent.corp.example:3128; PROXY backup.corp.example:3128; DIRECT";
}
"#;

fn micros(start: Instant, n: usize) -> f64 {
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

pub fn run() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let cold_n = 20;
        let start = Instant::now();
        for i in 0..cold_n {
            let pac = Pac::from_script("bench", SCRIPT);
            pac.find(true, &format!("cold{i}.example.org"), 443).await?;
        }
        let cold = micros(start, cold_n);

        let pac = Pac::from_script("bench", SCRIPT);
        pac.find(true, "first.example.org", 443).await?;
        // Fewer hosts than the cache keeps (4,096), so the warm rounds are answered by it.
        let hosts: Vec<String> = (0..2000).map(|i| format!("h{i}.a.b.example.org")).collect();
        let start = Instant::now();
        for h in &hosts {
            pac.find(true, h, 443).await?;
        }
        let uncached = micros(start, hosts.len());
        let rounds = 20;
        let start = Instant::now();
        for _ in 0..rounds {
            for h in &hosts {
                std::hint::black_box(pac.find(true, h, 443).await?);
            }
        }
        let warm = micros(start, hosts.len() * rounds);
        println!("PAC lookup (QuickJS via rquickjs), µs per lookup:");
        println!("  cold (new script: load, helpers, first call): {cold:>9.1}");
        println!("  uncached host (one evaluation):               {uncached:>9.2}");
        println!("  cached host (warm):                           {warm:>9.3}");
        Ok::<_, anyhow::Error>(())
    })
}
