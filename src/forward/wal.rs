//! The durable queue under `--forward-queue-dir`: an append-only log of encoded OTLP
//! requests with an acknowledgement log beside it, so that records appended but not yet
//! delivered downstream survive a restart, a `kill -9` and (up to the last [`Wal::sync`])
//! an OS crash.
//!
//! Pure std plus `crc32fast`, `libc` (for `flock`) and `tracing` (warnings naming damaged
//! files): no async types. The caller wraps a
//! [`Wal`] in a `std::sync::Mutex`; every method does a bounded amount of blocking file I/O
//! and none waits on anything else.
//!
//! # Guarantees
//! - When [`Wal::append`] returns `Ok(id)`, the record has been handed to the kernel with
//!   write(2) (no user-space buffer is left): it survives the crash of this process
//!   (`kill -9`, abort, OOM kill), and the next [`Wal::open`] returns it unless it was
//!   acknowledged.
//! - When [`Wal::ack`] returns `Ok`, the acknowledgement has likewise reached the kernel:
//!   after a process crash the record is not returned again.
//! - When [`Wal::sync`] returns `Ok`, every append and ack that returned before it is on
//!   stable storage (fdatasync of each segment and ack file written since the previous
//!   sync, and fsync of the directory when files were created), so it survives an OS crash
//!   or power loss too. Appends after the last sync may be lost by an OS crash; acks after
//!   it may be lost too, and then their records are delivered again: delivery is
//!   at-least-once, never at-most-once.
//! - A record that fails its checksum is never returned: every record and ack entry carries
//!   a CRC-32, and recovery drops what does not check out, counting it in [`Recovered`].
//! - Dropping a `Wal` does not sync: call [`Wal::sync`] at shutdown.
//!
//! # On-disk format (version 1)
//! The directory holds a `lock` file (held with `flock(LOCK_EX)` while a [`Wal`] is open),
//! and for each live segment `N` (a decimal `u64`, zero-padded to 20 digits, increasing
//! for the life of the directory):
//! - `N.seg`: a 24-byte header, then records back to back. A record is
//!   `len: u32 LE | crc: u32 LE | payload (len bytes)`, where `crc` is the CRC-32
//!   (ISO-HDLC, as in gzip) of the 4 `len` bytes followed by the payload, and
//!   `len <= 64 MiB` ([`MAX_RECORD_BYTES`]). A record's [`RecordId`] is its segment number
//!   and byte offset.
//! - `N.ack` (created on the first ack): a 24-byte header, then 12-byte entries
//!   `offset: u64 LE | crc: u32 LE` (CRC-32 of the 8 offset bytes), one for each
//!   acknowledged record of segment `N`, in acknowledgement order.
//!
//! Both headers are `magic: 8 bytes ("FLWALSEG" or "FLWALACK") | version: u32 LE |
//! segment number: u64 LE | crc: u32 LE` (CRC-32 of the 20 bytes before it).
//!
//! Each [`Wal::open`] starts a new segment, so files from earlier runs are never appended
//! to again; the segment being written rotates once it would exceed
//! [`WalOptions::segment_bytes`]. A segment other than the one being written is deleted
//! with its ack file as soon as all its records are acknowledged, so the acks of a segment
//! go with it and the disk holds about one segment plus whatever is undelivered.
//!
//! # Recovery
//! Segments are read in order. In the last one, anything after the last whole, checked
//! record (a short record, an untrustworthy length, or a bad checksum at the very end) is a
//! torn tail: truncated and counted in [`Recovered::torn_tail_bytes`]. A record with a bad
//! checksum whose framing is intact (the next record checks out, or it ends exactly where
//! an earlier segment ends) is skipped and counted in [`Recovered::corrupt_records`]; an ack
//! is written for it so that it is counted once. A length that cannot be trusted in an
//! earlier segment ends the reading of that segment: the rest is truncated and counted in
//! [`Recovered::unreadable_bytes`]. Lengths read from disk are checked against
//! [`MAX_RECORD_BYTES`] and the file size before anything is allocated. Ack entries with a
//! bad checksum are ignored (their records come back: at-least-once), as are acks of
//! records that no longer exist. A segment or ack file with a damaged header is deleted
//! (counted, and logged with its path); one from a newer format version stops
//! [`Wal::open`] with an error instead, so a downgrade never destroys data.
//!
//! Recovery reads every live segment once and returns all unacknowledged payloads in
//! memory, so its cost in time and memory is the undelivered backlog: bound the directory
//! (the caller's queue limit) accordingly.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Largest payload one record may carry (64 MiB). Part of the format: recovery treats a
/// larger length as untrustworthy, so it never allocates more than this for one record.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// Format version written in every header.
const VERSION: u32 = 1;
const SEGMENT_MAGIC: [u8; 8] = *b"FLWALSEG";
const ACK_MAGIC: [u8; 8] = *b"FLWALACK";
/// magic (8) + version (4) + segment number (8) + crc (4).
const HEADER_LEN: u64 = 24;
/// len (4) + crc (4).
const FRAME_HEADER_LEN: u64 = 8;
/// offset (8) + crc (4).
const ACK_ENTRY_LEN: u64 = 12;
/// Payloads up to this size are copied behind their frame header and written with one
/// write(2); larger ones are written in two calls rather than copied.
const SINGLE_WRITE_MAX: usize = 256 * 1024;
/// Ack files kept open at once. Acks go mostly to the oldest segments, so a small set
/// covers them; the cap keeps a long backlog (many segments) from exhausting descriptors.
const MAX_OPEN_ACK_FILES: usize = 32;
const LOCK_FILE: &str = "lock";
const SEGMENT_EXT: &str = "seg";
const ACK_EXT: &str = "ack";

/// Tunables of a [`Wal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// A new segment file is started before a record would take the current one past this
    /// many bytes (a single larger record gets a segment of its own). Smaller segments are
    /// freed sooner once delivered; larger ones mean fewer files. Default 64 MiB.
    pub segment_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Names one appended record: its segment and byte offset, so ids order as records were
/// appended, and ids from different runs over one directory never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId {
    segment: u64,
    offset: u64,
}

impl RecordId {
    /// Number of the segment file holding the record.
    pub fn segment(self) -> u64 {
        self.segment
    }

    /// Byte offset of the record's frame in its segment file.
    pub fn offset(self) -> u64 {
        self.offset
    }

    /// The id of the record at `offset` in segment `segment` (as [`RecordId::segment`] and
    /// [`RecordId::offset`] gave it), for callers that keep ids as plain numbers. An id
    /// that names no record is ignored by [`Wal::ack`].
    pub fn from_parts(segment: u64, offset: u64) -> RecordId {
        RecordId { segment, offset }
    }
}

/// What [`Wal::open`] found on disk.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Every record appended and not acknowledged, in append order.
    pub records: Vec<(RecordId, Vec<u8>)>,
    /// Bytes cut off the end of the log: the record (or segment header) being written when
    /// the process or the OS stopped. Expected after a crash.
    pub torn_tail_bytes: u64,
    /// Records whose checksum failed although their framing was intact (the data was
    /// damaged on disk); skipped. Not expected after a process crash; possible after an
    /// OS crash for data written after the last sync.
    pub corrupt_records: u64,
    /// Bytes of earlier segments that could not be read because a length or header was
    /// damaged (the records in them are lost); truncated or deleted. Not expected after a
    /// process crash; possible after an OS crash for data written after the last sync.
    pub unreadable_bytes: u64,
}

