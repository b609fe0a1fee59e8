//! The on-disk forward queue (`--forward-queue-dir`): the queue's [`Journal`] over the
//! write-ahead log in [`super::wal`].

use std::path::Path;

use super::queue::{Journal, JournalId, Recovered};
use super::wal::{RecordId, Wal, WalOptions};

impl Journal for Wal {
    fn append(&mut self, payload: &[u8]) -> Result<JournalId, String> {
        let id = Wal::append(self, payload).map_err(|e| e.to_string())?;
        Ok(JournalId(id.segment(), id.offset()))
    }

    fn ack(&mut self, id: JournalId) -> Result<(), String> {
        Wal::ack(self, RecordId::from_parts(id.0, id.1)).map_err(|e| e.to_string())
    }

    fn sync(&mut self) -> Result<(), String> {
        Wal::sync(self).map_err(|e| e.to_string())
    }

    fn disk_bytes(&self) -> u64 {
        Wal::disk_bytes(self)
    }
}

/// Opens the on-disk queue in `dir`, returning the journal and the records a previous
/// process left undelivered, in the order they were queued. Damage found on the way
/// (a torn last record, corrupt records) is logged: what it held is lost, the rest is sent.
///
/// # Errors
/// The directory cannot be created, locked (another faultline uses it) or read.
pub fn open(dir: &Path) -> anyhow::Result<(Box<dyn Journal>, Recovered)> {
    let (wal, recovered) = Wal::open(dir, WalOptions::default())
        .map_err(|e| anyhow::anyhow!("--forward-queue-dir {}: {e}", dir.display()))?;
    if recovered.torn_tail_bytes > 0
        || recovered.corrupt_records > 0
        || recovered.unreadable_bytes > 0
    {
        tracing::warn!(
            torn_tail_bytes = recovered.torn_tail_bytes,
            corrupt_records = recovered.corrupt_records,
            unreadable_bytes = recovered.unreadable_bytes,
            "the on-disk forward queue was damaged; the intact records are sent"
        );
    }
    let records = recovered
        .records
        .into_iter()
        .map(|(id, payload)| (JournalId(id.segment(), id.offset()), payload))
        .collect();
    Ok((Box::new(wal), records))
}
