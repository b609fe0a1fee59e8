//! The shared state database: PostgreSQL, for a fleet of replicas that write the same
//! verdicts and fingerprint groups (`--state postgres://…`).
//!
//! Two connections, the writer's and the readers' (each behind a mutex; the writer thread
//! and the API's blocking pool are their only callers), each opened again on first use
//! after it was lost, so a database restart needs no faultline restart. Schema
//! migrations (`migrations/postgres/`) run at connect, under an advisory lock so that
//! replicas starting together do not race each other through them.
//!
//! A batch is one transaction of three statements whatever its size (up to
//! [`CHUNK`] rows each): the verdicts as arrays through `unnest`, then the groups and their
//! values, upserted by adding counts (`count = count + excluded.count`), which PostgreSQL
//! applies atomically to the row as committed by other replicas, so no count is lost.
//! Rows are upserted in key order, the same on every replica, so two replicas writing
//! the same groups wait for each other instead of deadlocking.
//!
//! Depends on the analysis types and the store's own modules only.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, IsolationLevel, NoTls};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::analysis::{Classification, Verdict};

use super::backend::{decode_verdict, Backend, BackendError, LoadedGroup, Retention, Row};
use super::fingerprints::{
    group_deltas, summary_from_record, Dimension, FingerprintSummary, GroupRecord,
    DURATION_SAMPLES, EXAMPLES,
};
use super::VerdictQuery;

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// How long opening a TCP connection may take when the URL sets no `connect_timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long sent data may stay unacknowledged before the connection counts as lost (a
/// database host that vanished, a network partition), when the URL sets no
/// `tcp_user_timeout`.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);

/// Most rows one statement carries (each column is one array parameter).
pub const CHUNK: usize = 5_000;

/// The advisory lock key held while migrating (`faultline` in ASCII, as a bigint).
const MIGRATION_LOCK: i64 = 0x6661_756c_746c_696e;

/// The PostgreSQL state database.
///
/// # Blocking
/// The `postgres` client is the blocking face of tokio-postgres: each connection drives a
/// tokio runtime of its own inside every call. Call this type's methods from plain
/// threads (the state writer) or `tokio::task::spawn_blocking`, never from async code: on
/// a runtime worker they would block the worker, and tokio refuses to start a runtime
/// inside another (it panics). Dropping it drops those runtimes, which tokio also refuses
/// on a runtime's thread: drop the last handle on a plain thread too.
///
/// # Timeouts
/// Opening a connection is bounded by the URL's `connect_timeout` (default
/// [`CONNECT_TIMEOUT`]) and a lost peer by `tcp_user_timeout`; a server that accepts
/// connections but never answers (a stopped process) is not bounded.
pub struct PostgresBackend {
    config: postgres::Config,
    tls: Tls,
    location: String,
    writer: Mutex<Option<Client>>,
    reader: Mutex<Option<Client>>,
}

/// How connections are secured.
enum Tls {
    /// `sslmode=disable`.
    Off,
    /// `sslmode=prefer` (the default) or `require`: TLS through rustls, the server's
    /// certificate verified against the given CA or the web PKI roots.
    Rustls(MakeRustlsConnect),
}

/// What a database call failed with, before it becomes a [`BackendError`]: the driver's
/// error (whose kind also says whether the connection is still usable) or a decoding one.
enum Failure {
    Db(postgres::Error),
    Backend(BackendError),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Self {
        Failure::Db(e)
    }
}

impl From<BackendError> for Failure {
    fn from(e: BackendError) -> Self {
        Failure::Backend(e)
    }
}

/// The driver's error with the server's message, SQLSTATE and cause.
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{db} (SQLSTATE {})", db.code().code()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// True for the SQLSTATEs worth retrying: connection exceptions (class 08), serialization
/// failure and deadlock (40001, 40P01), operator intervention (57P01-57P03: the server
/// shutting down or starting), insufficient resources (class 53: too many connections,
/// out of memory, disk full).
fn transient(code: &SqlState) -> bool {
    let c = code.code();
    c.starts_with("08")
        || c.starts_with("53")
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
}