/// Errors of the durable queue.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file system operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "create directory".
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Another process (or another [`Wal`] in this one) holds the directory.
    #[error("queue directory {} is in use by another process (lock held on {})", dir.display(), lock.display())]
    Locked {
        /// The queue directory.
        dir: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
    /// A file written by a newer faultline, which this one must not rewrite or delete.
    #[error("{} has format version {version}; this faultline reads version {VERSION}", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found in its header.
        version: u32,
    },
    /// The payload is larger than [`MAX_RECORD_BYTES`].
    #[error("record of {len} bytes exceeds the limit of {MAX_RECORD_BYTES} bytes")]
    RecordTooLarge {
        /// The payload size.
        len: usize,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl Fn(io::Error) -> WalError + 'a {
    move |source| WalError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The durable queue over one directory. See the module documentation for the format and
/// the guarantees.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    options: WalOptions,
    /// Holds the `flock` for as long as the `Wal` lives (closing the descriptor drops it).
    _lock: File,
    /// Every live segment, the one being written included.
    segments: BTreeMap<u64, Segment>,
    /// The segment being written; always the highest number in `segments`.
    active: Active,
    /// Next segment number to create: above every number ever seen in the directory.
    next_number: u64,
    /// Records appended and not acknowledged, over all segments.
    pending: usize,
    /// Sum of the sizes of all segment and ack files.
    disk_bytes: u64,
    /// Files were created since the last sync, so the directory needs an fsync too.
    dir_dirty: bool,
    open_ack_files: usize,
    /// Frame header and small payload, so that one append is one write(2).
    scratch: Vec<u8>,
}

#[derive(Debug)]
struct Active {
    number: u64,
    file: File,
    /// An append failed and its partial frame could not be cut off: the next append starts
    /// a new segment rather than writing after garbage.
    broken: bool,
}

#[derive(Debug)]
struct Segment {
    /// File size (header included).
    len: u64,
    /// Offsets of the records not yet acknowledged.
    pending: HashSet<u64>,
    acks: AckFile,
    /// A rotated-out segment written since the last sync, kept open to be fdatasync'ed.
    unsynced: Option<File>,
}

#[derive(Debug, Default)]
struct AckFile {
    /// Open for writing; `None` when not created yet or closed to respect the cap.
    file: Option<File>,
    /// File size; 0 when the file does not exist.
    len: u64,
    /// Written since the last sync.
    dirty: bool,
}

fn file_name(number: u64, ext: &str) -> String {
    format!("{number:020}.{ext}")
}

fn parse_file_name(name: &str) -> Option<(u64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = stem.parse().ok()?;
    match ext {
        SEGMENT_EXT | ACK_EXT => Some((number, ext)),
        _ => None,
    }
}

fn encode_header(magic: [u8; 8], number: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(&magic);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&number.to_le_bytes());
    let crc = crc32fast::hash(&h[..20]);
    h[20..].copy_from_slice(&crc.to_le_bytes());
    h
}

enum Header {
    Valid,
    /// Shorter than a header: the file was being created.
    Short,
    /// Wrong magic, checksum or segment number.
    Damaged,
    Newer(u32),
}

fn read_header(file: &File, file_len: u64, magic: [u8; 8], number: u64) -> io::Result<Header> {
    if file_len < HEADER_LEN {
        return Ok(Header::Short);
    }
    let mut h = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut h, 0)?;
    let crc = u32::from_le_bytes([h[20], h[21], h[22], h[23]]);
    if h[..8] != magic || crc32fast::hash(&h[..20]) != crc {
        return Ok(Header::Damaged);
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if version > VERSION {
        return Ok(Header::Newer(version));
    }
    let found = u64::from_le_bytes([h[12], h[13], h[14], h[15], h[16], h[17], h[18], h[19]]);
    Ok(if version == VERSION && found == number {
        Header::Valid
    } else {
        Header::Damaged
    })
}

fn frame_header(payload: &[u8]) -> [u8; FRAME_HEADER_LEN as usize] {
    // The caller has checked `payload.len() <= MAX_RECORD_BYTES`, which fits in a u32.
    let len = (payload.len() as u32).to_le_bytes();
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len);
    hasher.update(payload);
    let crc = hasher.finalize().to_le_bytes();
    [
        len[0], len[1], len[2], len[3], crc[0], crc[1], crc[2], crc[3],
    ]
}

fn ack_entry(offset: u64) -> [u8; ACK_ENTRY_LEN as usize] {
    let o = offset.to_le_bytes();
    let c = crc32fast::hash(&o).to_le_bytes();
    [
        o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7], c[0], c[1], c[2], c[3],
    ]
}

enum Frame {
    /// A whole record whose checksum matches; the payload is in the buffer.
    Valid { end: u64 },
    /// A whole record (as far as its length says) whose checksum does not match.
    BadChecksum { end: u64 },
    /// Too short for its header or its length, or a length above the cap.
    Untrusted,
}

/// Reads the record at `pos` into `buf`, never allocating more than the file holds or
/// [`MAX_RECORD_BYTES`].
fn read_frame(file: &File, pos: u64, file_len: u64, buf: &mut Vec<u8>) -> io::Result<Frame> {
    if file_len.saturating_sub(pos) < FRAME_HEADER_LEN {
        return Ok(Frame::Untrusted);
    }
    let mut h = [0u8; FRAME_HEADER_LEN as usize];
    file.read_exact_at(&mut h, pos)?;
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let end = pos + FRAME_HEADER_LEN + u64::from(len);
    if len as usize > MAX_RECORD_BYTES || end > file_len {
        return Ok(Frame::Untrusted);
    }
    buf.clear();
    buf.resize(len as usize, 0);
    file.read_exact_at(buf, pos + FRAME_HEADER_LEN)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&h[..4]);
    hasher.update(buf);
    Ok(if hasher.finalize() == crc {
        Frame::Valid { end }
    } else {
        Frame::BadChecksum { end }
    })
}

/// Takes the exclusive, non-blocking `flock` that keeps a second process off the directory.
/// Tries to take the directory lock this many times, [`LOCK_RETRY`] apart (see `lock_dir`).
const LOCK_ATTEMPTS: u32 = 20;
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

fn lock_dir(dir: &Path) -> Result<File, WalError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io_err("open lock file", &path))?;
    // A lock held by another process is refused, but only after a short wait: a lock is
    // owned by an open file description, which a child forked by this process (any
    // `Command::spawn`) shares until it execs, so a directory closed a moment ago can
    // still look locked; and a restarted service may start while its predecessor exits.
    let mut rc = -1;
    for attempt in 0..LOCK_ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(LOCK_RETRY);
        }
        // SAFETY: the descriptor is valid and owned by `file` for the whole call; flock
        // only reads its arguments.
        rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 || io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
            break;
        }
    }
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(if err.kind() == io::ErrorKind::WouldBlock {
            WalError::Locked {
                dir: dir.to_path_buf(),
                lock: path,
            }
        } else {
            WalError::Io {
                action: "lock",
                path,
                source: err,
            }
        });
    }
    Ok(file)
}

fn remove_if_exists(path: &Path) -> Result<(), WalError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(WalError::Io {
            action: "remove",
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Cuts a file to `len` and makes the cut durable, so the next recovery does not see
/// (and count) the same damage again.
fn truncate(file: &File, len: u64, path: &Path) -> Result<(), WalError> {
    file.set_len(len).map_err(io_err("truncate", path))?;
    file.sync_all().map_err(io_err("sync", path))
}

/// What the acknowledgement file of one segment says.
struct RecoveredAcks {
    offsets: HashSet<u64>,
    /// File size after recovery (0: no file).
    len: u64,
}

fn recover_acks(path: &Path, number: u64) -> Result<RecoveredAcks, WalError> {
    let none = RecoveredAcks {
        offsets: HashSet::new(),
        len: 0,
    };
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(none),
        Err(e) => return Err(io_err("open", path)(e)),
    };
    let file_len = file.metadata().map_err(io_err("stat", path))?.len();
    match read_header(&file, file_len, ACK_MAGIC, number).map_err(io_err("read", path))? {
        Header::Valid => {}
        Header::Newer(version) => {
            return Err(WalError::UnsupportedVersion {
                path: path.to_path_buf(),
                version,
            })
        }
        header @ (Header::Short | Header::Damaged) => {
            // Its acks are lost: the segment's records are delivered again. A short file
            // is a crash while creating it (no ack in it yet), not worth a warning.
            if matches!(header, Header::Damaged) {
                tracing::warn!(path = %path.display(), "forward queue: damaged ack file removed");
            }
            drop(file);
            remove_if_exists(path)?;
            return Ok(none);
        }
    }
    let entries = (file_len - HEADER_LEN) / ACK_ENTRY_LEN;
    let whole = HEADER_LEN + entries * ACK_ENTRY_LEN;
    let mut offsets = HashSet::new();
    let mut bad = 0u64;
    let mut reader = BufReader::new(&file);
    let mut skip = [0u8; HEADER_LEN as usize];
    reader.read_exact(&mut skip).map_err(io_err("read", path))?;
    let mut e = [0u8; ACK_ENTRY_LEN as usize];
    for _ in 0..entries {
        reader.read_exact(&mut e).map_err(io_err("read", path))?;
        let crc = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
        if crc32fast::hash(&e[..8]) == crc {
            offsets.insert(u64::from_le_bytes([
                e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7],
            ]));
        } else {
            bad += 1;
        }
    }
    drop(reader);
    if bad > 0 {
        tracing::warn!(path = %path.display(), entries = bad, "forward queue: damaged ack entries ignored");
    }
    if whole != file_len {
        // A torn entry: cut it, or later entries would be misaligned.
        truncate(&file, whole, path)?;
    }
    Ok(RecoveredAcks {
        offsets,
        len: whole,
    })
}

