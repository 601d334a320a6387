//! The cache model: data-cache sizes read once from the OS, and the blocking derived from them
//! (BLIS' analytical rules: a `kc × NR` B micro-panel fills half of L1, an `mc × kc` A block half
//! of L2, a `kc × nc` B block half of the shared L3).

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
        let kc = (self.l1d / 2 / (nr * F32)).clamp(64, 512);
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
