//! The embedded state database, the default: one SQLite file (`--state PATH`, default
//! `faultline-data/state.db`), in WAL mode so that API reads never wait for the writer.
//!
//! Two connections: the writer's and the readers' (each behind a mutex; the writer
//! thread and the API's blocking pool are their only callers). Schema migrations
//! (`migrations/sqlite/`) run at open.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, params_from_iter, Connection, OptionalExtension, ToSql};

use crate::analysis::{Classification, Verdict};

use super::backend::{decode_verdict, Backend, BackendError, LoadedGroup, Retention, Row};
use super::fingerprints::{
    group_deltas, summary_from_record, Dimension, FingerprintSummary, GroupRecord,
    DURATION_SAMPLES, EXAMPLES,
};
use super::VerdictQuery;

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

/// How long a statement waits for a lock held by the other connection before it is an
/// `Unavailable` error (the writer retries).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The SQLite state database.
pub struct SqliteBackend {
    path: PathBuf,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

fn unavailable_or_rejected(e: rusqlite::Error) -> BackendError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            BackendError::Unavailable(e.to_string())
        }
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            BackendError::Corrupt(e.to_string())
        }
        _ => BackendError::Rejected(e.to_string()),
    }
}

/// Nanoseconds as SQLite's 64-bit integer (times before 2262 fit).
fn nanos(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Why a state file cannot be used, naming it and the fix.
fn open_error(path: &Path, what: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::Rejected(format!(
        "state file {}: {what}: {e} (fix or move the file away, or choose another with --state; --state memory keeps no state)",
        path.display()
    ))
}

impl SqliteBackend {
    /// Opens (creating it and its directory when missing) and migrates the database.
    ///
    /// # Errors
    /// The directory cannot be created, the file cannot be opened or written, is not a
    /// SQLite database, or holds a schema newer than this faultline knows.
    pub fn open(path: &Path) -> Result<SqliteBackend, BackendError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| open_error(path, "cannot create its directory", e))?;
        }
        let connect = || -> Result<Connection, BackendError> {
            let c = Connection::open(path).map_err(|e| open_error(path, "cannot open", e))?;
            c.busy_timeout(BUSY_TIMEOUT)
                .map_err(|e| open_error(path, "cannot configure", e))?;
            Ok(c)
        };
        let mut writer = connect()?;
        // The first statement reads the header: a file that is not a database fails here.
        writer
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .map_err(|e| open_error(path, "not a usable SQLite database", e))?;
        writer
            .execute_batch(
                "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY;",
            )
            .map_err(|e| open_error(path, "cannot configure", e))?;
        embedded::migrations::runner()
            .run(&mut writer)
            .map_err(|e| open_error(path, "schema migration failed", e))?;
        // A read-only file opens and migrates when nothing is left to migrate: find out now.
        writer
            .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .map_err(|e| open_error(path, "not writable", e))?;
        let reader = connect()?;
        Ok(SqliteBackend {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }

    /// The schema version the file is at.
    ///
    /// # Errors
    /// The database cannot be read.
    pub fn schema_version(&self) -> Result<i64, BackendError> {
        self.read()
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM refinery_schema_history",
                [],
                |r| r.get(0),
            )
            .map_err(unavailable_or_rejected)
    }

    fn read(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_conn(&self) -> MutexGuard<'_, Connection> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Inserts the rows not stored yet; returns the verdicts that were new.
fn insert_verdicts(
    tx: &rusqlite::Transaction<'_>,
    rows: &[Row],
) -> Result<Vec<std::sync::Arc<Verdict>>, rusqlite::Error> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO verdicts (trace_id, entry_span_id, ordinal, analyzed_at, entry_start, service, \
         route, classification, fingerprint_id, budget_ms, body, origin_service) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
         ON CONFLICT (trace_id, entry_span_id) DO NOTHING",
    )?;
    let mut new = Vec::with_capacity(rows.len());
    for row in rows {
        let v = &row.verdict;
        let inserted = insert.execute(params![
            v.trace_id,
            v.entry.span_id,
            row.ordinal,
            nanos(v.analyzed_at_unix_nano),
            nanos(v.entry.start_unix_nano),
            v.entry.service,
            v.entry.route,
            v.classification.as_str(),
            v.fingerprint_id,
            v.budget_ms,
            row.body(),
            row.origin_service(),
        ])?;
        if inserted == 1 {
            new.push(std::sync::Arc::clone(v));
        }
    }
    Ok(new)
}