/// A rustls error under the driver's error: a certificate that does not verify, a
/// handshake the server refuses. Retrying does not help.
fn is_tls_failure(e: &postgres::Error) -> bool {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

/// The error of a statement on an open connection.
fn statement_error(e: &postgres::Error, connection_lost: bool) -> BackendError {
    let message = describe(e);
    match e.code() {
        Some(code) if transient(code) => BackendError::Unavailable(message),
        Some(_) => BackendError::Rejected(message),
        // Not an answer from the server: the connection broke under the statement.
        None if connection_lost || e.is_closed() => BackendError::Unavailable(message),
        // A parameter or column the driver could not convert.
        None => BackendError::Rejected(message),
    }
}

/// The error of opening a connection: anything but an answer refusing us (wrong password,
/// no such database) or a TLS failure is worth retrying.
fn connect_error(location: &str, e: &postgres::Error) -> BackendError {
    let message = format!("PostgreSQL at {location}: {}", describe(e));
    match e.code() {
        Some(code) if transient(code) => BackendError::Unavailable(message),
        Some(_) => BackendError::Rejected(message),
        None if is_tls_failure(e) => BackendError::Rejected(message),
        None => BackendError::Unavailable(message),
    }
}

/// Nanoseconds as PostgreSQL's BIGINT (times before 2262 fit).
fn nanos(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A column that does not decode: the row is not what this faultline wrote.
fn corrupt(what: &str, e: postgres::Error) -> Failure {
    Failure::Backend(BackendError::Corrupt(format!("{what}: {}", describe(&e))))
}

/// `host:port/dbname` of the configuration, without user or password.
fn location_of(config: &postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            // One port for every host, or one per host (libpq's rule).
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match h {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}:{port}", dir.display()),
            }
        })
        .collect();
    // Without `dbname` the server takes the user's name (libpq's default).
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{}/{db}", hosts.join(","))
}

/// Root certificates: the PEM file's, else the web PKI's.
fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, BackendError> {
    let mut roots = rustls::RootCertStore::empty();
    let Some(path) = ca_file else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    };
    let refused = |reason: String| {
        BackendError::Rejected(format!(
            "state database CA file {}: {reason}",
            path.display()
        ))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| refused(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| refused(e.to_string()))?;
    if certs.is_empty() {
        return Err(refused("no PEM certificate in the file".into()));
    }
    for cert in certs {
        roots.add(cert).map_err(|e| refused(e.to_string()))?;
    }
    Ok(roots)
}

fn rustls_connector(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, BackendError> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BackendError::Rejected(format!("state database TLS: {e}")))?
        .with_root_certificates(roots(ca_file)?)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

