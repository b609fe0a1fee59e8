//! Change detection for files re-read while running (bearer-token files in `auth`, TLS
//! certificates, keys and client CAs in `tls`), shared so both behave alike.
//!
//! A file is checked with a `stat` through symlinks ([`FileStamp::of`]) at most once per
//! interval, by whichever caller finds the check due ([`DueCheck`]): no background task to
//! stop, no filesystem-notify dependency, and nothing done on a quiet listener. `stat`
//! follows symlinks, so a Kubernetes Secret volume, which rewrites a mounted Secret by
//! swapping its `..data` symlink to a new directory, shows up as a new inode.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// What identifies a version of a file: device and inode (a rename over it or a symlink
/// swap), size and modification time (an in-place rewrite).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl FileStamp {
    /// The stamp of `path`, following symlinks; `None` when it cannot be stat'ed.
    pub fn of(path: &Path) -> Option<FileStamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            modified: m.modified().ok(),
        })
    }
}

/// A check due at most once every `every`, taken by exactly one of the callers that find
/// it due (the others go on with what is in force).
#[derive(Debug)]
pub struct DueCheck {
    clock: Instant,
    every: Duration,
    /// Milliseconds on `clock` when the next check is due.
    next_ms: AtomicU64,
}

impl DueCheck {
    /// The first check is due `every` from now (the file was just read).
    pub fn new(every: Duration) -> DueCheck {
        DueCheck {
            clock: Instant::now(),
            every,
            next_ms: AtomicU64::new(every.as_millis() as u64),
        }
    }

    /// Whether the caller should check now; true for one caller per interval.
    pub fn take(&self) -> bool {
        let now = self.clock.elapsed().as_millis() as u64;
        let due = self.next_ms.load(Ordering::Relaxed);
        now >= due
            && self
                .next_ms
                .compare_exchange(
                    due,
                    now + self.every.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rename_over_the_file_changes_its_stamp_even_with_the_same_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "aaaa").unwrap();
        let before = FileStamp::of(&path);
        assert!(before.is_some());
        std::fs::write(dir.path().join("f.new"), "bbbb").unwrap();
        std::fs::rename(dir.path().join("f.new"), &path).unwrap();
        assert_ne!(FileStamp::of(&path), before);
        assert_eq!(FileStamp::of(&dir.path().join("absent")), None);
    }

    #[test]
    fn a_symlink_swap_changes_the_stamp_seen_through_the_link() {
        // The layout of a Kubernetes Secret volume: cert.pem -> ..data/cert.pem,
        // ..data -> ..2026_11_25_v1; an update points ..data at a new directory.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for v in ["v1", "v2"] {
            std::fs::create_dir(d.join(v)).unwrap();
            std::fs::write(d.join(v).join("cert.pem"), "same size").unwrap();
        }
        std::os::unix::fs::symlink("v1", d.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/cert.pem", d.join("cert.pem")).unwrap();
        let before = FileStamp::of(&d.join("cert.pem"));
        std::os::unix::fs::symlink("v2", d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        assert_ne!(FileStamp::of(&d.join("cert.pem")), before);
    }

    #[test]
    fn a_zero_interval_check_is_always_due() {
        let check = DueCheck::new(Duration::ZERO);
        assert!(check.take() && check.take());
        let hourly = DueCheck::new(Duration::from_secs(3600));
        assert!(!hourly.take());
    }
}