/// Adds the new verdicts to their groups.
fn upsert_groups(
    tx: &rusqlite::Transaction<'_>,
    new: &[std::sync::Arc<Verdict>],
) -> Result<(), rusqlite::Error> {
    let mut group = tx.prepare_cached(
        "INSERT INTO fingerprints (fingerprint_id, fingerprint, classification, count, first_seen, \
         last_seen, first_release) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (fingerprint_id) DO UPDATE SET \
           count = count + excluded.count, \
           fingerprint = CASE WHEN excluded.first_seen < first_seen THEN excluded.fingerprint ELSE fingerprint END, \
           first_release = CASE WHEN excluded.first_seen < first_seen THEN excluded.first_release ELSE first_release END, \
           first_seen = min(first_seen, excluded.first_seen), \
           classification = CASE WHEN excluded.last_seen >= last_seen THEN excluded.classification ELSE classification END, \
           last_seen = max(last_seen, excluded.last_seen)",
    )?;
    let mut value = tx.prepare_cached(
        "INSERT INTO fingerprint_values (fingerprint_id, dimension, value, count) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (fingerprint_id, dimension, value) DO UPDATE SET count = count + excluded.count",
    )?;
    for (id, g) in group_deltas(new.iter().map(|v| &**v)) {
        group.execute(params![
            id,
            g.fingerprint,
            g.classification.as_str(),
            nanos(g.count),
            nanos(g.first_seen_unix_nano),
            nanos(g.last_seen_unix_nano),
            g.first_release,
        ])?;
        for (d, v, n) in &g.values {
            value.execute(params![id, d.as_str(), v, nanos(*n)])?;
        }
    }
    Ok(())
}

/// The WHERE clause and parameters of a verdict query.
fn where_clause(q: &VerdictQuery) -> (String, Vec<Box<dyn ToSql>>) {
    let mut clauses: Vec<&str> = Vec::new();
    let mut args: Vec<Box<dyn ToSql>> = Vec::new();
    let mut text = |clause: &'static str, v: &Option<String>, args: &mut Vec<Box<dyn ToSql>>| {
        if let Some(v) = v {
            clauses.push(clause);
            args.push(Box::new(v.clone()));
        }
    };
    text("service = ?", &q.service, &mut args);
    text("route = ?", &q.route, &mut args);
    text("origin_service = ?", &q.origin_service, &mut args);
    if let Some(f) = &q.fingerprint {
        clauses.push(
            "(fingerprint_id = ? OR fingerprint_id IN (SELECT fingerprint_id FROM fingerprints WHERE fingerprint = ?))",
        );
        args.push(Box::new(f.clone()));
        args.push(Box::new(f.clone()));
    }
    if let Some(c) = q.classification {
        clauses.push("classification = ?");
        args.push(Box::new(c.as_str()));
    }
    if let Some(t) = q.since_unix_nano {
        clauses.push("analyzed_at >= ?");
        args.push(Box::new(nanos(t)));
    }
    if let Some(t) = q.until_unix_nano {
        clauses.push("analyzed_at < ?");
        args.push(Box::new(nanos(t)));
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    (sql, args)
}