impl PostgresBackend {
    /// Connects to the database at `url` (`postgres://user:password@host:port/dbname`,
    /// `postgresql://…`, or libpq's `key=value` form) and brings its schema up to date.
    /// With `sslmode=require` or `prefer` (the driver's default) the connection uses TLS
    /// when the server offers it (`require`: or fails), verifying the server's
    /// certificate against `tls_ca_file` (PEM) or else the web PKI roots;
    /// `sslmode=disable` never uses TLS.
    ///
    /// # Errors
    /// [`BackendError::Rejected`] when the URL does not parse or names no host, the CA
    /// file is unusable, the server refuses us (authentication, no such database, TLS) or
    /// a migration fails; [`BackendError::Unavailable`] when the server cannot be reached
    /// within the connect timeout or answers that it cannot take connections now.
    pub fn connect(url: &str, tls_ca_file: Option<&Path>) -> Result<PostgresBackend, BackendError> {
        // The URL is not echoed: it may hold a password.
        let mut config = postgres::Config::from_str(url).map_err(|e| {
            BackendError::Rejected(format!(
                "state database URL does not parse: {} (expected postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME)",
                describe(&e)
            ))
        })?;
        if config.get_hosts().is_empty() {
            return Err(BackendError::Rejected(
                "state database URL names no host (expected postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME)"
                    .into(),
            ));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("faultline");
        }
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => Tls::Off,
            _ => Tls::Rustls(rustls_connector(tls_ca_file)?),
        };
        let backend = PostgresBackend {
            location: location_of(&config),
            config,
            tls,
            writer: Mutex::new(None),
            reader: Mutex::new(None),
        };
        let mut client = backend.open()?;
        backend.migrate(&mut client)?;
        *backend.lock(&backend.writer) = Some(client);
        Ok(backend)
    }

    /// Applies the migrations not yet applied, one replica at a time.
    fn migrate(&self, client: &mut Client) -> Result<(), BackendError> {
        let failed = |e: &postgres::Error| match statement_error(e, connection_lost(e)) {
            BackendError::Unavailable(m) => {
                BackendError::Unavailable(format!("PostgreSQL at {}: {m}", self.location))
            }
            other => BackendError::Rejected(format!(
                "PostgreSQL at {}: schema migration failed: {other}",
                self.location
            )),
        };
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .map_err(|e| failed(&e))?;
        let report = embedded::migrations::runner().run(client);
        // The lock is the session's: it goes with the connection if unlocking fails.
        let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
        if let Err(e) = report {
            let cause = std::error::Error::source(&e)
                .and_then(|c| c.downcast_ref::<postgres::Error>())
                .map(|pg| statement_error(pg, client.is_closed()));
            return Err(match cause {
                Some(BackendError::Unavailable(m)) => BackendError::Unavailable(format!(
                    "PostgreSQL at {}: schema migration interrupted: {m}",
                    self.location
                )),
                Some(c) => BackendError::Rejected(format!(
                    "PostgreSQL at {}: schema migration failed: {e}: {c}",
                    self.location
                )),
                None => BackendError::Rejected(format!(
                    "PostgreSQL at {}: schema migration failed: {e} (was the database migrated by a newer faultline?)",
                    self.location
                )),
            });
        }
        unlocked.map_err(|e| failed(&e))?;
        Ok(())
    }

    /// The schema version the database is at.
    ///
    /// # Errors
    /// The database cannot be read.
    pub fn schema_version(&self) -> Result<i64, BackendError> {
        self.with(&self.reader, |c| {
            let row = c.query_one(
                "SELECT COALESCE(MAX(version), 0)::bigint FROM refinery_schema_history",
                &[],
            )?;
            row.try_get(0).map_err(|e| corrupt("schema version", e))
        })
    }

    /// A new connection.
    fn open(&self) -> Result<Client, BackendError> {
        let connected = match &self.tls {
            Tls::Off => self.config.connect(NoTls),
            Tls::Rustls(tls) => self.config.connect(tls.clone()),
        };
        connected.map_err(|e| connect_error(&self.location, &e))
    }

    fn lock<'a>(&self, slot: &'a Mutex<Option<Client>>) -> MutexGuard<'a, Option<Client>> {
        // A panic under the lock leaves at worst a connection mid-transaction, which the
        // driver rolls back on its next use.
        slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the connection in `slot`, opening one when there is none; a connection
    /// that broke under `f` is dropped, so the next call opens a new one.
    fn with<T>(
        &self,
        slot: &Mutex<Option<Client>>,
        f: impl FnOnce(&mut Client) -> Result<T, Failure>,
    ) -> Result<T, BackendError> {
        let mut guard = self.lock(slot);
        if guard.as_ref().is_some_and(Client::is_closed) {
            *guard = None;
        }
        let client = match guard.as_mut() {
            Some(c) => c,
            None => guard.insert(self.open()?),
        };
        match f(client) {
            Ok(v) => Ok(v),
            Err(Failure::Backend(e)) => Err(e),
            Err(Failure::Db(e)) => {
                let lost = client.is_closed() || connection_lost(&e);
                if lost {
                    *guard = None;
                }
                Err(statement_error(&e, lost))
            }
        }
    }
}

/// True when `e` says the connection is gone or going: closed, broken (an I/O error), or
/// the server ending the session (connection exception, shutdown).
fn connection_lost(e: &postgres::Error) -> bool {
    match e.code() {
        Some(code) => {
            code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
        }
        None => {
            e.is_closed() || std::error::Error::source(e).is_some_and(|c| c.is::<std::io::Error>())
        }
    }
}