impl Wal {
    /// Opens (creating it with mode 0700 if needed) the queue directory, takes an exclusive
    /// lock on it, recovers what is unacknowledged, and starts a new segment.
    ///
    /// # Errors
    /// [`WalError::Locked`] if another `Wal` holds the directory; [`WalError::Io`] naming
    /// the path if the directory or a file cannot be created, read or written;
    /// [`WalError::UnsupportedVersion`] for files of a newer format. Damaged data is not
    /// an error: it is dropped and counted in [`Recovered`].
    pub fn open(dir: &Path, options: WalOptions) -> Result<(Wal, Recovered), WalError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("create directory", dir))?;
        let lock = lock_dir(dir)?;

        let mut seg_numbers = Vec::new();
        let mut ack_numbers = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err("list directory", dir))? {
            let entry = entry.map_err(io_err("list directory", dir))?;
            let name = entry.file_name();
            match name.to_str().and_then(parse_file_name) {
                Some((n, SEGMENT_EXT)) => seg_numbers.push(n),
                Some((n, _)) => ack_numbers.push(n),
                None => {}
            }
        }
        seg_numbers.sort_unstable();
        let highest = seg_numbers
            .iter()
            .chain(&ack_numbers)
            .copied()
            .max()
            .unwrap_or(0);
        // An ack file without its segment: the segment was deleted and the process
        // stopped before the ack file followed it.
        for n in &ack_numbers {
            if seg_numbers.binary_search(n).is_err() {
                remove_if_exists(&dir.join(file_name(*n, ACK_EXT)))?;
            }
        }

        let mut recovered = Recovered::default();
        let mut segments = BTreeMap::new();
        let mut pending = 0usize;
        let mut disk_bytes = 0u64;
        let last = seg_numbers.last().copied();
        for &number in &seg_numbers {
            if let Some(segment) =
                recover_segment(dir, number, Some(number) == last, &mut recovered)?
            {
                pending += segment.pending.len();
                disk_bytes += segment.len + segment.acks.len;
                segments.insert(number, segment);
            }
        }

        let number = highest + 1;
        let (file, len) = create_segment(dir, number)?;
        disk_bytes += len;
        segments.insert(
            number,
            Segment {
                len,
                pending: HashSet::new(),
                acks: AckFile::default(),
                unsynced: None,
            },
        );
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            options,
            _lock: lock,
            segments,
            active: Active {
                number,
                file,
                broken: false,
            },
            next_number: number + 1,
            pending,
            disk_bytes,
            dir_dirty: true,
            open_ack_files: 0,
            scratch: Vec::new(),
        };
        // Deletions and the new segment made durable before anything is appended.
        wal.sync()?;
        Ok((wal, recovered))
    }

    /// Appends one record (the caller's payload, e.g. an encoded OTLP request) and returns
    /// its id. The record has reached the kernel when this returns (see the module docs).
    ///
    /// # Errors
    /// [`WalError::RecordTooLarge`] above [`MAX_RECORD_BYTES`]; [`WalError::Io`] if a
    /// write fails (disk full, ...). A failed append leaves nothing readable behind: the
    /// partial frame is cut off, or the next append starts a new segment.
    pub fn append(&mut self, payload: &[u8]) -> Result<RecordId, WalError> {
        if payload.len() > MAX_RECORD_BYTES {
            return Err(WalError::RecordTooLarge { len: payload.len() });
        }
        let frame_len = FRAME_HEADER_LEN + payload.len() as u64;
        let active_len = self.segment_len(self.active.number);
        if self.active.broken
            || (active_len > HEADER_LEN
                && active_len.saturating_add(frame_len) > self.options.segment_bytes)
        {
            self.rotate()?;
        }
        let number = self.active.number;
        let offset = self.segment_len(number);
        let header = frame_header(payload);
        let written = if payload.len() <= SINGLE_WRITE_MAX {
            self.scratch.clear();
            self.scratch.extend_from_slice(&header);
            self.scratch.extend_from_slice(payload);
            self.active.file.write_all_at(&self.scratch, offset)
        } else {
            self.active
                .file
                .write_all_at(&header, offset)
                .and_then(|()| {
                    self.active
                        .file
                        .write_all_at(payload, offset + FRAME_HEADER_LEN)
                })
        };
        if let Err(source) = written {
            if self.active.file.set_len(offset).is_err() {
                self.active.broken = true;
            }
            return Err(WalError::Io {
                action: "append to",
                path: self.dir.join(file_name(number, SEGMENT_EXT)),
                source,
            });
        }
        let segment = self.segments.get_mut(&number).ok_or_else(missing_active)?;
        segment.len += frame_len;
        segment.pending.insert(offset);
        self.pending += 1;
        self.disk_bytes += frame_len;
        Ok(RecordId {
            segment: number,
            offset,
        })
    }

    /// Marks a record delivered. Acks may come in any order; acking an unknown or already
    /// acknowledged id does nothing. When this was the last pending record of a segment
    /// other than the one being written, the segment and its ack file are deleted.
    ///
    /// # Errors
    /// [`WalError::Io`] if the ack cannot be written (the record stays pending). A
    /// delivered segment that cannot be deleted is only logged: the ack is recorded, and
    /// the next [`Wal::open`] deletes the segment.
    pub fn ack(&mut self, id: RecordId) -> Result<(), WalError> {
        let known = self
            .segments
            .get(&id.segment)
            .is_some_and(|s| s.pending.contains(&id.offset));
        if !known {
            return Ok(());
        }
        self.write_ack(id)?;
        let Some(segment) = self.segments.get_mut(&id.segment) else {
            return Ok(());
        };
        segment.pending.remove(&id.offset);
        self.pending -= 1;
        if segment.pending.is_empty() && id.segment != self.active.number {
            self.delete_segment(id.segment);
        }
        Ok(())
    }

    /// Flushes to stable storage (fdatasync) every segment and ack file written since the
    /// last sync, and the directory if files were created. Call it periodically and at
    /// shutdown; what returned before it then survives an OS crash.
    ///
    /// # Errors
    /// [`WalError::Io`] naming the file. After a failed sync, whether earlier writes are
    /// durable is unknown (the kernel may have dropped the dirty pages).
    pub fn sync(&mut self) -> Result<(), WalError> {
        let dir = &self.dir;
        for (&number, segment) in &mut self.segments {
            if let Some(file) = segment.unsynced.take() {
                file.sync_data()
                    .map_err(io_err("sync", &dir.join(file_name(number, SEGMENT_EXT))))?;
            }
            if segment.acks.dirty {
                if let Some(file) = &segment.acks.file {
                    file.sync_data()
                        .map_err(io_err("sync", &dir.join(file_name(number, ACK_EXT))))?;
                }
                segment.acks.dirty = false;
            }
        }
        self.active.file.sync_data().map_err(io_err(
            "sync",
            &dir.join(file_name(self.active.number, SEGMENT_EXT)),
        ))?;
        if self.dir_dirty {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err("sync directory", dir))?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// Bytes of segment and ack files on disk now.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes
    }

    /// Records appended (or recovered) and not acknowledged.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// The queue directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn segment_len(&self, number: u64) -> u64 {
        self.segments.get(&number).map_or(0, |s| s.len)
    }

    /// Starts a new segment; the old one is kept open until the next sync, or deleted now
    /// if everything in it is already acknowledged.
    fn rotate(&mut self) -> Result<(), WalError> {
        let number = self.next_number;
        // Numbers are never reused, even when creating this one fails half-way.
        self.next_number += 1;
        let (file, len) = create_segment(&self.dir, number)?;
        self.dir_dirty = true;
        self.disk_bytes += len;
        self.segments.insert(
            number,
            Segment {
                len,
                pending: HashSet::new(),
                acks: AckFile::default(),
                unsynced: None,
            },
        );
        let old = std::mem::replace(
            &mut self.active,
            Active {
                number,
                file,
                broken: false,
            },
        );
        let done = match self.segments.get_mut(&old.number) {
            Some(segment) => {
                segment.unsynced = Some(old.file);
                segment.pending.is_empty()
            }
            None => false,
        };
        if done {
            self.delete_segment(old.number);
        }
        Ok(())
    }

    fn write_ack(&mut self, id: RecordId) -> Result<(), WalError> {
        let path = self.dir.join(file_name(id.segment, ACK_EXT));
        let needs_open = self
            .segments
            .get(&id.segment)
            .is_some_and(|s| s.acks.file.is_none());
        if needs_open {
            if self.open_ack_files >= MAX_OPEN_ACK_FILES {
                self.close_an_ack_file(id.segment)?;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(io_err("open", &path))?;
            let segment = self
                .segments
                .get_mut(&id.segment)
                .ok_or_else(missing_active)?;
            if segment.acks.len == 0 {
                file.set_len(0).map_err(io_err("truncate", &path))?;
                file.write_all_at(&encode_header(ACK_MAGIC, id.segment), 0)
                    .map_err(io_err("write", &path))?;
                segment.acks.len = HEADER_LEN;
                self.disk_bytes += HEADER_LEN;
                self.dir_dirty = true;
            }
            segment.acks.file = Some(file);
            self.open_ack_files += 1;
        }
        let segment = self
            .segments
            .get_mut(&id.segment)
            .ok_or_else(missing_active)?;
        let acks = &mut segment.acks;
        let file = acks.file.as_ref().ok_or_else(missing_active)?;
        if let Err(source) = file.write_all_at(&ack_entry(id.offset), acks.len) {
            // A partial entry would misalign every later one; if it cannot be cut off,
            // recovery reads those as damaged and the records come back (at-least-once).
            let _ = file.set_len(acks.len);
            return Err(WalError::Io {
                action: "append to",
                path,
                source,
            });
        }
        acks.len += ACK_ENTRY_LEN;
        acks.dirty = true;
        self.disk_bytes += ACK_ENTRY_LEN;
        Ok(())
    }

    /// Closes one open ack file other than `keep`'s, syncing it first if it is dirty so
    /// that [`Wal::sync`] keeps its promise without the descriptor.
    fn close_an_ack_file(&mut self, keep: u64) -> Result<(), WalError> {
        let victim = self
            .segments
            .iter_mut()
            .find(|(n, s)| **n != keep && s.acks.file.is_some());
        if let Some((&number, segment)) = victim {
            if let Some(file) = segment.acks.file.take() {
                self.open_ack_files -= 1;
                if segment.acks.dirty {
                    file.sync_data()
                        .map_err(io_err("sync", &self.dir.join(file_name(number, ACK_EXT))))?;
                    segment.acks.dirty = false;
                }
            }
        }
        Ok(())
    }

    /// Deletes a fully acknowledged segment: the segment first, so that a crash in between
    /// leaves an orphan ack file (removed by the next open), never records without acks.
    /// A failure is logged, not returned: the files say everything is delivered, so the
    /// next open deletes them, and an append or ack should not fail over it.
    fn delete_segment(&mut self, number: u64) {
        let Some(segment) = self.segments.remove(&number) else {
            return;
        };
        if segment.acks.file.is_some() {
            self.open_ack_files -= 1;
        }
        self.disk_bytes -= segment.len + segment.acks.len;
        drop(segment);
        let removed = remove_if_exists(&self.dir.join(file_name(number, SEGMENT_EXT)))
            .and_then(|()| remove_if_exists(&self.dir.join(file_name(number, ACK_EXT))));
        if let Err(e) = removed {
            tracing::warn!(error = %e, "forward queue: delivered segment not deleted");
        }
    }
}

