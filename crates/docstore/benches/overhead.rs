//! Encryption overhead of the document store: the same code over an SQLCipher file keyed with
//! a raw data key and over a plain SQLite file (`DocStore::create_plain`), in one run.
//!
//! Prints inserts/s (1 KB documents, one per call and 100 per `insert_many`), point reads/s by
//! `_id`, and a filtered find over 100,000 documents (without and with an index), each with the
//! encrypted/plain ratio. Target: encrypted within 10% of plain.
//!
//! Sizes can be scaled with DOCSTORE_BENCH_SCALE (default 1.0); DOCSTORE_BENCH_DIR picks the
//! directory (default: the system temp dir; use a real disk, fsync cost is part of the story).

use std::time::{Duration, Instant};

use keyplane_docstore::{DataKey, DocStore, Query};
use serde_json::{Value, json};

const KS: &str = "bench";
const C: &str = "docs";

fn doc(i: u64) -> Value {
    // ~1 KB serialized.
    json!({
        "_id": format!("doc-{i:08}"),
        "category": format!("c{}", i % 100),
        "n": i,
        "price": (i % 1000) as f64 / 10.0,
        "tags": ["alpha", "beta", format!("t{}", i % 7)],
        "owner": {"name": format!("user {}", i % 5000), "tier": if i.is_multiple_of(3) { "gold" } else { "basic" }},
        "body": "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur. Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia deserunt mollit anim id est laborum. Sed ut perspiciatis unde omnis iste natus error sit voluptatem accusantium doloremque laudantium, totam rem aperiam, eaque ipsa quae ab illo inventore veritatis et quasi architecto beatae vitae dicta sunt explicabo. Nemo enim ipsam voluptatem quia voluptas sit aspernatur aut odit aut fugit, sed quia consequuntur magni dolores eos qui ratione voluptatem sequi nesciunt.",
    })
}

struct Rig {
    _dir: tempfile::TempDir,
    enc: DocStore,
    plain: DocStore,
}

fn rig(base: &std::path::Path, tag: &str) -> Rig {
    let dir = tempfile::Builder::new()
        .prefix(tag)
        .tempdir_in(base)
        .expect("temp dir");
    let key = DataKey::from_slice(&[0x5a; 32]).expect("key");
    let enc = DocStore::create(dir.path().join("enc.db"), &key).expect("create encrypted");
    let plain = DocStore::create_plain(dir.path().join("plain.db")).expect("create plain");
    for s in [&enc, &plain] {
        s.create_keyspace(KS).expect("keyspace");
        s.create_collection(KS, C, None).expect("collection");
    }
    Rig {
        _dir: dir,
        enc,
        plain,
    }
}

/// Runs `f` on each store in alternation, `rounds` times, and keeps each store's best time:
/// alternation spreads disk and CPU noise over both sides instead of biasing one.
fn race(
    rig: &Rig,
    rounds: usize,
    mut f: impl FnMut(&DocStore, usize) -> u64,
) -> (Duration, Duration, u64) {
    let (mut be, mut bp, mut ops) = (Duration::MAX, Duration::MAX, 0);
    for r in 0..rounds {
        for (enc, s) in [(false, &rig.plain), (true, &rig.enc)] {
            let t = Instant::now();
            ops = f(s, r);
            let el = t.elapsed();
            if enc {
                be = be.min(el)
            } else {
                bp = bp.min(el)
            }
        }
    }
    (be, bp, ops)
}

