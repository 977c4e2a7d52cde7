//! Parsing the real public lists in `shared/data/blocklists` beside the repository or a
//! folder above it (read in place, never copied); `cargo xtask test` also finds them beside
//! the repository a clone was made from. Without that folder these tests are reported as
//! skipped (ignored, with the reason); GUARDNEST_LIST_DATA=DIR names another folder, which
//! must exist.

use std::collections::HashSet;
use std::path::PathBuf;

use guardnest_core::blocklist::{detect, parse, Format, Parsed};
use guardnest_testkit::{passed, skip, Outcome};

guardnest_testkit::main!(
    stevenblack_unified_hosts,
    malwaredomainlist_hosts,
    blocklistproject_ransomware_hosts,
    hagezi_domains_adblock_wildcard,
    allowlists,
    sample_mixed_every_quirk,
    crlf_bom_uppercase_trailing_dots_duplicates,
);

/// The data directory, or the skip to return when it is absent.
fn data_dir() -> Result<PathBuf, Outcome> {
    if let Some(dir) = std::env::var_os("GUARDNEST_LIST_DATA") {
        let dir = PathBuf::from(dir);
        assert!(dir.is_dir(), "GUARDNEST_LIST_DATA={} is not a directory", dir.display());
        return Ok(dir);
    }
    // `shared/data/blocklists` beside the repository or any folder above it.
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    match repo.ancestors().map(|a| a.join("shared/data/blocklists")).find(|d| d.is_dir()) {
        Some(dir) => Ok(dir),
        None => Err(skip(format!(
            "the real lists are not in shared/data/blocklists beside {} or above it (set GUARDNEST_LIST_DATA=DIR)",
            repo.display()
        ))),
    }
}

fn load(name: &str) -> Result<(Format, Parsed), Outcome> {
    let text = std::fs::read_to_string(data_dir()?.join(name)).expect(name);
    let format = detect(&text);
    Ok((format, parse(&text, format)))
}

fn names(p: &guardnest_core::blocklist::Names) -> Vec<&str> {
    p.iter().collect()
}

fn distinct(p: &guardnest_core::blocklist::Names) -> usize {
    p.iter().collect::<HashSet<_>>().len()
}

fn stevenblack_unified_hosts() -> Outcome {
    let (format, p) = match load("stevenblack-unified.hosts") {
        Ok(loaded) => loaded,
        Err(skipped) => return skipped,
    };
    assert_eq!(format, Format::Hosts);
    assert_eq!(distinct(&p.block), 63_275);
    assert_eq!(p.block.len(), 63_275, "no duplicates in this file");
    assert_eq!(p.unsupported, 14, "header entries (localhost, broadcasthost, ip6-*, 0.0.0.0)");
    assert_eq!(p.invalid, 0);
    let all = names(&p.block);
    for kept in ["130.211.230.53", "xn--oogle-wmc.com", "_sipfederationtls._tcp.admedia.com", "-x3.vindicosuite.com"] {
        assert!(all.contains(&kept), "{kept}");
    }
    for gone in ["localhost", "broadcasthost", "0.0.0.0", "ip6-localhost", "local"] {
        assert!(!all.contains(&gone), "{gone}");
    }
    passed()
}

fn malwaredomainlist_hosts() -> Outcome {
    let (format, p) = match load("malwaredomainlist.hosts") {
        Ok(loaded) => loaded,
        Err(skipped) => return skipped,
    };
    assert_eq!(format, Format::Hosts);
    assert_eq!(p.block.len(), 1_110);
    assert!(names(&p.block).contains(&"triangleservicesltd.com"), "uppercase entry normalised");
    assert!(!names(&p.block).contains(&"localhost"));
    passed()
}

fn blocklistproject_ransomware_hosts() -> Outcome {
    let (format, p) = match load("blocklistproject-ransomware.hosts") {
        Ok(loaded) => loaded,
        Err(skipped) => return skipped,
    };
    assert_eq!(format, Format::Hosts);
    assert_eq!(p.block.len(), 1_904);
    assert_eq!(p.invalid + p.unsupported, 0);
    passed()
}