/// The active segment is inserted in `segments` when it is created and removed from it
/// only after it stops being active, so this is unreachable; an error rather than a panic
/// all the same.
fn missing_active() -> WalError {
    WalError::Io {
        action: "find segment state",
        path: PathBuf::new(),
        source: io::Error::other("internal: segment state missing"),
    }
}

fn create_segment(dir: &Path, number: u64) -> Result<(File, u64), WalError> {
    let path = dir.join(file_name(number, SEGMENT_EXT));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err("create", &path))?;
    if let Err(e) = file.write_all_at(&encode_header(SEGMENT_MAGIC, number), 0) {
        drop(file);
        let _ = fs::remove_file(&path);
        return Err(io_err("write", &path)(e));
    }
    Ok((file, HEADER_LEN))
}

/// Recovers one segment file: its unacknowledged records go into `recovered`, damage is
/// cut off and counted. Returns its state, or `None` when it was deleted (nothing pending,
/// or nothing readable).
fn recover_segment(
    dir: &Path,
    number: u64,
    is_last: bool,
    recovered: &mut Recovered,
) -> Result<Option<Segment>, WalError> {
    let seg_path = dir.join(file_name(number, SEGMENT_EXT));
    let ack_path = dir.join(file_name(number, ACK_EXT));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg_path)
        .map_err(io_err("open", &seg_path))?;
    let file_len = file.metadata().map_err(io_err("stat", &seg_path))?.len();
    let delete = |recovered: &mut Recovered, lost: u64| -> Result<Option<Segment>, WalError> {
        if is_last {
            recovered.torn_tail_bytes += lost;
        } else {
            recovered.unreadable_bytes += lost;
        }
        remove_if_exists(&seg_path)?;
        remove_if_exists(&ack_path)?;
        Ok(None)
    };
    match read_header(&file, file_len, SEGMENT_MAGIC, number).map_err(io_err("read", &seg_path))? {
        Header::Valid => {}
        Header::Newer(version) => {
            return Err(WalError::UnsupportedVersion {
                path: seg_path,
                version,
            })
        }
        Header::Short => return delete(recovered, file_len),
        Header::Damaged => {
            tracing::warn!(path = %seg_path.display(), bytes = file_len, "forward queue: segment with a damaged header removed");
            return delete(recovered, file_len);
        }
    }

    let acks = recover_acks(&ack_path, number)?;
    let scan = scan_records(&file, file_len, number, is_last, &acks.offsets, &seg_path)?;
    recovered.records.extend(scan.records);
    let (pos, pending, corrupt) = (scan.end, scan.pending, scan.corrupt);
    if pos < file_len {
        let lost = file_len - pos;
        if is_last {
            recovered.torn_tail_bytes += lost;
        } else {
            tracing::warn!(path = %seg_path.display(), offset = pos, bytes = lost, "forward queue: unreadable rest of segment cut off");
            recovered.unreadable_bytes += lost;
        }
        truncate(&file, pos, &seg_path)?;
    }
    let mut segment = Segment {
        len: pos,
        pending,
        acks: AckFile {
            file: None,
            len: acks.len,
            dirty: false,
        },
        unsynced: None,
    };
    if !corrupt.is_empty() {
        tracing::warn!(path = %seg_path.display(), records = corrupt.len(), "forward queue: records with a bad checksum skipped");
        recovered.corrupt_records += corrupt.len() as u64;
        segment.acks.len = ack_corrupt_records(&ack_path, number, segment.acks.len, &corrupt)?;
    }
    if segment.pending.is_empty() {
        drop(file);
        remove_if_exists(&seg_path)?;
        remove_if_exists(&ack_path)?;
        return Ok(None);
    }
    Ok(Some(segment))
}

/// What the records of a segment file hold: the unacknowledged records, where they
/// stand, the unacknowledged records whose checksum is bad, and where the readable part
/// of the file ends.
struct SegmentScan {
    records: Vec<(RecordId, Vec<u8>)>,
    pending: HashSet<u64>,
    corrupt: Vec<u64>,
    end: u64,
}

