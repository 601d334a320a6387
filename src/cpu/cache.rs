//! The cache model: data-cache sizes read once from the OS, and the blocking derived from them
//! (BLIS' analytical rules for the A block, half of L2, and the B block, half of the shared L3,
//! around a fixed K block).

use std::sync::OnceLock;

use super::driver::Blocking;

/// Per-core data cache sizes in bytes (L3: the whole shared cache).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSizes {
    /// L1 data cache.
    pub l1d: usize,
    /// L2 cache.
    pub l2: usize,
    /// L3 cache (shared by the cores).
    pub l3: usize,
}

impl CacheSizes {
    /// What most current x86_64 and aarch64 cores have, for systems that do not say.
    const FALLBACK: CacheSizes = CacheSizes {
        l1d: 32 << 10,
        l2: 512 << 10,
        l3: 8 << 20,
    };

    /// This machine's caches (Linux sysfs), detected once.
    pub fn detect() -> CacheSizes {
        static SIZES: OnceLock<CacheSizes> = OnceLock::new();
        *SIZES.get_or_init(|| Self::from_sysfs().unwrap_or(Self::FALLBACK))
    }

    fn from_sysfs() -> Option<CacheSizes> {
        let mut sizes = Self::FALLBACK;
        let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
        for entry in dir.flatten() {
            let read = |f: &str| std::fs::read_to_string(entry.path().join(f)).ok();
            let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
            else {
                continue;
            };
            let size = size.trim();
            let bytes = match size.strip_suffix('K') {
                Some(kib) => kib.parse::<usize>().ok()? << 10,
                None => match size.strip_suffix('M') {
                    Some(mib) => mib.parse::<usize>().ok()? << 20,
                    None => size.parse().ok()?,
                },
            };
            match (level.trim(), kind.trim()) {
                ("1", "Data") => sizes.l1d = bytes,
                ("2", "Unified") => sizes.l2 = bytes,
                ("3", "Unified") => sizes.l3 = bytes,
                _ => {}
            }
        }
        Some(sizes)
    }

    /// Blocking for a microkernel with an `mr × nr` tile.
    pub(crate) fn blocking(self, mr: usize, nr: usize) -> Blocking {
        const F32: usize = std::mem::size_of::<f32>();
        // Long K blocks for every kernel, not BLIS' "B micro-panel in half of L1": each block
        // restarts every tile and reloads and stores its C tile, which costs more than a
        // micro-panel streaming from L2 instead of L1 (Zen 4, avx512 14×32, kc 128 → 384-512:
        // 512³ and 1024³ from 0.8 to 0.93-1.0 of faer; Zen 2, avx2 6×16, kc 256 → 512: 512³
        // 3.67 → 3.37-3.50 ms, 784→128 at batch 256 725-745 → 664-681 µs, same runs). With
        // 1 MiB of L2 or more, 1024 (Zen 5, time ratio to faer, kc 512 → 1024: avx512 1008³
        // 1.04 → 1.00, 2048³ 1.015 → 0.96; avx2 2048³ 2.0 → 1.88; 2048 was worse than 1024);
        // below, 512 as measured on Zen 2.
        let kc = if self.l2 >= 1 << 20 { 1024 } else { 512 };
        let mc = (self.l2 / 2 / (kc * F32) / mr * mr).clamp(mr * 4, mr * 120);
        let nc = (self.l3 / 2 / (kc * F32) / nr * nr).clamp(nr * 16, nr * 512);
        Blocking {
            mc,
            kc,
            nc,
            l1d: self.l1d,
            l2: self.l2,
        }
    }
}