/// Inserts the rows not stored yet (the first of repeats within the batch); returns the
/// verdicts that were new.
fn insert_verdicts<C: GenericClient>(
    tx: &mut C,
    rows: &[Row],
) -> Result<Vec<std::sync::Arc<Verdict>>, Failure> {
    let mut seen = HashSet::with_capacity(rows.len());
    let mut unique: Vec<&Row> = rows
        .iter()
        .filter(|r| {
            seen.insert((
                r.verdict.trace_id.as_str(),
                r.verdict.entry.span_id.as_str(),
            ))
        })
        .collect();
    // Key order, the same on every replica: two replicas inserting the same re-sent
    // traces wait for each other rather than deadlock.
    unique.sort_by(|a, b| {
        (&a.verdict.trace_id, &a.verdict.entry.span_id)
            .cmp(&(&b.verdict.trace_id, &b.verdict.entry.span_id))
    });
    let statement = tx.prepare(
        "INSERT INTO verdicts (trace_id, entry_span_id, ordinal, analyzed_at, entry_start, \
         service, route, classification, fingerprint_id, budget_ms, body, origin_service) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::int8[], $5::int8[], \
         $6::text[], $7::text[], $8::text[], $9::text[], $10::float8[], $11::text[], $12::text[]) \
         ON CONFLICT (trace_id, entry_span_id) DO NOTHING \
         RETURNING trace_id, entry_span_id",
    )?;
    let mut new = Vec::with_capacity(unique.len());
    for chunk in unique.chunks(CHUNK) {
        let verdicts: Vec<std::sync::Arc<Verdict>> = chunk
            .iter()
            .map(|r| std::sync::Arc::clone(&r.verdict))
            .collect();
        let trace_ids: Vec<&str> = verdicts.iter().map(|v| v.trace_id.as_str()).collect();
        let span_ids: Vec<&str> = verdicts.iter().map(|v| v.entry.span_id.as_str()).collect();
        let ordinals: Vec<i32> = chunk
            .iter()
            .map(|r| i32::try_from(r.ordinal).unwrap_or(i32::MAX))
            .collect();
        let analyzed: Vec<i64> = verdicts
            .iter()
            .map(|v| nanos(v.analyzed_at_unix_nano))
            .collect();
        let starts: Vec<i64> = verdicts
            .iter()
            .map(|v| nanos(v.entry.start_unix_nano))
            .collect();
        let services: Vec<&str> = verdicts.iter().map(|v| v.entry.service.as_str()).collect();
        let routes: Vec<&str> = verdicts.iter().map(|v| v.entry.route.as_str()).collect();
        let classes: Vec<&str> = verdicts.iter().map(|v| v.classification.as_str()).collect();
        let fingerprints: Vec<Option<&str>> = verdicts
            .iter()
            .map(|v| v.fingerprint_id.as_deref())
            .collect();
        let budgets: Vec<f64> = verdicts.iter().map(|v| v.budget_ms).collect();
        let bodies: Vec<String> = chunk.iter().map(|r| r.body()).collect();
        let origins: Vec<Option<&str>> = chunk.iter().map(|r| r.origin_service()).collect();
        let inserted = tx.query(
            &statement,
            &[
                &trace_ids,
                &span_ids,
                &ordinals,
                &analyzed,
                &starts,
                &services,
                &routes,
                &classes,
                &fingerprints,
                &budgets,
                &bodies,
                &origins,
            ],
        )?;
        let mut keys = HashSet::with_capacity(inserted.len());
        for row in inserted {
            let trace: String = row.try_get(0).map_err(|e| corrupt("inserted key", e))?;
            let span: String = row.try_get(1).map_err(|e| corrupt("inserted key", e))?;
            keys.insert((trace, span));
        }
        new.extend(
            verdicts
                .into_iter()
                .filter(|v| keys.contains(&(v.trace_id.clone(), v.entry.span_id.clone()))),
        );
    }
    Ok(new)
}