/// Reads a segment's records from after its header until the file ends or the framing
/// can no longer be trusted; records whose offset is in `acked` are skipped.
fn scan_records(
    file: &File,
    file_len: u64,
    number: u64,
    is_last: bool,
    acked: &HashSet<u64>,
    seg_path: &Path,
) -> Result<SegmentScan, WalError> {
    let mut records = Vec::new();
    let mut pending = HashSet::new();
    let mut corrupt = Vec::new();
    let mut buf = Vec::new();
    let mut pos = HEADER_LEN;
    let read = io_err("read", seg_path);
    while pos < file_len {
        match read_frame(file, pos, file_len, &mut buf).map_err(&read)? {
            Frame::Valid { end } => {
                if !acked.contains(&pos) {
                    pending.insert(pos);
                    records.push((
                        RecordId {
                            segment: number,
                            offset: pos,
                        },
                        std::mem::take(&mut buf),
                    ));
                }
                pos = end;
            }
            Frame::BadChecksum { end } => {
                // Framing is trusted only if the length leads to another good record, or
                // to the exact end of a segment that was complete (not the last one).
                let intact = if end == file_len {
                    !is_last
                } else {
                    matches!(
                        read_frame(file, end, file_len, &mut buf).map_err(&read)?,
                        Frame::Valid { .. }
                    )
                };
                if !intact {
                    break;
                }
                if !acked.contains(&pos) {
                    corrupt.push(pos);
                }
                pos = end;
            }
            Frame::Untrusted => break,
        }
    }
    Ok(SegmentScan {
        records,
        pending,
        corrupt,
        end: pos,
    })
}

