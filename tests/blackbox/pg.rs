//! A real PostgreSQL 15 for the state tests (Debian's `postgresql` package, which
//! `.ci/run` installs; its binaries are in /usr/lib/postgresql/15/bin, not on PATH).
//!
//! [`database`] gives each test a database of its own on ONE server shared by the test
//! process (so tests run in parallel); [`Server::start_private`] gives a test a server of
//! its own that it may stop and start (outages) without disturbing the others. Each
//! server's data directory is under `CARGO_TARGET_TMPDIR`; PostgreSQL refuses to run as
//! root, so as root the directory is owned by `postgres` and the server runs as that
//! user. A private server stops when dropped; every server also has a watchdog (a shell
//! loop) that stops it and removes its directory once the test process is gone, since
//! statics are never dropped and a killed test drops nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use crate::support::free_port;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL server on 127.0.0.1 with trust authentication for user `postgres`.
pub struct Server {
    /// Owns the data directory's parent (removed with the server).
    root: PathBuf,
    data: PathBuf,
    port: u16,
}

fn as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `cmd` run as the `postgres` user when we are root.
fn pg_command(program: &str) -> Command {
    let binary = Path::new(PG_BIN).join(program);
    if as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(binary);
        c
    } else {
        Command::new(binary)
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Server {
    /// A server of the caller's own, stopped when dropped.
    ///
    /// # Panics
    /// PostgreSQL 15 is not installed, or does not start.
    pub fn start_private() -> Server {
        Server::start_configured(&[], "")
    }

    /// A server with `files` copied into its data directory (owned by the server's
    /// user, mode 0600: TLS keys) and `conf` appended to its `postgresql.conf`, stopped
    /// when dropped.
    ///
    /// # Panics
    /// PostgreSQL 15 is not installed, or does not start.
    pub fn start_configured(files: &[(&str, &Path)], conf: &str) -> Server {
        assert!(
            Path::new(PG_BIN).join("initdb").exists(),
            "{PG_BIN}/initdb missing: apt-get install -y postgresql"
        );
        let root = tempfile::Builder::new()
            .prefix("pg-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temp dir")
            .keep();
        let data = root.join("data");
        std::fs::create_dir(&data).expect("data dir");
        if as_root() {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(&root));
        }
        run(pg_command("initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]));
        for (name, source) in files {
            let target = data.join(name);
            std::fs::copy(source, &target).expect("copy into the data directory");
            run(Command::new("chmod").arg("600").arg(&target));
            if as_root() {
                run(Command::new("chown").arg("postgres:postgres").arg(&target));
            }
        }
        if !conf.is_empty() {
            let path = data.join("postgresql.conf");
            let mut text = std::fs::read_to_string(&path).expect("postgresql.conf");
            text.push('\n');
            text.push_str(conf);
            text.push('\n');
            std::fs::write(&path, text).expect("postgresql.conf");
        }
        let mut server = Server {
            root,
            data,
            port: 0,
        };
        server.watchdog();
        // The port is free when chosen, not necessarily when the server binds it.
        for attempt in 0..3 {
            server.port = free_port();
            if server.try_start() {
                return server;
            }
            assert!(attempt < 2, "PostgreSQL did not start: {}", server.log());
        }
        unreachable!()
    }

    /// Stops the server and removes its directory once this test process is gone.
    fn watchdog(&self) {
        let pg_ctl = Path::new(PG_BIN).join("pg_ctl");
        let stop = if as_root() {
            format!("runuser -u postgres -- {} ", pg_ctl.display())
        } else {
            format!("{} ", pg_ctl.display())
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null && [ -d '{data}' ]; do sleep 1; done; \
             if [ -d '{data}' ]; then {stop} -D '{data}' -m immediate -w stop; rm -rf '{root}'; fi",
            pid = std::process::id(),
            data = self.data.display(),
            root = self.root.display(),
        );
        let mut watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("watchdog");
        // Reaped when it ends (a private server dropped); it outlives us otherwise.
        std::thread::spawn(move || watchdog.wait());
    }

    fn try_start(&self) -> bool {
        pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.data.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
                self.port,
                self.data.display()
            ))
            .args(["-w", "-t", "30", "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts the server again after [`Server::stop`], on the same port.
    ///
    /// # Panics
    /// It does not start.
    pub fn start(&self) {
        assert!(self.try_start(), "PostgreSQL did not start: {}", self.log());
    }

    /// Stops the server (`-m fast`: sessions are ended, as in a planned restart).
    ///
    /// # Panics
    /// It does not stop.
    pub fn stop(&self) {
        run(pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"]));
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("log")).unwrap_or_default()
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` as user `postgres`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A client connected to `db` (plain TCP).
    pub fn client(&self, db: &str) -> postgres::Client {
        postgres::Client::connect(&self.url(db), postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url(db)))
    }

    /// Creates database `name` (dropping one of that name first); returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "database name {name:?}: lowercase letters, digits and _ only"
        );
        let mut c = self.client("postgres");
        // Two statements: several in one string would be one transaction, which
        // CREATE DATABASE refuses.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            c.batch_execute(&sql)
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        }
        self.url(name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Also tells the watchdog it has nothing left to do.
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The server this test process shares (started on first use, never stopped by a test).
pub fn shared() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(Server::start_private)
}

/// A database of the test's own, `t_<name>`, on the shared server; returns its URL.
pub fn database(name: &str) -> String {
    shared().create_database(&format!("t_{name}"))
}
