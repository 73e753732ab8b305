//! The data-key cache: single-flight loads, TTL on tokio's clock, eviction, stats.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use keyplane_docstore::{CacheStats, DEFAULT_TTL, DataKey, DataKeyCache, DocStoreError};

fn k(b: u8) -> DataKey {
    DataKey::from_slice(&[b; 32]).unwrap()
}

#[tokio::test(start_paused = true)]
async fn loads_once_within_ttl_then_reloads() {
    let cache = DataKeyCache::default();
    assert_eq!(cache.ttl(), DEFAULT_TTL);
    let calls = AtomicU32::new(0);
    for _ in 0..1000 {
        let key = cache
            .get_or_load("dc-1", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(k(1))
            })
            .await
            .unwrap();
        assert_eq!(key.expose_secret(), &[1; 32]);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().loads, 1);
    assert_eq!(cache.stats().hits, 999);

    tokio::time::advance(DEFAULT_TTL - Duration::from_secs(1)).await;
    cache
        .get_or_load("dc-1", || async { Ok(k(2)) })
        .await
        .unwrap();
    assert_eq!(
        cache.stats().loads,
        1,
        "still fresh one second before the TTL"
    );

    tokio::time::advance(Duration::from_secs(2)).await;
    let key = cache
        .get_or_load("dc-1", || async { Ok(k(2)) })
        .await
        .unwrap();
    assert_eq!(key.expose_secret(), &[2; 32]);
    assert_eq!(cache.stats().loads, 2);
}

#[tokio::test(start_paused = true)]
async fn concurrent_loads_are_single_flight() {
    let cache = Arc::new(DataKeyCache::new(Duration::from_secs(60)));
    let calls = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let cache = cache.clone();
        let calls = calls.clone();
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load("dc-1", || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    // A slow KMS: every other caller arrives while this is in flight.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok(k(7))
                })
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().expose_secret(), &[7; 32]);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().loads, 1);
    assert_eq!(cache.stats().hits, 49);
}

#[tokio::test(start_paused = true)]
async fn failed_load_is_not_cached_and_ids_are_independent() {
    let cache = DataKeyCache::default();
    let err = cache
        .get_or_load("dc-1", || async { Err(DocStoreError::WrongKey) })
        .await
        .unwrap_err();
    assert!(matches!(err, DocStoreError::WrongKey));
    let a = cache
        .get_or_load("dc-1", || async { Ok(k(1)) })
        .await
        .unwrap();
    let b = cache
        .get_or_load("dc-2", || async { Ok(k(2)) })
        .await
        .unwrap();
    assert_ne!(a.expose_secret(), b.expose_secret());
    assert_eq!(cache.stats().loads, 3);
}

#[tokio::test(start_paused = true)]
async fn evict_sweep_and_get() {
    let cache = DataKeyCache::new(Duration::from_secs(10));
    cache.get_or_load("a", || async { Ok(k(1)) }).await.unwrap();
    cache.get_or_load("b", || async { Ok(k(2)) }).await.unwrap();
    assert!(cache.get("a").is_some());
    assert!(cache.evict("a"));
    assert!(!cache.evict("a"));
    assert!(cache.get("a").is_none());
    // Evicted keys reload on next use.
    cache.get_or_load("a", || async { Ok(k(1)) }).await.unwrap();
    assert_eq!(cache.stats().loads, 3);

    tokio::time::advance(Duration::from_secs(11)).await;
    assert!(cache.get("b").is_none(), "expired keys are not served");
    assert_eq!(cache.sweep(), 2);
    assert!(cache.is_empty());

    cache.get_or_load("c", || async { Ok(k(3)) }).await.unwrap();
    cache.get_or_load("d", || async { Ok(k(4)) }).await.unwrap();
    assert_eq!(cache.evict_all(), 2);
    assert!(cache.is_empty());
    let CacheStats { evictions, .. } = cache.stats();
    assert_eq!(evictions, 5);
}

#[tokio::test(start_paused = true)]
async fn evict_during_load_does_not_cache_the_result() {
    let cache = Arc::new(DataKeyCache::default());
    let c2 = cache.clone();
    let t = tokio::spawn(async move {
        c2.get_or_load("dc", || async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(k(5))
        })
        .await
        .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    cache.evict("dc");
    t.await.unwrap();
    assert!(
        cache.get("dc").is_none(),
        "a key evicted mid-load must not be cached"
    );
}

#[tokio::test(start_paused = true)]
async fn zero_loads_for_100k_operations_within_one_ttl() {
    let cache = DataKeyCache::default();
    cache
        .get_or_load("dc", || async { Ok(k(1)) })
        .await
        .unwrap();
    let before = cache.stats();
    for _ in 0..100_000 {
        cache
            .get_or_load("dc", || async { Ok(k(1)) })
            .await
            .unwrap();
    }
    assert_eq!(cache.stats().loads - before.loads, 0);
}
