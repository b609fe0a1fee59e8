//! The on-disk forward queue (`--forward-queue-dir`): the queue's [`Journal`] over the
//! write-ahead log in `wal`.

use std::path::Path;

use super::queue::{Journal, JournalId};

/// Opens the on-disk queue in `dir`, returning the journal and the records a previous
/// process left undelivered, in the order they were queued.
///
/// # Errors
/// The directory cannot be created, locked or read.
#[allow(clippy::type_complexity)]
pub fn open(dir: &Path) -> anyhow::Result<(Box<dyn Journal>, Vec<(JournalId, Vec<u8>)>)> {
    anyhow::bail!(
        "--forward-queue-dir {}: the on-disk queue is not available in this build",
        dir.display()
    )
}