/// Acknowledges the `corrupt` records of segment `number` in its ack file (created when
/// `acks_len` is 0), so that they are counted once and do not keep the segment alive.
/// Returns the ack file's new length.
fn ack_corrupt_records(
    ack_path: &Path,
    number: u64,
    acks_len: u64,
    corrupt: &[u64],
) -> Result<u64, WalError> {
    let ack_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(ack_path)
        .map_err(io_err("open", ack_path))?;
    let write = io_err("write", ack_path);
    let mut bytes = Vec::with_capacity(corrupt.len() * ACK_ENTRY_LEN as usize);
    if acks_len == 0 {
        ack_file.set_len(0).map_err(io_err("truncate", ack_path))?;
        bytes.extend_from_slice(&encode_header(ACK_MAGIC, number));
    }
    for &offset in corrupt {
        bytes.extend_from_slice(&ack_entry(offset));
    }
    ack_file.write_all_at(&bytes, acks_len).map_err(&write)?;
    ack_file.sync_data().map_err(io_err("sync", ack_path))?;
    Ok(acks_len + bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    fn options(segment_bytes: u64) -> WalOptions {
        WalOptions { segment_bytes }
    }

    /// A self-describing payload: record number, length, then bytes derived from both, so
    /// that a recovered payload proves which record it is and that it is whole.
    fn payload(n: u64, len: usize) -> Vec<u8> {
        let len = len.max(12);
        let mut p = Vec::with_capacity(len);
        p.extend_from_slice(&n.to_le_bytes());
        p.extend_from_slice(&(len as u32).to_le_bytes());
        p.extend((12..len).map(|i| (n as usize).wrapping_mul(31).wrapping_add(i) as u8));
        p
    }

    /// The record number of a payload made by [`payload`], or `None` if it is not one.
    fn payload_number(p: &[u8]) -> Option<u64> {
        let n = u64::from_le_bytes(p.get(..8)?.try_into().ok()?);
        let len = u32::from_le_bytes(p.get(8..12)?.try_into().ok()?) as usize;
        (p.len() == len && payload(n, len) == p).then_some(n)
    }

    fn seg_path(dir: &Path, number: u64) -> PathBuf {
        dir.join(file_name(number, SEGMENT_EXT))
    }

    fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        v.sort();
        v
    }

    fn bytes_on_disk(dir: &Path) -> u64 {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name() != LOCK_FILE)
            .map(|e| e.metadata().unwrap().len())
            .sum()
    }

    fn copy_dir(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_name() != LOCK_FILE {
                fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    fn numbers(recovered: &Recovered) -> Vec<u64> {
        recovered
            .records
            .iter()
            .map(|(_, p)| payload_number(p).expect("a whole, known payload"))
            .collect()
    }

    fn flip_byte(path: &Path, at: u64) {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        b[0] ^= 0x40;
        f.write_all_at(&b, at).unwrap();
    }

    #[test]
    fn a_wal_can_move_to_another_thread_behind_a_mutex() {
        fn shareable<T: Send + Sync>() {}
        shareable::<std::sync::Mutex<Wal>>();
    }

    #[test]
    fn appended_records_come_back_after_reopen_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("q");
        let (mut wal, recovered) = Wal::open(&dir, WalOptions::default()).unwrap();
        assert_eq!(recovered, Recovered::default());
        let ids: Vec<RecordId> = (0..10)
            .map(|n| wal.append(&payload(n, 100 + n as usize * 50)).unwrap())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(wal.pending(), 10);
        assert_eq!(wal.disk_bytes(), bytes_on_disk(&dir));
        drop(wal);
        let (wal, recovered) = Wal::open(&dir, WalOptions::default()).unwrap();
        assert_eq!(numbers(&recovered), (0..10).collect::<Vec<_>>());
        let got: Vec<RecordId> = recovered.records.iter().map(|(id, _)| *id).collect();
        assert_eq!(got, ids);
        assert_eq!(
            (recovered.torn_tail_bytes, recovered.corrupt_records),
            (0, 0)
        );
        assert_eq!(wal.pending(), 10);
    }

    #[test]
    fn acked_records_do_not_come_back_whatever_the_ack_order() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut wal, _) = Wal::open(dir, options(1000)).unwrap();
        let ids: Vec<RecordId> = (0..20)
            .map(|n| wal.append(&payload(n, 90)).unwrap())
            .collect();
        // Out of order, across segments, with a duplicate ack.
        for n in [17, 3, 4, 11, 0, 19, 3, 8] {
            wal.ack(ids[n]).unwrap();
        }
        assert_eq!(wal.pending(), 13);
        drop(wal);
        let (mut wal, recovered) = Wal::open(dir, options(1000)).unwrap();
        let expected: Vec<u64> = (0..20)
            .filter(|n| ![17, 3, 4, 11, 0, 19, 8].contains(n))
            .collect();
        assert_eq!(numbers(&recovered), expected);
        // Recovered ids ack like any other; acks of ids gone (or never issued) do nothing.
        for (id, _) in &recovered.records {
            wal.ack(*id).unwrap();
        }
        wal.ack(ids[0]).unwrap();
        wal.ack(RecordId {
            segment: 999,
            offset: 24,
        })
        .unwrap();
        assert_eq!(wal.pending(), 0);
        drop(wal);
        let (_, recovered) = Wal::open(dir, options(1000)).unwrap();
        assert!(recovered.records.is_empty());
    }

    #[test]
    fn ids_after_reopen_never_collide_with_recovered_ids() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut seen = BTreeSet::new();
        let mut last = None;
        for round in 0..4u64 {
            let (mut wal, recovered) = Wal::open(dir, WalOptions::default()).unwrap();
            for (id, _) in &recovered.records {
                assert!(seen.contains(id));
            }
            for n in 0..5 {
                let id = wal.append(&payload(round * 10 + n, 40)).unwrap();
                assert!(seen.insert(id), "{id:?} issued twice");
                assert!(Some(id) > last, "ids increase across runs");
                last = Some(id);
                if n % 2 == 0 {
                    wal.ack(id).unwrap();
                }
            }
        }
        // Even after everything is acknowledged and deleted.
        let (mut wal, recovered) = Wal::open(dir, WalOptions::default()).unwrap();
        for (id, _) in recovered.records {
            wal.ack(id).unwrap();
        }
        drop(wal);
        let (mut wal, _) = Wal::open(dir, WalOptions::default()).unwrap();
        assert!(Some(wal.append(b"x").unwrap()) > last);
    }

    #[test]
    fn every_truncation_point_of_the_last_segment_recovers_exactly_the_whole_records() {
        let tmp = tempfile::tempdir().unwrap();
        let template = tmp.path().join("template");
        let (mut wal, _) = Wal::open(&template, WalOptions::default()).unwrap();
        let sizes = [12, 13, 40, 12, 100, 25];
        let ids: Vec<RecordId> = sizes
            .iter()
            .enumerate()
            .map(|(n, &len)| wal.append(&payload(n as u64, len)).unwrap())
            .collect();
        wal.ack(ids[2]).unwrap();
        let number = wal.active.number;
        drop(wal);
        let full = fs::metadata(seg_path(&template, number)).unwrap().len();
        let ends: Vec<u64> = ids
            .iter()
            .zip(sizes)
            .map(|(id, len)| id.offset + FRAME_HEADER_LEN + len as u64)
            .collect();
        for cut in 0..=full {
            let dir = tmp.path().join(format!("cut{cut}"));
            copy_dir(&template, &dir);
            let f = OpenOptions::new()
                .write(true)
                .open(seg_path(&dir, number))
                .unwrap();
            f.set_len(cut).unwrap();
            drop(f);
            let (mut wal, recovered) = Wal::open(&dir, WalOptions::default()).unwrap();
            let whole: Vec<u64> = (0..sizes.len() as u64)
                .filter(|&n| ends[n as usize] <= cut && n != 2)
                .collect();
            assert_eq!(numbers(&recovered), whole, "cut at {cut}");
            let good_end = ends.iter().copied().filter(|&e| e <= cut).max();
            let torn = match good_end {
                _ if cut < HEADER_LEN => cut,
                Some(end) => cut - end,
                None => cut - HEADER_LEN,
            };
            assert_eq!(recovered.torn_tail_bytes, torn, "cut at {cut}");
            assert_eq!(
                (recovered.corrupt_records, recovered.unreadable_bytes),
                (0, 0)
            );
            // Later appends work and come back after the recovered ones.
            wal.append(&payload(100, 30)).unwrap();
            drop(wal);
            let (_, again) = Wal::open(&dir, WalOptions::default()).unwrap();
            let mut expected = whole.clone();
            expected.push(100);
            assert_eq!(numbers(&again), expected, "cut at {cut}");
            assert_eq!(again.torn_tail_bytes, 0, "a torn tail is cut once");
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn a_flipped_payload_byte_in_a_middle_record_is_skipped_and_counted_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut wal, _) = Wal::open(dir, WalOptions::default()).unwrap();
        let ids: Vec<RecordId> = (0..5)
            .map(|n| wal.append(&payload(n, 200)).unwrap())
            .collect();
        drop(wal);
        flip_byte(&seg_path(dir, ids[2].segment), ids[2].offset + 100);
        let (wal, recovered) = Wal::open(dir, WalOptions::default()).unwrap();
        assert_eq!(numbers(&recovered), vec![0, 1, 3, 4]);
        assert_eq!(recovered.corrupt_records, 1);
        assert_eq!(
            (recovered.torn_tail_bytes, recovered.unreadable_bytes),
            (0, 0)
        );
        assert_eq!(wal.pending(), 4);
        drop(wal);
        let (_, again) = Wal::open(dir, WalOptions::default()).unwrap();
        assert_eq!(numbers(&again), vec![0, 1, 3, 4]);
        assert_eq!(again.corrupt_records, 0);
    }

    #[test]
    fn a_damaged_last_record_of_an_earlier_segment_is_corrupt_not_torn() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut wal, _) = Wal::open(dir, options(500)).unwrap();
        let ids: Vec<RecordId> = (0..6)
            .map(|n| wal.append(&payload(n, 200)).unwrap())
            .collect();
        assert_eq!(ids[1].segment, ids[0].segment);
        assert_ne!(ids[2].segment, ids[1].segment);
        drop(wal);
        flip_byte(&seg_path(dir, ids[1].segment), ids[1].offset + 50);
        let (_, recovered) = Wal::open(dir, options(500)).unwrap();
        assert_eq!(numbers(&recovered), vec![0, 2, 3, 4, 5]);
        assert_eq!(recovered.corrupt_records, 1);
        assert_eq!(recovered.torn_tail_bytes, 0);
    }

    #[test]
    fn a_damaged_length_in_an_earlier_segment_loses_only_the_rest_of_that_segment() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut wal, _) = Wal::open(dir, options(1000)).unwrap();
        let ids: Vec<RecordId> = (0..8)
            .map(|n| wal.append(&payload(n, 200)).unwrap())
            .collect();
        let first = ids[0].segment;
        assert_eq!(ids[3].segment, first);
        assert_ne!(ids[4].segment, first);
        drop(wal);
        // A length of 4 GiB: above the cap, so never allocated, and untrustworthy.
        let f = OpenOptions::new()
            .write(true)
            .open(seg_path(dir, first))
            .unwrap();
        f.write_all_at(&u32::MAX.to_le_bytes(), ids[1].offset)
            .unwrap();
        drop(f);
        let (_, recovered) = Wal::open(dir, options(1000)).unwrap();
        assert_eq!(numbers(&recovered), vec![0, 4, 5, 6, 7]);
        assert_eq!(recovered.unreadable_bytes, 3 * 208);
        assert_eq!(
            (recovered.torn_tail_bytes, recovered.corrupt_records),
            (0, 0)
        );
    }

    #[test]
    fn a_damaged_segment_header_drops_that_segment_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut wal, _) = Wal::open(dir, options(500)).unwrap();
        let ids: Vec<RecordId> = (0..6)
            .map(|n| wal.append(&payload(n, 200)).unwrap())
            .collect();
        drop(wal);
        flip_byte(&seg_path(dir, ids[2].segment), 3);
        let (_, recovered) = Wal::open(dir, options(500)).unwrap();
        assert_eq!(numbers(&recovered), vec![0, 1, 4, 5]);
        assert_eq!(recovered.unreadable_bytes, HEADER_LEN + 2 * 208);
    }

    #[test]
    fn a_newer_format_version_is_refused_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut wal, _) = Wal::open(dir, WalOptions::default()).unwrap();
        let id = wal.append(b"0123456789abcdef").unwrap();
        drop(wal);
        let path = seg_path(dir, id.segment);
        let mut header = encode_header(SEGMENT_MAGIC, id.segment);
        header[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32fast::hash(&header[..20]);
        header[20..].copy_from_slice(&crc.to_le_bytes());
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&header, 0).unwrap();
        drop(f);
        let err = Wal::open(dir, WalOptions::default()).unwrap_err();
        assert!(
            matches!(&err, WalError::UnsupportedVersion { path: p, version: 2 } if *p == path),
            "{err}"
        );
        assert!(path.exists());
    }

    #[test]
    fn a_torn_ack_entry_is_cut_so_later_acks_stay_aligned() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut wal, _) = Wal::open(dir, WalOptions::default()).unwrap();
        let ids: Vec<RecordId> = (0..4)
            .map(|n| wal.append(&payload(n, 50)).unwrap())
            .collect();
        wal.ack(ids[0]).unwrap();
        wal.ack(ids[1]).unwrap();
        drop(wal);
        let ack_path = dir.join(file_name(ids[0].segment, ACK_EXT));
        let f = OpenOptions::new().write(true).open(&ack_path).unwrap();
        // Half of the second entry lost: its record comes back.
        f.set_len(HEADER_LEN + ACK_ENTRY_LEN + 5).unwrap();
        drop(f);
        let (mut wal, recovered) = Wal::open(dir, WalOptions::default()).unwrap();
        assert_eq!(numbers(&recovered), vec![1, 2, 3]);
        wal.ack(ids[3]).unwrap();
        drop(wal);
        let (_, recovered) = Wal::open(dir, WalOptions::default()).unwrap();
        assert_eq!(numbers(&recovered), vec![1, 2]);
    }

    #[test]
    fn a_damaged_ack_entry_brings_its_record_back_and_orphan_ack_files_go() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut wal, _) = Wal::open(dir, WalOptions::default()).unwrap();
        let ids: Vec<RecordId> = (0..3)
            .map(|n| wal.append(&payload(n, 50)).unwrap())
            .collect();
        for id in &ids {
            wal.ack(*id).unwrap();
        }
        drop(wal);
        let ack_path = dir.join(file_name(ids[0].segment, ACK_EXT));
        flip_byte(&ack_path, HEADER_LEN + ACK_ENTRY_LEN + 2);
        let orphan = dir.join(file_name(ids[0].segment - 1, ACK_EXT));
        fs::write(&orphan, b"left behind").unwrap();
        let (_, recovered) = Wal::open(dir, WalOptions::default()).unwrap();
        assert_eq!(numbers(&recovered), vec![1]);
        assert!(!orphan.exists());
    }

    #[test]
    fn fully_acked_segments_are_deleted_and_disk_use_returns_to_one_segment() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let segment_bytes = 4096;
        let (mut wal, _) = Wal::open(dir, options(segment_bytes)).unwrap();
        let ids: Vec<RecordId> = (0..100)
            .map(|n| wal.append(&payload(n, 500)).unwrap())
            .collect();
        assert!(files(dir, SEGMENT_EXT).len() > 10);
        assert!(files(dir, SEGMENT_EXT)
            .iter()
            .all(|p| fs::metadata(p).unwrap().len() <= segment_bytes));
        assert_eq!(wal.disk_bytes(), bytes_on_disk(dir));
        // Acked newest first: no segment empties until its oldest record goes.
        for id in ids.iter().rev() {
            wal.ack(*id).unwrap();
            assert_eq!(wal.disk_bytes(), bytes_on_disk(dir));
        }
        assert_eq!(wal.pending(), 0);
        assert_eq!(
            files(dir, SEGMENT_EXT).len(),
            1,
            "only the segment being written"
        );
        assert!(wal.disk_bytes() <= segment_bytes + HEADER_LEN + 10 * ACK_ENTRY_LEN);
        wal.sync().unwrap();
    }

    #[test]
    fn a_segment_that_cannot_be_deleted_fails_no_ack_and_goes_at_the_next_open() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut wal, _) = Wal::open(dir, options(500)).unwrap();
        let ids: Vec<RecordId> = (0..3)
            .map(|n| wal.append(&payload(n, 200)).unwrap())
            .collect();
        let first = seg_path(dir, ids[0].segment);
        // A directory in its place: unlink fails even for root.
        let aside = dir.join("aside");
        fs::rename(&first, &aside).unwrap();
        fs::create_dir(&first).unwrap();
        fs::write(first.join("x"), b"x").unwrap();
        wal.ack(ids[0]).unwrap();
        wal.ack(ids[1]).unwrap();
        assert!(first.is_dir());
        drop(wal);
        fs::remove_dir_all(&first).unwrap();
        fs::rename(&aside, &first).unwrap();
        let (_, recovered) = Wal::open(dir, options(500)).unwrap();
        assert_eq!(numbers(&recovered), vec![2]);
        assert!(!first.exists());
    }

    #[test]
    fn ack_files_stay_bounded_over_many_cycles() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let segment_bytes = 2048;
        let (mut wal, _) = Wal::open(dir, options(segment_bytes)).unwrap();
        let mut n = 0;
        for cycle in 0..200 {
            let ids: Vec<RecordId> = (0..7)
                .map(|_| {
                    n += 1;
                    wal.append(&payload(n, 300)).unwrap()
                })
                .collect();
            for id in ids.iter().rev() {
                wal.ack(*id).unwrap();
            }
            if cycle % 50 == 0 {
                wal.sync().unwrap();
            }
            assert!(files(dir, SEGMENT_EXT).len() <= 1);
            assert!(files(dir, ACK_EXT).len() <= 1);
            // One segment and the acks of its at most six records.
            assert!(wal.disk_bytes() <= segment_bytes + HEADER_LEN + 6 * ACK_ENTRY_LEN);
            assert_eq!(wal.disk_bytes(), bytes_on_disk(dir));
        }
        assert_eq!(wal.open_ack_files, 1);
    }

    #[test]
    fn more_segments_than_open_ack_files_still_ack_durably() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        // One record a segment, two records per segment: 100 live segments.
        let (mut wal, _) = Wal::open(dir, options(300)).unwrap();
        let ids: Vec<RecordId> = (0..200)
            .map(|n| wal.append(&payload(n, 130)).unwrap())
            .collect();
        assert!(files(dir, SEGMENT_EXT).len() >= 100);
        for (n, id) in ids.iter().enumerate() {
            if n % 2 == 1 {
                wal.ack(*id).unwrap();
            }
        }
        assert!(wal.open_ack_files <= MAX_OPEN_ACK_FILES);
        wal.sync().unwrap();
        drop(wal);
        let (_, recovered) = Wal::open(dir, options(300)).unwrap();
        assert_eq!(numbers(&recovered), (0..200).step_by(2).collect::<Vec<_>>());
    }

    #[test]
    fn a_second_open_of_the_directory_is_refused_while_the_first_is_alive() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("q");
        let (mut wal, _) = Wal::open(&dir, WalOptions::default()).unwrap();
        wal.append(b"kept").unwrap();
        match Wal::open(&dir, WalOptions::default()) {
            Err(WalError::Locked { dir: d, lock }) => {
                assert_eq!(d, dir);
                assert_eq!(lock, dir.join("lock"));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(wal);
        let (_, recovered) = Wal::open(&dir, WalOptions::default()).unwrap();
        assert_eq!(recovered.records.len(), 1);
    }

    #[test]
    fn a_directory_that_cannot_be_created_is_named_in_the_error() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a-file");
        fs::write(&file, b"").unwrap();
        let dir = file.join("q");
        let err = Wal::open(&dir, WalOptions::default()).unwrap_err();
        assert!(
            matches!(&err, WalError::Io { path, .. } if *path == dir),
            "{err:?}"
        );
        assert!(err.to_string().contains(&dir.display().to_string()));
    }

    #[test]
    fn files_are_private_to_the_owner() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("q");
        let (mut wal, _) = Wal::open(&dir, WalOptions::default()).unwrap();
        let id = wal.append(b"x").unwrap();
        wal.ack(id).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o077;
        assert_eq!(mode(&dir), 0);
        for p in files(&dir, SEGMENT_EXT).iter().chain(&files(&dir, ACK_EXT)) {
            assert_eq!(mode(p), 0, "{}", p.display());
        }
    }

    #[test]
    fn a_record_above_the_cap_is_refused_and_nothing_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
        let before = wal.disk_bytes();
        let big = vec![0u8; MAX_RECORD_BYTES + 1];
        assert!(matches!(
            wal.append(&big),
            Err(WalError::RecordTooLarge { len }) if len == MAX_RECORD_BYTES + 1
        ));
        assert_eq!(wal.disk_bytes(), before);
        assert_eq!(wal.pending(), 0);
    }

    #[test]
    fn large_payloads_written_in_two_calls_come_back_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut wal, _) = Wal::open(dir, options(1 << 20)).unwrap();
        for (n, len) in [
            (0, SINGLE_WRITE_MAX),
            (1, SINGLE_WRITE_MAX + 1),
            (2, 3 << 20),
        ] {
            wal.append(&payload(n, len)).unwrap();
        }
        drop(wal);
        let (_, recovered) = Wal::open(dir, options(1 << 20)).unwrap();
        assert_eq!(numbers(&recovered), vec![0, 1, 2]);
    }

    const CRASH_DIR_ENV: &str = "FAULTLINE_WAL_CRASH_DIR";
    const CRASH_BASE_ENV: &str = "FAULTLINE_WAL_CRASH_BASE";
    const CRASH_SEGMENT_BYTES: u64 = 256 * 1024;

    /// Payload sizes of the crash writer: mostly small, some past [`SINGLE_WRITE_MAX`].
    fn crash_payload_len(n: u64) -> usize {
        if n % 40 == 7 {
            300 * 1024
        } else {
            100 + (n as usize * 7919) % 8000
        }
    }

    /// The child half of `a_killed_writer_loses_nothing_that_append_returned`: a no-op
    /// unless that test started this process. Appends numbered records forever, acking
    /// two of every three a few records later in a scrambled order, and reports each step
    /// on stdout: `WAL A n` after `append(n)` returned, `WAL k n` before `ack(n)` and
    /// `WAL K n` after it returned.
    #[test]
    fn crash_writer_child() {
        let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
            return;
        };
        let base: u64 = std::env::var(CRASH_BASE_ENV).unwrap().parse().unwrap();
        let (mut wal, _) = Wal::open(Path::new(&dir), options(CRASH_SEGMENT_BYTES)).unwrap();
        let mut window: Vec<(u64, RecordId)> = Vec::new();
        let mut rng = base | 1;
        // Bounded in case the parent dies without killing us.
        for n in base..base + 200_000 {
            let id = wal.append(&payload(n, crash_payload_len(n))).unwrap();
            println!("WAL A {n}");
            if n % 3 != 0 {
                window.push((n, id));
            }
            if window.len() >= 6 {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let (m, id) = window.swap_remove((rng >> 33) as usize % window.len());
                println!("WAL k {m}");
                wal.ack(id).unwrap();
                println!("WAL K {m}");
            }
            if n % 64 == 0 {
                wal.sync().unwrap();
            }
        }
    }

    /// What the crash writer reported before it was killed.
    #[derive(Default)]
    struct Observed {
        appended: BTreeSet<u64>,
        ack_started: BTreeSet<u64>,
        acked: BTreeSet<u64>,
    }

    impl Observed {
        fn record(&mut self, line: &str) {
            // libtest may print "test ... " on the same line before the first report.
            let Some(at) = line.find("WAL ") else {
                return;
            };
            let mut parts = line[at..].split(' ');
            parts.next();
            let (what, n) = (parts.next().unwrap(), parts.next().unwrap());
            let n: u64 = n.parse().unwrap();
            match what {
                "A" => self.appended.insert(n),
                "k" => self.ack_started.insert(n),
                _ => self.acked.insert(n),
            };
        }
    }

    /// A real crash: a child process appends and acks until it is killed with SIGKILL
    /// mid-stream, three times over one directory. Every record whose append returned in
    /// the child is recovered unless its ack returned, none is recovered twice or damaged,
    /// and nothing acked comes back.
    #[test]
    fn a_killed_writer_loses_nothing_that_append_returned() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("q");
        let exe = std::env::current_exe().unwrap();
        // Records known to be on disk and unacknowledged after the last recovery.
        let mut present: BTreeSet<u64> = BTreeSet::new();
        for round in 0..3u64 {
            let base = (round + 1) * 1_000_000;
            let mut child = Command::new(&exe)
                .args([
                    "--exact",
                    "forward::wal::tests::crash_writer_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CRASH_DIR_ENV, &dir)
                .env(CRASH_BASE_ENV, base.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
            let mut seen = Observed::default();
            // Kill at a different depth each round, after rotations and deletions.
            let kill_after = 700 + round as usize * 450;
            while seen.appended.len() < kill_after {
                let line = lines.next().expect("the writer stopped early").unwrap();
                seen.record(&line);
            }
            child.kill().unwrap();
            child.wait().unwrap();
            // What the child printed before it died was already returned to it.
            for line in lines {
                seen.record(&line.unwrap());
            }
            let Observed {
                appended,
                ack_started,
                acked,
            } = seen;
            let last = *appended.last().unwrap();
            let (wal, recovered) = Wal::open(&dir, options(CRASH_SEGMENT_BYTES)).unwrap();
            assert_eq!(
                (recovered.corrupt_records, recovered.unreadable_bytes),
                (0, 0),
                "a crash tears the tail only"
            );
            let got = numbers(&recovered);
            let got_set: BTreeSet<u64> = got.iter().copied().collect();
            assert_eq!(got.len(), got_set.len(), "a record recovered twice");
            assert!(got.windows(2).all(|w| w[0] < w[1]), "append order");
            for n in &present {
                assert!(
                    got_set.contains(n),
                    "round {round}: earlier record {n} lost"
                );
            }
            for n in &appended {
                if !ack_started.contains(n) {
                    assert!(got_set.contains(n), "round {round}: record {n} lost");
                }
            }
            for n in &got_set {
                assert!(
                    !acked.contains(n),
                    "round {round}: acked record {n} came back"
                );
                // Beyond what was printed: only the append under way at the kill.
                assert!(
                    present.contains(n) || appended.contains(n) || *n == last + 1,
                    "round {round}: unknown record {n}"
                );
            }
            assert_eq!(wal.pending(), got.len());
            assert!(present.len() < got.len(), "the round added records");
            present = got_set;
        }
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Append(usize),
            /// Acks the n-th record modulo those on disk, acknowledged or not (so acks
            /// repeat too).
            Ack(usize),
            Sync,
            Reopen,
            /// A crash cutting the last segment at this byte modulo its length + 1.
            CrashCut(u64),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => prop_oneof![0usize..300, 300usize..1500].prop_map(Op::Append),
                4 => any::<usize>().prop_map(Op::Ack),
                1 => Just(Op::Sync),
                1 => Just(Op::Reopen),
                1 => any::<u64>().prop_map(Op::CrashCut),
            ]
        }

        struct Record {
            id: RecordId,
            payload: Vec<u8>,
            acked: bool,
        }

        const SEGMENT_BYTES: u64 = 2048;

        fn reopen(dir: &Path, records: &[Record], torn: u64) -> Result<Wal, TestCaseError> {
            let (wal, recovered) = Wal::open(dir, options(SEGMENT_BYTES)).unwrap();
            let expected: Vec<(RecordId, Vec<u8>)> = records
                .iter()
                .filter(|r| !r.acked)
                .map(|r| (r.id, r.payload.clone()))
                .collect();
            prop_assert_eq!(&recovered.records, &expected);
            prop_assert_eq!(recovered.torn_tail_bytes, torn);
            prop_assert_eq!(
                (recovered.corrupt_records, recovered.unreadable_bytes),
                (0, 0)
            );
            Ok(wal)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]

            /// Random appends, acks, syncs, reopens and crashes that tear the tail,
            /// against an in-memory list of records: recovery returns exactly the
            /// unacknowledged whole records in append order, ids only grow, and the
            /// byte and pending counts match the files.
            #[test]
            fn the_wal_behaves_like_a_list_of_records(ops in proptest::collection::vec(op(), 1..60)) {
                let tmp = tempfile::tempdir().unwrap();
                let dir = tmp.path();
                let (mut wal, _) = Wal::open(dir, options(SEGMENT_BYTES)).unwrap();
                let mut records: Vec<Record> = Vec::new();
                let mut last_id = None;
                for (n, op) in ops.into_iter().enumerate() {
                    match op {
                        Op::Append(len) => {
                            let payload: Vec<u8> =
                                (0..len).map(|i| (n * 7 + i) as u8).collect();
                            let id = wal.append(&payload).unwrap();
                            prop_assert!(Some(id) > last_id);
                            last_id = Some(id);
                            records.push(Record { id, payload, acked: false });
                        }
                        Op::Ack(i) => {
                            if !records.is_empty() {
                                let i = i % records.len();
                                wal.ack(records[i].id).unwrap();
                                records[i].acked = true;
                            }
                        }
                        Op::Sync => wal.sync().unwrap(),
                        Op::Reopen => {
                            drop(wal);
                            wal = reopen(dir, &records, 0)?;
                        }
                        Op::CrashCut(at) => {
                            let last = wal.active.number;
                            drop(wal);
                            let path = seg_path(dir, last);
                            let len = fs::metadata(&path).unwrap().len();
                            let cut = at % (len + 1);
                            OpenOptions::new().write(true).open(&path).unwrap()
                                .set_len(cut).unwrap();
                            let end = |r: &Record| {
                                r.id.offset + FRAME_HEADER_LEN + r.payload.len() as u64
                            };
                            records.retain(|r| r.id.segment != last || end(r) <= cut);
                            let good_end = records
                                .iter()
                                .filter(|r| r.id.segment == last)
                                .map(end)
                                .max()
                                .unwrap_or(HEADER_LEN);
                            let torn = if cut < HEADER_LEN { cut } else { cut - good_end };
                            wal = reopen(dir, &records, torn)?;
                        }
                    }
                    let pending = records.iter().filter(|r| !r.acked).count();
                    prop_assert_eq!(wal.pending(), pending);
                    prop_assert_eq!(wal.disk_bytes(), bytes_on_disk(dir));
                }
            }
        }
    }
}
