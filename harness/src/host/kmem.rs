//! Kernel memory readings: /proc/meminfo and /proc/slabinfo text in, slab totals out, taken
//! after `sync; echo 3 > /proc/sys/vm/drop_caches` so that what remains is what something pins
//! (a held inotify watch keeps its mark and the watched inode; unused dentries and inodes go).
//! Totals only: a cache's name is never relied on, since SLUB merges caches of similar object
//! size (the inotify mark cache may live inside another cache and vanish from slabinfo).

use std::time::Duration;

/// One reading, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KmemReading {
    /// `Slab:` of /proc/meminfo: every slab page (reclaimable and not).
    pub slab_bytes: u64,
    pub sreclaimable_bytes: u64,
    pub sunreclaim_bytes: u64,
    /// Sum of num_objs x objsize over every line of /proc/slabinfo.
    pub slabinfo_bytes: u64,
}

impl KmemReading {
    /// `self - base` for the meminfo Slab total and the slabinfo total.
    pub fn delta(&self, base: &KmemReading) -> (i64, i64) {
        (
            self.slab_bytes as i64 - base.slab_bytes as i64,
            self.slabinfo_bytes as i64 - base.slabinfo_bytes as i64,
        )
    }

    /// The mean of two readings (to cancel drift between a before and an after).
    pub fn mean(a: &KmemReading, b: &KmemReading) -> KmemReading {
        KmemReading {
            slab_bytes: (a.slab_bytes + b.slab_bytes) / 2,
            sreclaimable_bytes: (a.sreclaimable_bytes + b.sreclaimable_bytes) / 2,
            sunreclaim_bytes: (a.sunreclaim_bytes + b.sunreclaim_bytes) / 2,
            slabinfo_bytes: (a.slabinfo_bytes + b.slabinfo_bytes) / 2,
        }
    }
}

/// /proc/meminfo or /proc/slabinfo text that is not as this kernel family writes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KmemError {
    #[error("/proc/meminfo has no `{0}:` line")]
    NoMeminfoField(String),
    #[error("/proc/meminfo: cannot read the value of `{0}`")]
    BadMeminfoValue(String),
    #[error("/proc/slabinfo: unknown format `{0}` (version 2.x expected)")]
    SlabinfoVersion(String),
    #[error("/proc/slabinfo: cannot parse `{0}`")]
    BadSlabinfoLine(String),
}

/// (Slab, SReclaimable, SUnreclaim) in bytes from /proc/meminfo text (values are in kB).
pub fn parse_meminfo(text: &str) -> Result<(u64, u64, u64), KmemError> {
    let field = |name: &str| -> Result<u64, KmemError> {
        let line = text
            .lines()
            .find(|l| l.split(':').next() == Some(name))
            .ok_or_else(|| KmemError::NoMeminfoField(name.into()))?;
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| KmemError::BadMeminfoValue(line.into()))?;
        Ok(kib * 1024)
    };
    Ok((field("Slab")?, field("SReclaimable")?, field("SUnreclaim")?))
}

/// Sum of num_objs x objsize over all caches, from /proc/slabinfo (version 2.x) text.
pub fn parse_slabinfo(text: &str) -> Result<u64, KmemError> {
    let mut lines = text.lines();
    let version = lines.next().unwrap_or("");
    if !version.starts_with("slabinfo - version: 2.") {
        return Err(KmemError::SlabinfoVersion(version.into()));
    }
    let mut total = 0u64;
    for line in lines.filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        // name active_objs num_objs objsize objperslab pagesperslab : tunables ...
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        match (num(2), num(3)) {
            (Some(objs), Some(size)) => total += objs * size,
            _ => return Err(KmemError::BadSlabinfoLine(line.into())),
        }
    }
    Ok(total)
}