/// Adds the new verdicts to their groups, in fingerprint id order.
fn upsert_groups<C: GenericClient>(
    tx: &mut C,
    new: &[std::sync::Arc<Verdict>],
) -> Result<(), Failure> {
    let deltas: Vec<(String, GroupRecord)> =
        group_deltas(new.iter().map(|v| &**v)).into_iter().collect();
    if deltas.is_empty() {
        return Ok(());
    }
    // Every SET expression reads the row as it was (PostgreSQL evaluates them all against
    // the old row), so the order of the assignments does not matter.
    let groups = tx.prepare(
        "INSERT INTO fingerprints AS f (fingerprint_id, fingerprint, classification, count, \
         first_seen, last_seen, first_release) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], \
         $6::int8[], $7::text[]) ORDER BY 1 \
         ON CONFLICT (fingerprint_id) DO UPDATE SET \
           count = f.count + excluded.count, \
           fingerprint = CASE WHEN excluded.first_seen < f.first_seen \
             THEN excluded.fingerprint ELSE f.fingerprint END, \
           first_release = CASE WHEN excluded.first_seen < f.first_seen \
             THEN excluded.first_release ELSE f.first_release END, \
           first_seen = LEAST(f.first_seen, excluded.first_seen), \
           classification = CASE WHEN excluded.last_seen >= f.last_seen \
             THEN excluded.classification ELSE f.classification END, \
           last_seen = GREATEST(f.last_seen, excluded.last_seen)",
    )?;
    for chunk in deltas.chunks(CHUNK) {
        let ids: Vec<&str> = chunk.iter().map(|(id, _)| id.as_str()).collect();
        let texts: Vec<&str> = chunk.iter().map(|(_, g)| g.fingerprint.as_str()).collect();
        let classes: Vec<&str> = chunk
            .iter()
            .map(|(_, g)| g.classification.as_str())
            .collect();
        let counts: Vec<i64> = chunk.iter().map(|(_, g)| nanos(g.count)).collect();
        let firsts: Vec<i64> = chunk
            .iter()
            .map(|(_, g)| nanos(g.first_seen_unix_nano))
            .collect();
        let lasts: Vec<i64> = chunk
            .iter()
            .map(|(_, g)| nanos(g.last_seen_unix_nano))
            .collect();
        let releases: Vec<Option<&str>> = chunk
            .iter()
            .map(|(_, g)| g.first_release.as_deref())
            .collect();
        tx.execute(
            &groups,
            &[&ids, &texts, &classes, &counts, &firsts, &lasts, &releases],
        )?;
    }
    let values = tx.prepare(
        "INSERT INTO fingerprint_values AS v (fingerprint_id, dimension, value, count) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[]) ORDER BY 1, 2, 3 \
         ON CONFLICT (fingerprint_id, dimension, value) DO UPDATE SET count = v.count + excluded.count",
    )?;
    let all: Vec<(&str, &'static str, &str, i64)> = deltas
        .iter()
        .flat_map(|(id, g)| {
            g.values
                .iter()
                .map(move |(d, value, n)| (id.as_str(), d.as_str(), value.as_str(), nanos(*n)))
        })
        .collect();
    for chunk in all.chunks(CHUNK) {
        let ids: Vec<&str> = chunk.iter().map(|r| r.0).collect();
        let dims: Vec<&str> = chunk.iter().map(|r| r.1).collect();
        let vals: Vec<&str> = chunk.iter().map(|r| r.2).collect();
        let counts: Vec<i64> = chunk.iter().map(|r| r.3).collect();
        tx.execute(&values, &[&ids, &dims, &vals, &counts])?;
    }
    Ok(())
}

/// The WHERE clause (`$1`…) and parameters of a verdict query.
fn where_clause(q: &VerdictQuery) -> (String, Vec<Box<dyn ToSql + Sync>>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut args: Vec<Box<dyn ToSql + Sync>> = Vec::new();
    let mut add = |clause: &str, arg: Box<dyn ToSql + Sync>| {
        args.push(arg);
        clauses.push(clause.replace("$?", &format!("${}", args.len())));
    };
    if let Some(s) = &q.service {
        add("service = $?", Box::new(s.clone()));
    }
    if let Some(r) = &q.route {
        add("route = $?", Box::new(r.clone()));
    }
    if let Some(s) = &q.origin_service {
        add("origin_service = $?", Box::new(s.clone()));
    }
    if let Some(c) = q.classification {
        add("classification = $?", Box::new(c.as_str()));
    }
    if let Some(f) = &q.fingerprint {
        add(
            "(fingerprint_id = $? OR fingerprint_id IN \
             (SELECT fingerprint_id FROM fingerprints WHERE fingerprint = $?))",
            Box::new(f.clone()),
        );
    }
    if let Some(t) = q.since_unix_nano {
        add("analyzed_at >= $?", Box::new(nanos(t)));
    }
    if let Some(t) = q.until_unix_nano {
        add("analyzed_at < $?", Box::new(nanos(t)));
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    (sql, args)
}

/// The groups `ids` as stored, in the order of `ids` (those gone are left out): three
/// statements whatever their number.
fn load<C: GenericClient>(c: &mut C, ids: &[String]) -> Result<Vec<LoadedGroup>, Failure> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut heads: HashMap<String, GroupRecord> = HashMap::with_capacity(ids.len());
    for row in c.query(
        "SELECT fingerprint_id, fingerprint, classification, count, first_seen, last_seen, \
         first_release FROM fingerprints WHERE fingerprint_id = ANY($1)",
        &[&ids],
    )? {
        let bad = |e| corrupt("fingerprints row", e);
        let id: String = row.try_get(0).map_err(bad)?;
        let class: String = row.try_get(2).map_err(bad)?;
        let classification = Classification::parse(&class).ok_or_else(|| {
            BackendError::Corrupt(format!("fingerprint {id}: classification {class:?}"))
        })?;
        let record = GroupRecord {
            fingerprint: row.try_get(1).map_err(bad)?,
            classification,
            count: unsigned(row.try_get(3).map_err(bad)?),
            first_seen_unix_nano: unsigned(row.try_get(4).map_err(bad)?),
            last_seen_unix_nano: unsigned(row.try_get(5).map_err(bad)?),
            first_release: row.try_get(6).map_err(bad)?,
            values: Vec::new(),
        };
        heads.insert(id, record);
    }
    for row in c.query(
        "SELECT fingerprint_id, dimension, value, count FROM fingerprint_values \
         WHERE fingerprint_id = ANY($1) ORDER BY 1, 2, 3",
        &[&ids],
    )? {
        let bad = |e| corrupt("fingerprint_values row", e);
        let id: String = row.try_get(0).map_err(bad)?;
        let dimension: String = row.try_get(1).map_err(bad)?;
        // A dimension a newer faultline added is skipped, not fatal.
        if let (Some(g), Some(d)) = (heads.get_mut(&id), Dimension::parse(&dimension)) {
            g.values.push((
                d,
                row.try_get(2).map_err(bad)?,
                unsigned(row.try_get(3).map_err(bad)?),
            ));
        }
    }
    let mut recent: HashMap<String, (Vec<f64>, Vec<String>)> = HashMap::new();
    for row in c.query(
        "SELECT g.id, v.budget_ms, v.trace_id FROM unnest($1::text[]) AS g(id) \
         CROSS JOIN LATERAL (SELECT budget_ms, trace_id, analyzed_at FROM verdicts \
           WHERE fingerprint_id = g.id ORDER BY analyzed_at DESC, trace_id DESC LIMIT $2) v \
         ORDER BY g.id, v.analyzed_at DESC, v.trace_id DESC",
        &[&ids, &limit(DURATION_SAMPLES)],
    )? {
        let bad = |e| corrupt("verdicts row", e);
        let id: String = row.try_get(0).map_err(bad)?;
        let (durations, examples) = recent.entry(id).or_default();
        durations.push(row.try_get(1).map_err(bad)?);
        let trace: String = row.try_get(2).map_err(bad)?;
        if examples.len() < EXAMPLES && !examples.contains(&trace) {
            examples.push(trace);
        }
    }
    Ok(ids
        .iter()
        .filter_map(|id| {
            let record = heads.remove(id)?;
            let (durations_ms, examples) = recent.remove(id).unwrap_or_default();
            Some(LoadedGroup {
                fingerprint_id: id.clone(),
                record,
                durations_ms,
                examples,
            })
        })
        .collect())
}

fn summary(g: LoadedGroup) -> FingerprintSummary {
    summary_from_record(&g.fingerprint_id, &g.record, &g.durations_ms, &g.examples)
}

/// The ids a query returns, in its order.
fn ids<C: GenericClient>(
    c: &mut C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<String>, Failure> {
    c.query(sql, params)?
        .into_iter()
        .map(|r| r.try_get(0).map_err(|e| corrupt("fingerprint id", e)))
        .collect()
}

/// Groups read in one snapshot, so a group's count and its values agree even while other
/// replicas write.
fn snapshot<T>(
    c: &mut Client,
    f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let mut tx = c
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let out = f(&mut tx)?;
    tx.commit()?;
    Ok(out)
}

/// Runs `delete` (parameters `$1`: the batch size, then `bound`) until it deletes fewer
/// than `batch` rows; each run is a statement (a transaction) of its own.
fn delete_in_batches(
    c: &mut Client,
    delete: &str,
    batch: u64,
    bound: &[&(dyn ToSql + Sync)],
) -> Result<u64, Failure> {
    let batch = batch.max(1);
    let size = nanos(batch);
    let statement = c.prepare(delete)?;
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&size];
    params.extend_from_slice(bound);
    let mut total = 0u64;
    loop {
        let n = c.execute(&statement, &params)?;
        total += n;
        if n < batch {
            return Ok(total);
        }
    }
}

impl Backend for PostgresBackend {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn shared(&self) -> bool {
        true
    }

    fn write(&self, rows: &[Row]) -> Result<usize, BackendError> {
        if rows.is_empty() {
            return Ok(0);
        }
        self.with(&self.writer, |c| {
            let mut tx = c.transaction()?;
            let new = insert_verdicts(&mut tx, rows)?;
            upsert_groups(&mut tx, &new)?;
            tx.commit()?;
            Ok(new.len())
        })
    }

    fn verdict(&self, trace_id: &str) -> Result<Option<Verdict>, BackendError> {
        self.with(&self.reader, |c| {
            let Some(row) = c.query_opt(
                "SELECT body, analyzed_at, entry_start FROM verdicts WHERE trace_id = $1 \
                 ORDER BY ordinal LIMIT 1",
                &[&trace_id],
            )?
            else {
                return Ok(None);
            };
            let bad = |e| corrupt("verdicts row", e);
            let body: String = row.try_get(0).map_err(bad)?;
            let at: i64 = row.try_get(1).map_err(bad)?;
            let start: i64 = row.try_get(2).map_err(bad)?;
            Ok(Some(decode_verdict(&body, unsigned(at), unsigned(start))?))
        })
    }

    fn verdicts(&self, q: &VerdictQuery) -> Result<Vec<Verdict>, BackendError> {
        let (clause, mut args) = where_clause(q);
        args.push(Box::new(limit(q.limit)));
        let sql = format!(
            "SELECT body, analyzed_at, entry_start FROM verdicts {clause} \
             ORDER BY analyzed_at DESC, trace_id DESC, ordinal DESC LIMIT ${}",
            args.len()
        );
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| &**a).collect();
        self.with(&self.reader, |c| {
            let mut out = Vec::new();
            for row in c.query(sql.as_str(), &params)? {
                let bad = |e| corrupt("verdicts row", e);
                let body: String = row.try_get(0).map_err(bad)?;
                let at: i64 = row.try_get(1).map_err(bad)?;
                let start: i64 = row.try_get(2).map_err(bad)?;
                out.push(decode_verdict(&body, unsigned(at), unsigned(start))?);
            }
            Ok(out)
        })
    }

    fn group(&self, fingerprint_id: &str) -> Result<Option<FingerprintSummary>, BackendError> {
        self.with(&self.reader, |c| {
            let ids = [fingerprint_id.to_string()];
            snapshot(c, |tx| Ok(load(tx, &ids)?.into_iter().next().map(summary)))
        })
    }

    fn groups(
        &self,
        service: Option<&str>,
        limit_to: usize,
    ) -> Result<Vec<FingerprintSummary>, BackendError> {
        let n = limit(limit_to);
        self.with(&self.reader, |c| {
            snapshot(c, |tx| {
                let ids = match service {
                    None => ids(
                        tx,
                        "SELECT fingerprint_id FROM fingerprints \
                         ORDER BY count DESC, fingerprint_id LIMIT $1",
                        &[&n],
                    )?,
                    Some(s) => ids(
                        tx,
                        "SELECT f.fingerprint_id FROM fingerprints f JOIN fingerprint_values v \
                         ON v.fingerprint_id = f.fingerprint_id AND v.dimension = $1 AND v.value = $2 \
                         ORDER BY f.count DESC, f.fingerprint_id LIMIT $3",
                        &[&Dimension::Service.as_str(), &s, &n],
                    )?,
                };
                Ok(load(tx, &ids)?.into_iter().map(summary).collect())
            })
        })
    }

    fn load_groups(&self, limit_to: usize) -> Result<Vec<LoadedGroup>, BackendError> {
        let n = limit(limit_to);
        self.with(&self.reader, |c| {
            snapshot(c, |tx| {
                let ids = ids(
                    tx,
                    "SELECT fingerprint_id FROM fingerprints \
                     ORDER BY last_seen DESC, fingerprint_id LIMIT $1",
                    &[&n],
                )?;
                load(tx, &ids)
            })
        })
    }

    fn prune(&self, r: &Retention) -> Result<u64, BackendError> {
        self.with(&self.writer, |c| {
            let cutoff = nanos(r.cutoff_unix_nano);
            let mut deleted = delete_in_batches(
                c,
                "DELETE FROM verdicts WHERE (trace_id, entry_span_id) IN \
                 (SELECT trace_id, entry_span_id FROM verdicts WHERE analyzed_at < $2 LIMIT $1)",
                r.batch,
                &[&cutoff],
            )?;
            // The newest `max_verdicts` (in list order) are kept: every row at or after
            // the first one beyond them goes.
            let boundary = c.query_opt(
                "SELECT analyzed_at, trace_id, ordinal FROM verdicts \
                 ORDER BY analyzed_at DESC, trace_id DESC, ordinal DESC LIMIT 1 OFFSET $1",
                &[&nanos(r.max_verdicts)],
            )?;
            if let Some(b) = boundary {
                let bad = |e| corrupt("verdicts row", e);
                let at: i64 = b.try_get(0).map_err(bad)?;
                let trace: String = b.try_get(1).map_err(bad)?;
                let ordinal: i32 = b.try_get(2).map_err(bad)?;
                deleted += delete_in_batches(
                    c,
                    "DELETE FROM verdicts WHERE (trace_id, entry_span_id) IN \
                     (SELECT trace_id, entry_span_id FROM verdicts WHERE analyzed_at <= $2 \
                      AND (analyzed_at, trace_id, ordinal) <= ($2, $3, $4) LIMIT $1)",
                    r.batch,
                    &[&at, &trace, &ordinal],
                )?;
            }
            // Groups beyond the `max_groups` most recently seen, with their values. The
            // group rows go first, in the order writers take them (group, then values).
            let groups = c.prepare(
                "WITH gone AS (DELETE FROM fingerprints WHERE fingerprint_id IN \
                   (SELECT fingerprint_id FROM fingerprints \
                    ORDER BY last_seen DESC, fingerprint_id DESC OFFSET $2 LIMIT $1) \
                   RETURNING fingerprint_id), \
                 values_gone AS (DELETE FROM fingerprint_values \
                   WHERE fingerprint_id IN (SELECT fingerprint_id FROM gone)) \
                 SELECT count(*) FROM gone",
            )?;
            let batch = nanos(r.batch.max(1));
            loop {
                let row = c.query_one(&groups, &[&batch, &nanos(r.max_groups)])?;
                let n: i64 = row.try_get(0).map_err(|e| corrupt("count", e))?;
                if n < batch {
                    break;
                }
            }
            Ok(deleted)
        })
    }
}