fn report(name: &str, unit: &str, (enc, plain, ops): (Duration, Duration, u64)) {
    let re = ops as f64 / enc.as_secs_f64();
    let rp = ops as f64 / plain.as_secs_f64();
    let overhead = (enc.as_secs_f64() / plain.as_secs_f64() - 1.0) * 100.0;
    println!(
        "{name:<44} encrypted {re:>10.0} {unit}   plain {rp:>10.0} {unit}   overhead {overhead:>+6.1}%"
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let scale: f64 = std::env::var("DOCSTORE_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let n = |x: f64| ((x * scale) as u64).max(1);
    let base = std::env::var_os("DOCSTORE_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    println!(
        "docstore overhead benchmark (document {} bytes, synchronous=FULL, WAL)",
        serde_json::to_string(&doc(1)).map(|s| s.len()).unwrap_or(0)
    );

    // Single inserts: one transaction and one WAL fsync each.
    let r = rig(&base, "single");
    let singles = n(1000.0);
    let mut next = 0u64;
    report(
        "insert_one (1 doc per commit)",
        "docs/s",
        race(&r, 3, |s, round| {
            let start = round as u64 * singles * 2 + if s.is_encrypted() { singles } else { 0 };
            for i in start..start + singles {
                s.insert_one(KS, C, doc(i)).expect("insert");
            }
            next = next.max(start + singles);
            singles
        }),
    );

    // Batches of 100 in one transaction.
    let batches = n(100.0);
    let mut base_id = 1_000_000u64;
    report(
        "insert_many (100 docs per commit)",
        "docs/s",
        race(&r, 3, |s, _| {
            for _ in 0..batches {
                let docs: Vec<Value> = (base_id..base_id + 100).map(doc).collect();
                base_id += 100;
                for res in s.insert_many(KS, C, docs, true).expect("insert_many") {
                    res.expect("doc");
                }
            }
            batches * 100
        }),
    );
    drop(r);

    // A 100,000-document collection for reads.
    let big = rig(&base, "big");
    let total = n(100_000.0);
    let t = Instant::now();
    for s in [&big.plain, &big.enc] {
        let mut i = 0;
        while i < total {
            let docs: Vec<Value> = (i..(i + 100).min(total)).map(doc).collect();
            i += docs.len() as u64;
            s.insert_many(KS, C, docs, false).expect("load");
        }
    }
    println!(
        "(loaded {total} docs into each store in {:.1?})",
        t.elapsed()
    );

    read_suite(&big, total, n(50_000.0), "cache 64 MiB < data", true);
    for s in [&big.plain, &big.enc] {
        s.set_cache_size_mib(512).expect("cache");
    }
    read_suite(&big, total, n(50_000.0), "cache 512 MiB > data", false);
}

/// Reads, scans and sorts on the loaded collection; the index is created on the first call.
fn read_suite(big: &Rig, total: u64, reads: u64, label: &str, create_index: bool) {
    println!("-- {label}");
    // Warm both caches (and the OS cache) once before timing.
    for s in [&big.plain, &big.enc] {
        let _ = s.count(KS, C, &json!({"nope": 1}), 1).expect("warm");
    }
    report(
        "get by _id (random, warm)",
        "reads/s",
        race(big, 3, |s, round| {
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ round as u64;
            for _ in 0..reads {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let id = json!(format!("doc-{:08}", x % total));
                assert!(s.get(KS, C, &id).expect("get").is_some());
            }
            reads
        }),
    );

    // No index serves this one (category is the indexed field).
    let scan_filter = json!({"tags": "t3", "owner.tier": "gold", "price": {"$gte": 90}});
    let indexed_filter = json!({"category": "c42", "owner.tier": "gold", "price": {"$gte": 10}});
    let find_all = |s: &DocStore, filter: &serde_json::Value| -> u64 {
        let mut q = Query {
            filter: filter.clone(),
            page_size: Some(1000),
            ..Default::default()
        };
        let mut got = 0;
        loop {
            let p = s.find(KS, C, &q).expect("find");
            got += p.docs.len() as u64;
            match p.next_page_state {
                Some(st) => q.page_state = Some(st),
                None => return got,
            }
        }
    };
    let mut matched = 0;
    let res = race(big, 3, |s, _| {
        matched = find_all(s, &scan_filter);
        1
    });
    report(
        &format!("filtered find, full scan ({matched} of {total})"),
        "finds/s",
        res,
    );
    if create_index {
        for s in [&big.plain, &big.enc] {
            s.create_index(KS, C, "category").expect("index");
        }
    }
    let res = race(big, 5, |s, _| {
        for _ in 0..10 {
            matched = find_all(s, &indexed_filter);
        }
        10
    });
    report(
        &format!("filtered find, indexed ({matched} of {total})"),
        "finds/s",
        res,
    );
    let res = race(big, 3, |s, _| {
        let q = Query {
            filter: json!({"n": {"$gte": total / 2}}),
            sort: Some(json!({"price": -1})),
            limit: Some(20),
            ..Default::default()
        };
        assert_eq!(s.find(KS, C, &q).expect("find").docs.len(), 20);
        1
    });
    report("sorted find, top 20 by price of 50% (scan)", "finds/s", res);
}