/// Reads both files now (no cache drop).
pub fn read_now() -> std::io::Result<KmemReading> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let (slab, reclaimable, unreclaim) = parse_meminfo(&meminfo).map_err(std::io::Error::other)?;
    let slabinfo = std::fs::read_to_string("/proc/slabinfo").map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot read /proc/slabinfo ({e}): it is readable by root only"),
        )
    })?;
    Ok(KmemReading {
        slab_bytes: slab,
        sreclaimable_bytes: reclaimable,
        sunreclaim_bytes: unreclaim,
        slabinfo_bytes: parse_slabinfo(&slabinfo).map_err(std::io::Error::other)?,
    })
}

/// `sync; echo 3 > /proc/sys/vm/drop_caches`: an action (frees clean page cache, dentries and
/// inodes nobody holds), not a setting, so there is nothing to restore.
pub fn drop_caches() -> std::io::Result<()> {
    nix::unistd::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot write /proc/sys/vm/drop_caches ({e}): run as root"),
        )
    })
}

/// Asks SLUB to give back empty slabs of every cache (`/sys/kernel/slab/*/shrink`), so
/// objects freed by drop_caches show up in the page totals. Best effort: absent without
/// SLUB sysfs, and a cache that refuses changes nothing in the reading's meaning.
fn shrink_slabs() {
    let Ok(dir) = std::fs::read_dir("/sys/kernel/slab") else {
        return;
    };
    for entry in dir.flatten() {
        let shrink = entry.path().join("shrink");
        // Aliases are symlinks to the same cache: shrinking twice is harmless.
        let _ = std::fs::write(shrink, "1");
    }
}

/// Drops caches, waits for RCU-deferred frees, drops again, shrinks slabs, then reads: the
/// slab memory something still pins.
pub fn settled() -> std::io::Result<KmemReading> {
    drop_caches()?;
    // Dentries and inodes are freed after an RCU grace period, and released fsnotify marks
    // drop their inode reference from a delayed worker: let both run, then drop again.
    std::thread::sleep(Duration::from_millis(300));
    drop_caches()?;
    std::thread::sleep(Duration::from_millis(100));
    shrink_slabs();
    read_now()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       24684096 kB\nMemFree:        1000 kB\n\
        Slab:             300000 kB\nSReclaimable:     200000 kB\nSUnreclaim:       100000 kB\n";

    #[test]
    fn meminfo_slab_fields_in_bytes() {
        assert_eq!(
            parse_meminfo(MEMINFO),
            Ok((300000 * 1024, 200000 * 1024, 100000 * 1024))
        );
    }

    #[test]
    fn meminfo_without_slab_is_an_error_naming_the_field() {
        let err = parse_meminfo("MemTotal: 1 kB\n").unwrap_err();
        assert!(err.to_string().contains("Slab"), "{err}");
    }

    #[test]
    fn slabinfo_sums_num_objs_times_objsize_over_every_cache() {
        let text = "slabinfo - version: 2.1\n\
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n\
inotify_inode_mark     10     46     88   46    1 : tunables    0    0    0 : slabdata      1      1      0\n\
ext4_inode_cache     100    120   1168   28    8 : tunables    0    0    0 : slabdata      4      4      0\n\
kmalloc-64          500    512     64   64    1 : tunables    0    0    0 : slabdata      8      8      0\n";
        assert_eq!(parse_slabinfo(text), Ok(46 * 88 + 120 * 1168 + 512 * 64));
    }

    #[test]
    fn slabinfo_of_another_version_or_garbage_is_refused() {
        assert!(parse_slabinfo("slabinfo - version: 1.1\n").is_err());
        assert!(parse_slabinfo("slabinfo - version: 2.1\nfoo bar\n").is_err());
    }

    #[test]
    fn delta_and_mean() {
        let a = KmemReading {
            slab_bytes: 100,
            slabinfo_bytes: 50,
            ..Default::default()
        };
        let b = KmemReading {
            slab_bytes: 300,
            slabinfo_bytes: 90,
            ..Default::default()
        };
        assert_eq!(b.delta(&a), (200, 40));
        assert_eq!(KmemReading::mean(&a, &b).slab_bytes, 200);
    }
}
