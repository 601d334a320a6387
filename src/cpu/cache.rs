//! The cache model: data-cache sizes read once from the OS, and the blocking derived from them
//! (BLIS' analytical rules: a `kc × NR` B micro-panel fills half of L1 where that leaves kc ≥ 256,
//! an `mc × kc` A block half of L2, a `kc × nc` B block half of the shared L3).

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
        // A kc × nr micro-panel of B stays in half of L1 while A panels stream past it, where
        // that leaves a K block of at least 256 steps. A wider panel (AVX-512's 32 columns on a
        // 32-48 KiB L1) streams from L2 instead, and then a long K block is what counts: each
        // block reloads and stores the C tile (Zen 4, 14×32: kc 128 → 384-512 took 512³ and
        // 1024³ from 0.8 to 0.93-1.0 of faer in the same runs).
        let l1_kc = self.l1d / 2 / (nr * F32);
        let kc = if l1_kc >= 256 { l1_kc.min(512) } else { 512 };
        let mc = (self.l2 / 2 / (kc * F32) / mr * mr).clamp(mr * 4, mr * 120);
        let nc = (self.l3 / 2 / (kc * F32) / nr * nr).clamp(nr * 16, nr * 512);
        Blocking {
            mc,
            kc,
            nc,
            l2: self.l2,
        }
    }
}
