//! Test helper: which pages of a mapping this process has page-table entries for, read from
//! `/proc/self/pagemap` (bit 63 of each page's entry, a native-endian `u64`: present).

use std::os::unix::fs::FileExt;

use super::PAGE_SIZE;

/// For each page `bytes` touches, whether it is mapped in this process right now.
pub(crate) fn pages_mapped(bytes: &[u8]) -> Vec<bool> {
    let page = PAGE_SIZE as usize;
    let pagemap = std::fs::File::open("/proc/self/pagemap").expect("/proc/self/pagemap");
    let start = bytes.as_ptr() as usize / page;
    let end = (bytes.as_ptr() as usize + bytes.len()).div_ceil(page);
    (start..end)
        .map(|p| {
            let mut entry = [0u8; 8];
            pagemap
                .read_exact_at(&mut entry, (p * 8) as u64)
                .expect("pagemap entry");
            // The kernel's own entry, in the host's byte order (not an on-disk format).
            #[allow(clippy::host_endian_bytes)]
            let entry = u64::from_ne_bytes(entry);
            entry >> 63 == 1
        })
        .collect()
}
