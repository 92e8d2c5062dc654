//! A scan-result cache keyed by a hash of the content block, so a conversation history that an
//! agent re-sends every turn is scanned once.
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::engine::Scanner;
use crate::finding::Finding;

type Key = [u8; 32];

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Arc<[Finding]>>,
    order: VecDeque<Key>,
    hits: u64,
    misses: u64,
}

/// Counters, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
}

/// Findings of content blocks already scanned, keyed by BLAKE3 of (scanner fingerprint, block):
/// a block seen again costs a hash instead of a scan; results of another scanner (other rules or
/// known values) are never returned. Oldest entries are dropped first.
pub struct ScanCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl std::fmt::Debug for ScanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanCache")
            .field("capacity", &self.capacity)
            .field("stats", &self.stats())
            .finish()
    }
}

impl ScanCache {
    /// A cache holding at most `capacity` blocks' results.
    pub fn new(capacity: usize) -> ScanCache {
        ScanCache {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves a consistent map; keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key(scanner: &Scanner, block: &[u8]) -> Key {
        let mut h = blake3::Hasher::new();
        h.update(&scanner.fingerprint().to_le_bytes());
        h.update(&(block.len() as u64).to_le_bytes());
        h.update(block);
        *h.finalize().as_bytes()
    }

    /// The findings of `block` (offsets relative to the block), from the cache or by scanning.
    pub fn scan(&self, scanner: &Scanner, block: &[u8]) -> Arc<[Finding]> {
        let key = Self::key(scanner, block);
        {
            let mut inner = self.lock();
            if let Some(found) = inner.map.get(&key).cloned() {
                inner.hits += 1;
                return found;
            }
            inner.misses += 1;
        }
        let found: Arc<[Finding]> = scanner.scan(block).into();
        let mut inner = self.lock();
        if inner.map.insert(key, found.clone()).is_none() {
            inner.order.push_back(key);
        }
        while inner.map.len() > self.capacity {
            match inner.order.pop_front() {
                Some(old) => {
                    inner.map.remove(&old);
                }
                None => break,
            }
        }
        found
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            hits: inner.hits,
            misses: inner.misses,
            entries: inner.map.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KnownValues, ScanConfig};

    fn scanner_with(value: &str) -> Scanner {
        let mut kv = KnownValues::new();
        assert!(kv.add("$T_TOKEN", value));
        Scanner::new(ScanConfig {
            known_values: kv,
            ..ScanConfig::without_rules()
        })
        .unwrap()
    }

    #[test]
    fn repeated_blocks_are_scanned_once() {
        let v = format!("{}{}", "Kq8", "wZ2xV7nB4mL9");
        let s = scanner_with(&v);
        let cache = ScanCache::new(8);
        let block = format!("history with {v} inside");
        let a = cache.scan(&s, block.as_bytes());
        let b = cache.scan(&s, block.as_bytes());
        assert_eq!(a.len(), 1);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(
            cache.stats(),
            CacheStats {
                hits: 1,
                misses: 1,
                entries: 1
            }
        );
    }

    #[test]
    fn another_scanner_does_not_reuse_results() {
        let v = format!("{}{}", "Kq8", "wZ2xV7nB4mL9");
        let s1 = scanner_with(&v);
        let s2 = Scanner::new(ScanConfig::without_rules()).unwrap();
        let cache = ScanCache::new(8);
        let block = format!("x {v} y");
        assert_eq!(cache.scan(&s1, block.as_bytes()).len(), 1);
        assert_eq!(cache.scan(&s2, block.as_bytes()).len(), 0);
    }

    #[test]
    fn capacity_evicts_oldest() {
        let s = Scanner::new(ScanConfig::without_rules()).unwrap();
        let cache = ScanCache::new(2);
        for b in [&b"one"[..], b"two", b"three"] {
            cache.scan(&s, b);
        }
        assert_eq!(cache.stats().entries, 2);
        cache.scan(&s, b"one");
        assert_eq!(cache.stats().misses, 4);
    }
}