fn group_record(conn: &Connection, id: &str) -> Result<Option<LoadedGroup>, BackendError> {
    let head = conn
        .query_row(
            "SELECT fingerprint, classification, count, first_seen, last_seen, first_release \
             FROM fingerprints WHERE fingerprint_id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            },
        )
        .optional()
        .map_err(unavailable_or_rejected)?;
    let Some((fingerprint, class, count, first, last, first_release)) = head else {
        return Ok(None);
    };
    let classification = Classification::parse(&class).ok_or_else(|| {
        BackendError::Corrupt(format!("fingerprint {id}: classification {class:?}"))
    })?;
    let mut values = Vec::new();
    let mut stmt = conn
        .prepare_cached(
            "SELECT dimension, value, count FROM fingerprint_values WHERE fingerprint_id = ?1",
        )
        .map_err(unavailable_or_rejected)?;
    let rows = stmt
        .query_map([id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(unavailable_or_rejected)?;
    for row in rows {
        let (d, v, n) = row.map_err(unavailable_or_rejected)?;
        // A dimension a newer faultline added is skipped, not fatal.
        if let Some(d) = Dimension::parse(&d) {
            values.push((d, v, unsigned(n)));
        }
    }
    let mut durations = Vec::new();
    let mut examples = Vec::new();
    let mut stmt = conn
        .prepare_cached(
            "SELECT budget_ms, trace_id FROM verdicts WHERE fingerprint_id = ?1 \
             ORDER BY analyzed_at DESC LIMIT ?2",
        )
        .map_err(unavailable_or_rejected)?;
    let rows = stmt
        .query_map(params![id, DURATION_SAMPLES as i64], |r| {
            Ok((r.get::<_, f64>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(unavailable_or_rejected)?;
    for row in rows {
        let (d, t) = row.map_err(unavailable_or_rejected)?;
        durations.push(d);
        if examples.len() < EXAMPLES && !examples.contains(&t) {
            examples.push(t);
        }
    }
    let record = GroupRecord {
        fingerprint,
        classification,
        count: unsigned(count),
        first_seen_unix_nano: unsigned(first),
        last_seen_unix_nano: unsigned(last),
        first_release,
        values,
    };
    Ok(Some(LoadedGroup {
        fingerprint_id: id.to_string(),
        record,
        durations_ms: durations,
        examples,
    }))
}

fn summary(g: LoadedGroup) -> FingerprintSummary {
    summary_from_record(&g.fingerprint_id, &g.record, &g.durations_ms, &g.examples)
}

/// Runs `delete` (which must hold `LIMIT ?1`) until it deletes fewer than `batch` rows.
fn delete_in_batches(
    conn: &Connection,
    delete: &str,
    batch: u64,
    bound: i64,
) -> Result<u64, BackendError> {
    let mut total = 0u64;
    loop {
        let n = conn
            .execute(delete, params![nanos(batch), bound])
            .map_err(unavailable_or_rejected)? as u64;
        total += n;
        if n < batch {
            return Ok(total);
        }
    }
}

impl Backend for SqliteBackend {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn shared(&self) -> bool {
        false
    }

    fn write(&self, rows: &[Row]) -> Result<usize, BackendError> {
        let mut conn = self.write_conn();
        let tx = conn.transaction().map_err(unavailable_or_rejected)?;
        let new = insert_verdicts(&tx, rows).map_err(unavailable_or_rejected)?;
        upsert_groups(&tx, &new).map_err(unavailable_or_rejected)?;
        tx.commit().map_err(unavailable_or_rejected)?;
        Ok(new.len())
    }

    fn verdict(&self, trace_id: &str) -> Result<Option<Verdict>, BackendError> {
        let row = self
            .read()
            .query_row(
                "SELECT body, analyzed_at, entry_start FROM verdicts WHERE trace_id = ?1 \
                 ORDER BY ordinal LIMIT 1",
                [trace_id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(unavailable_or_rejected)?;
        row.map(|(body, at, start)| decode_verdict(&body, unsigned(at), unsigned(start)))
            .transpose()
    }

    fn verdicts(&self, q: &VerdictQuery) -> Result<Vec<Verdict>, BackendError> {
        let (clause, mut args) = where_clause(q);
        args.push(Box::new(i64::try_from(q.limit).unwrap_or(i64::MAX)));
        let sql = format!(
            "SELECT body, analyzed_at, entry_start FROM verdicts {clause} \
             ORDER BY analyzed_at DESC, trace_id DESC, ordinal DESC LIMIT ?"
        );
        let conn = self.read();
        let mut stmt = conn.prepare_cached(&sql).map_err(unavailable_or_rejected)?;
        let rows = stmt
            .query_map(params_from_iter(args.iter()), |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(unavailable_or_rejected)?;
        let mut out = Vec::new();
        for row in rows {
            let (body, at, start) = row.map_err(unavailable_or_rejected)?;
            out.push(decode_verdict(&body, unsigned(at), unsigned(start))?);
        }
        Ok(out)
    }

    fn group(&self, fingerprint_id: &str) -> Result<Option<FingerprintSummary>, BackendError> {
        Ok(group_record(&self.read(), fingerprint_id)?.map(summary))
    }

    fn groups(
        &self,
        service: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FingerprintSummary>, BackendError> {
        let conn = self.read();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let ids: Vec<String> = match service {
            None => {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT fingerprint_id FROM fingerprints ORDER BY count DESC, fingerprint_id LIMIT ?1",
                    )
                    .map_err(unavailable_or_rejected)?;
                let ids = stmt
                    .query_map([limit], |r| r.get(0))
                    .map_err(unavailable_or_rejected)?
                    .collect::<Result<_, _>>()
                    .map_err(unavailable_or_rejected)?;
                ids
            }
            Some(s) => {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT f.fingerprint_id FROM fingerprints f JOIN fingerprint_values v \
                         ON v.fingerprint_id = f.fingerprint_id AND v.dimension = 'service' AND v.value = ?1 \
                         ORDER BY f.count DESC, f.fingerprint_id LIMIT ?2",
                    )
                    .map_err(unavailable_or_rejected)?;
                let ids = stmt
                    .query_map(params![s, limit], |r| r.get(0))
                    .map_err(unavailable_or_rejected)?
                    .collect::<Result<_, _>>()
                    .map_err(unavailable_or_rejected)?;
                ids
            }
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(g) = group_record(&conn, &id)? {
                out.push(summary(g));
            }
        }
        Ok(out)
    }

    fn load_groups(&self, limit: usize) -> Result<Vec<LoadedGroup>, BackendError> {
        let conn = self.read();
        let ids: Vec<String> = {
            let mut stmt = conn
                .prepare("SELECT fingerprint_id FROM fingerprints ORDER BY last_seen DESC LIMIT ?1")
                .map_err(unavailable_or_rejected)?;
            let ids = stmt
                .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| r.get(0))
                .map_err(unavailable_or_rejected)?
                .collect::<Result<_, _>>()
                .map_err(unavailable_or_rejected)?;
            ids
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.extend(group_record(&conn, &id)?);
        }
        Ok(out)
    }

    fn prune(&self, r: &Retention) -> Result<u64, BackendError> {
        let conn = self.write_conn();
        let mut deleted = delete_in_batches(
            &conn,
            "DELETE FROM verdicts WHERE rowid IN \
             (SELECT rowid FROM verdicts WHERE analyzed_at < ?2 LIMIT ?1)",
            r.batch,
            nanos(r.cutoff_unix_nano),
        )?;
        // The newest `max_verdicts` are kept: everything older than the one at that rank.
        let boundary: Option<i64> = conn
            .query_row(
                "SELECT analyzed_at FROM verdicts ORDER BY analyzed_at DESC LIMIT 1 OFFSET ?1",
                [nanos(r.max_verdicts)],
                |row| row.get(0),
            )
            .optional()
            .map_err(unavailable_or_rejected)?;
        if let Some(b) = boundary {
            deleted += delete_in_batches(
                &conn,
                "DELETE FROM verdicts WHERE rowid IN \
                 (SELECT rowid FROM verdicts WHERE analyzed_at <= ?2 LIMIT ?1)",
                r.batch,
                b,
            )?;
        }
        let oldest_group: Option<i64> = conn
            .query_row(
                "SELECT last_seen FROM fingerprints ORDER BY last_seen DESC LIMIT 1 OFFSET ?1",
                [nanos(r.max_groups)],
                |row| row.get(0),
            )
            .optional()
            .map_err(unavailable_or_rejected)?;
        if let Some(b) = oldest_group {
            conn.execute(
                "DELETE FROM fingerprint_values WHERE fingerprint_id IN \
                 (SELECT fingerprint_id FROM fingerprints WHERE last_seen <= ?1)",
                [b],
            )
            .map_err(unavailable_or_rejected)?;
            conn.execute("DELETE FROM fingerprints WHERE last_seen <= ?1", [b])
                .map_err(unavailable_or_rejected)?;
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::fingerprints::FingerprintIndex;
    use crate::store::testing::failing;

    fn rows(verdicts: Vec<Verdict>) -> Vec<Row> {
        verdicts
            .into_iter()
            .enumerate()
            .map(|(i, v)| Row {
                verdict: Arc::new(v),
                ordinal: i as u32,
            })
            .collect()
    }

    fn open_temp() -> (tempfile::TempDir, SqliteBackend) {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteBackend::open(&dir.path().join("state.db")).unwrap();
        (dir, db)
    }

    fn all(limit: usize) -> VerdictQuery {
        VerdictQuery {
            limit,
            ..Default::default()
        }
    }

    #[test]
    fn a_verdict_reads_back_as_the_api_serves_it() {
        let (_dir, db) = open_temp();
        let v = failing(1, "r1", "acme", 10, 1_000).remove(0);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(db.write(&rows(vec![v.clone()])).unwrap(), 1);
        let back = db.verdict(&v.trace_id).unwrap().expect("stored");
        assert_eq!(serde_json::to_value(&back).unwrap(), json);
        assert_eq!(back.analyzed_at_unix_nano, 1_000);
        assert_eq!(back.entry.start_unix_nano, v.entry.start_unix_nano);
        assert!(db.verdict(&"0".repeat(32)).unwrap().is_none());
    }

    #[test]
    fn a_resent_verdict_is_not_counted_twice() {
        let (_dir, db) = open_temp();
        let v = failing(1, "r1", "acme", 10, 1_000);
        assert_eq!(db.write(&rows(v.clone())).unwrap(), 1);
        assert_eq!(db.write(&rows(v)).unwrap(), 0);
        let groups = db.groups(None, 10).unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].count, 1);
        assert_eq!(db.verdicts(&all(10)).unwrap().len(), 1);
    }

    #[test]
    fn groups_read_back_equal_to_the_memory_index() {
        let (_dir, db) = open_temp();
        let mut memory = FingerprintIndex::default();
        let mut written = Vec::new();
        // Two releases, two tenants, written in two batches, out of time order.
        for (t, release, tenant, at) in [
            (1u8, "r2", "acme", 3_000u64),
            (2, "r1", "legacy", 1_000),
            (3, "r2", "acme", 2_000),
            (4, "r2", "acme", 4_000),
        ] {
            let v = failing(t, release, tenant, 10, at).remove(0);
            written.push(v);
        }
        let mut sorted = written.clone();
        sorted.sort_by_key(|v| v.analyzed_at_unix_nano);
        for v in sorted {
            memory.record(v);
        }
        db.write(&rows(written[..2].to_vec())).unwrap();
        db.write(&rows(written[2..].to_vec())).unwrap();
        let id = written[0].fingerprint_id.clone().unwrap();
        let from_db = db.group(&id).unwrap().expect("group");
        let from_memory = memory.summary_of(&id).unwrap();
        assert_eq!(from_db.count, 4);
        assert_eq!(
            from_db.first_release.as_deref(),
            Some("r1"),
            "the earliest occurrence's"
        );
        assert_eq!(from_db.first_seen, from_memory.first_seen);
        assert_eq!(from_db.last_seen, from_memory.last_seen);
        assert_eq!(from_db.releases, from_memory.releases);
        assert_eq!(from_db.routes, from_memory.routes);
        assert_eq!(from_db.top_cohort, from_memory.top_cohort);
        assert_eq!(from_db.duration, from_memory.duration);
        assert_eq!(from_db.example_trace_ids, from_memory.example_trace_ids);
        assert_eq!(db.groups(Some("orders"), 10).unwrap().len(), 1);
        assert!(db.groups(Some("billing"), 10).unwrap().is_empty());
    }

    #[test]
    fn each_filter_narrows_the_list_newest_first() {
        let (_dir, db) = open_temp();
        db.write(&rows(failing(1, "r1", "a", 10, 100))).unwrap();
        db.write(&rows(failing(2, "r1", "b", 10, 200))).unwrap();
        let n = |f: fn(&mut VerdictQuery)| {
            let mut q = all(10);
            f(&mut q);
            db.verdicts(&q).unwrap().len()
        };
        assert_eq!(n(|_| {}), 2);
        assert_eq!(n(|q| q.service = Some("orders".into())), 2);
        assert_eq!(n(|q| q.service = Some("billing".into())), 0);
        assert_eq!(n(|q| q.route = Some("/checkout".into())), 2);
        assert_eq!(n(|q| q.route = Some("/cart".into())), 0);
        assert_eq!(n(|q| q.origin_service = Some("orders".into())), 2);
        assert_eq!(n(|q| q.origin_service = Some("billing".into())), 0);
        assert_eq!(
            n(|q| q.classification = Some(Classification::LateDependencyFailure)),
            0
        );
        assert_eq!(n(|q| q.since_unix_nano = Some(150)), 1);
        assert_eq!(n(|q| q.until_unix_nano = Some(150)), 1);
        assert_eq!(n(|q| q.limit = 1), 1);
        let listed = db.verdicts(&all(10)).unwrap();
        assert_eq!(listed[0].analyzed_at_unix_nano, 200, "newest first");
        let v = &listed[0];
        let by_id = |f: &str| {
            db.verdicts(&VerdictQuery {
                fingerprint: Some(f.to_string()),
                ..all(10)
            })
            .unwrap()
            .len()
        };
        assert_eq!(by_id(v.fingerprint_id.as_deref().unwrap()), 2);
        assert_eq!(by_id(v.fingerprint.as_deref().unwrap()), 2);
        assert_eq!(by_id("nope"), 0);
    }

    #[test]
    fn retention_deletes_by_age_then_by_count_and_forgets_the_stalest_groups() {
        let (_dir, db) = open_temp();
        for t in 1..=6u8 {
            // Distinct lines are one group; distinct exception messages are not needed:
            // groups are bounded separately below.
            db.write(&rows(failing(t, "r1", "a", 10, u64::from(t) * 100)))
                .unwrap();
        }
        let keep_all = Retention {
            cutoff_unix_nano: 250,
            max_verdicts: 100,
            max_groups: 100,
            batch: 1,
        };
        assert_eq!(
            db.prune(&keep_all).unwrap(),
            2,
            "t=100 and t=200 are too old"
        );
        let by_count = Retention {
            max_verdicts: 2,
            ..keep_all
        };
        assert_eq!(db.prune(&by_count).unwrap(), 2);
        let left: Vec<u64> = db
            .verdicts(&all(10))
            .unwrap()
            .iter()
            .map(|v| v.analyzed_at_unix_nano)
            .collect();
        assert_eq!(left, vec![600, 500], "the newest kept");
        assert_eq!(
            db.groups(None, 10).unwrap()[0].count,
            6,
            "history outlives verdicts"
        );
        let no_groups = Retention {
            max_groups: 0,
            ..by_count
        };
        db.prune(&no_groups).unwrap();
        assert!(db.groups(None, 10).unwrap().is_empty());
    }

    #[test]
    fn a_schema_1_file_is_upgraded_and_its_rows_gain_their_origin_service() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let v = failing(7, "r1", "a", 10, 500).remove(0);
        {
            let mut c = Connection::open(&path).unwrap();
            embedded::migrations::runner()
                .set_target(refinery::Target::Version(1))
                .run(&mut c)
                .unwrap();
            c.execute(
                "INSERT INTO verdicts (trace_id, entry_span_id, ordinal, analyzed_at, entry_start, \
                 service, route, classification, fingerprint_id, budget_ms, body) \
                 VALUES (?1, ?2, 0, 500, 0, 'orders', '/checkout', ?3, ?4, 50.0, ?5)",
                params![
                    v.trace_id,
                    v.entry.span_id,
                    v.classification.as_str(),
                    v.fingerprint_id,
                    serde_json::to_string(&v).unwrap()
                ],
            )
            .unwrap();
        }
        let db = SqliteBackend::open(&path).unwrap();
        assert_eq!(db.schema_version().unwrap(), 2);
        let by_origin = db
            .verdicts(&VerdictQuery {
                origin_service: Some("orders".into()),
                ..all(10)
            })
            .unwrap();
        assert_eq!(by_origin.len(), 1);
        assert_eq!(by_origin[0].trace_id, v.trace_id);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        let err = SqliteBackend::open(&path)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("not a usable SQLite database"), "{err}");
        // A directory that cannot be created (its parent is a file).
        let blocked = dir.path().join("state.db").join("inner.db");
        let err = SqliteBackend::open(&blocked)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("cannot create its directory"), "{err}");
    }
}