fn hagezi_domains_adblock_wildcard() -> Outcome {
    let (format, domains) = match load("hagezi-light.domains.txt") {
        Ok(loaded) => loaded,
        Err(skipped) => return skipped,
    };
    assert_eq!(format, Format::Plain);
    assert_eq!(domains.block.len(), 176_041);
    assert!(names(&domains.block).contains(&"0.0.0.0.beeglivesex.com"), "not mistaken for a hosts line");

    let (format, adblock) = load("hagezi-light.adblock.txt").ok().expect("the folder was found above");
    assert_eq!(format, Format::Adblock);
    assert_eq!(adblock.block.len(), 106_487);
    assert_eq!(adblock.allow.len(), 0);

    let (format, wildcard) = load("hagezi-light.wildcard.txt").ok().expect("the folder was found above");
    assert_eq!(format, Format::Wildcard);
    assert_eq!(wildcard.block.len(), 106_487);
    // The two compressed forms hold the same names.
    let a: HashSet<&str> = names(&adblock.block).into_iter().collect();
    let w: HashSet<&str> = names(&wildcard.block).into_iter().collect();
    assert_eq!(a, w);
    passed()
}

fn allowlists() -> Outcome {
    let (format, p) = match load("hagezi-whitelist-referral.allow.adblock.txt") {
        Ok(loaded) => loaded,
        Err(skipped) => return skipped,
    };
    assert_eq!(format, Format::Adblock);
    assert_eq!(p.allow.len(), 480, "482 rules, two with an inner * are not domain rules");
    assert_eq!(p.unsupported, 2);
    assert!(names(&p.allow).contains(&"adservice.google.xn--mxtq1m"));

    let (format, p) =
        load("blocklistproject-exclusions-ads.allow.domains.txt").ok().expect("the folder was found above");
    assert_eq!(format, Format::Plain);
    assert_eq!(p.block.len(), 6);
    assert!(names(&p.block).contains(&"compute-1.amazonaws.com"));
    passed()
}

fn sample_mixed_every_quirk() -> Outcome {
    let (_, p) = match load("sample-mixed.txt") {
        Ok(loaded) => loaded,
        Err(skipped) => return skipped,
    };
    let block = names(&p.block);
    let allow = names(&p.allow);
    // Hosts quirks: inline comments, IP-as-name, punycode, underscores, leading hyphen.
    for kept in [
        "jackbootedroom.com",
        "adelogs.adobe.com",
        "_sipfederationtls._tcp.admedia.com",
        "tour.sweetdiscreet.com",
        "askbot.com",
        "triangleservicesltd.com",
        "0.0.0.0.beeglivesex.com",
        "000free.us",
        "www.000free.us",
        "a8cv.xn--1lqs71d2law9k8zbv08f.tokyo",
        "000.gaysexe.free.fr",
        "27lelchgcvs2wpm7.7jiff7.top",
    ] {
        assert!(block.contains(&kept), "{kept} missing");
    }
    // Header and machine-specific entries are not blocked names.
    for gone in ["localhost", "0.0.0.0", "hercules", "broadcasthost", "ip6-localhost", "ip6-loopback", "local"] {
        assert!(!block.contains(&gone), "{gone} blocked");
    }
    // Commented-out entries stay out.
    let text =
        std::fs::read_to_string(data_dir().ok().expect("the folder was found above").join("sample-mixed.txt")).unwrap();
    for line in text.lines().map(str::trim).filter(|l| l.starts_with("#0.0.0.0 ") || l.starts_with("#127.0.0.1 ")) {
        let name = line.split_whitespace().nth(1).unwrap();
        assert!(!block.contains(&name), "commented-out {name} blocked");
    }
    // Adblock exceptions become allow rules; the inner-wildcard ones are skipped.
    assert!(
        allow.contains(&"7eer.net")
            && allow.contains(&"ad.atdmt.com")
            && allow.contains(&"adservice.google.xn--mxtq1m")
    );
    assert!(!allow.iter().any(|a| a.contains('*')));
    assert_eq!(p.invalid, 0, "every non-comment line understood");
    eprintln!("sample-mixed: {} block, {} allow, {} unsupported", p.block.len(), p.allow.len(), p.unsupported);
    passed()
}

fn crlf_bom_uppercase_trailing_dots_duplicates() -> Outcome {
    let text = "\u{feff}# made up\r\n0.0.0.0 Evil.TEST.\r\n0.0.0.0 evil.test\r\nBÜCHER.example\r\n\r\n||Ads.Test^\r\n";
    let p = parse(text, detect(text));
    assert_eq!(names(&p.block), ["evil.test", "evil.test", "xn--bcher-kva.example", "ads.test"]);
    assert_eq!(p.invalid, 0);
    passed()
}
