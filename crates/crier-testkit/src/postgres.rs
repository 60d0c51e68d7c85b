//! Test support for Crier: a private PostgreSQL, started from the system's server
//! binaries for one test and gone when it is dropped.
//!
//! Each [`TestPostgres`] is a fresh cluster (`initdb` in a temporary directory) on a free
//! loopback port with `wal_level = logical`, trust authentication and `fsync = off` for
//! speed: a test restarts the server process, never the machine, so the OS page cache
//! keeps everything committed. (`synchronous_commit` stays on: with it off, a crash-like
//! restart loses commits still in the WAL buffers, and tests count every committed row.) `initdb` refuses to run as root, so under root
//! (as in CI) the server runs as the `postgres` system user, which Debian's server
//! package creates.
//!
//! ```no_run
//! let pg = crier_testkit::TestPostgres::start().unwrap();
//! pg.psql("create table t (id int primary key)").unwrap();
//! println!("connect to {}", pg.url());
//! ```

use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Why the harness could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No PostgreSQL server binaries were found.
    #[error(
        "no PostgreSQL server binaries (initdb, pg_ctl) found; install them (apt-get install postgresql) or set CRIER_PG_BINDIR"
    )]
    NoBinaries,
    /// Running as root but there is no `postgres` user to run the server as.
    #[error(
        "running as root needs a `postgres` system user to run the server (apt-get install postgresql creates it)"
    )]
    NoPostgresUser,
    /// A command failed.
    #[error("`{command}` failed: {output}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr and stdout.
        output: String,
    },
    /// An I/O error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A private PostgreSQL server for one test.
#[derive(Debug)]
pub struct TestPostgres {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    port: u16,
    /// The system user the server runs as when the test runs as root.
    run_as: Option<(String, u32, u32)>,
}

impl TestPostgres {
    /// Creates and starts a cluster.
    pub fn start() -> Result<TestPostgres, HarnessError> {
        let bindir = find_bindir().ok_or(HarnessError::NoBinaries)?;
        let run_as = if is_root() {
            Some(postgres_user().ok_or(HarnessError::NoPostgresUser)?)
        } else {
            None
        };
        let dir = tempfile::Builder::new().prefix("crier-pg-").tempdir()?;
        if let Some((_, uid, gid)) = &run_as {
            std::os::unix::fs::chown(dir.path(), Some(*uid), Some(*gid))?;
        }
        let mut pg = TestPostgres {
            dir,
            bindir,
            port: 0,
            run_as,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data_dir(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )?;
        // A port taken between choosing it and the server binding it is retried.
        let mut last_error = None;
        for _ in 0..5 {
            pg.port = free_port()?;
            pg.write_config()?;
            match pg.pg_ctl(&["start", "-w", "-t", "60", "-l", &pg.log_path()]) {
                Ok(_) => return Ok(pg),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    /// A `postgres://` URL for the `postgres` superuser and database.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs SQL with `psql` as the superuser (stops at the first error); returns stdout.
    pub fn psql(&self, sql: &str) -> Result<String, HarnessError> {
        let output = self.psql_command(sql).output()?;
        checked(&format!("psql -c {sql:?}"), output)
    }

    /// Runs SQL like [`TestPostgres::psql`]; returns its warnings and notices (stderr).
    pub fn psql_warnings(&self, sql: &str) -> Result<String, HarnessError> {
        let output = self.psql_command(sql).output()?;
        let warnings = String::from_utf8_lossy(&output.stderr).into_owned();
        checked(&format!("psql -c {sql:?}"), output)?;
        Ok(warnings)
    }

    fn psql_command(&self, sql: &str) -> Command {
        let psql = self.bindir.join("psql");
        let psql = if psql.exists() {
            psql
        } else {
            PathBuf::from("psql")
        };
        let mut command = Command::new(&psql);
        command
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-c", sql]);
        command
    }

    /// Restarts the server; `mode` is `fast` (clean) or `immediate` (crash-like).
    pub fn restart(&self, mode: &str) -> Result<(), HarnessError> {
        self.pg_ctl(&[
            "restart",
            "-w",
            "-t",
            "60",
            "-m",
            mode,
            "-l",
            &self.log_path(),
        ])
        .map(drop)
    }

    /// Stops the server (it is stopped on drop anyway).
    pub fn stop(&self) -> Result<(), HarnessError> {
        self.pg_ctl(&["stop", "-w", "-m", "fast"]).map(drop)
    }

    /// Starts a stopped server again on the same port.
    pub fn start_again(&self) -> Result<(), HarnessError> {
        self.pg_ctl(&["start", "-w", "-t", "60", "-l", &self.log_path()])
            .map(drop)
    }

    /// The server log, for test failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn log_path(&self) -> String {
        self.dir.path().join("server.log").display().to_string()
    }

    fn write_config(&self) -> Result<(), HarnessError> {
        let config = format!(
            "\n# crier-testkit\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{dir}'\n\
             wal_level = logical\nmax_replication_slots = 20\nmax_wal_senders = 20\nmax_connections = 200\n\
             fsync = off\nfull_page_writes = off\nshared_buffers = 64MB\n\
             log_min_messages = warning\n",
            port = self.port,
            dir = self.dir.path().display(),
        );
        let path = Path::new(&self.data_dir()).join("postgresql.auto.conf");
        // Rewritten on every attempt: only the port changes.
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        file.write_all(config.as_bytes())?;
        Ok(())
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<String, HarnessError> {
        let data_dir = self.data_dir();
        let mut all = vec!["-D", data_dir.as_str()];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }

    /// Runs a server binary, as the `postgres` user when we are root.
    fn run(&self, binary: &str, args: &[&str]) -> Result<String, HarnessError> {
        let program = self.bindir.join(binary);
        let mut command = match &self.run_as {
            Some((user, _, _)) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        let output = command.args(args).output()?;
        checked(&format!("{binary} {}", args.join(" ")), output)
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
    }
}

fn checked(command: &str, output: Output) -> Result<String, HarnessError> {
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(HarnessError::Command {
        command: command.to_owned(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        ),
    })
}

pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `CRIER_PG_BINDIR`, else the newest `/usr/lib/postgresql/<version>/bin`.
fn find_bindir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CRIER_PG_BINDIR") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// (name, uid, gid) of the `postgres` user.
fn postgres_user() -> Option<(String, u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&"postgres")).then(|| {
            Some((
                "postgres".to_owned(),
                fields.get(2)?.parse().ok()?,
                fields.get(3)?.parse().ok()?,
            ))
        })?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_starts_restarts_and_answers() {
        let pg = TestPostgres::start().expect("postgres starts");
        assert_eq!(pg.psql("show wal_level").unwrap().trim(), "logical");
        pg.psql("create table t (id int primary key); insert into t values (1)")
            .unwrap();
        pg.restart("immediate").unwrap();
        assert_eq!(
            pg.psql("select count(*) from t").unwrap().trim(),
            "1",
            "{}",
            pg.log()
        );
        assert!(pg.url().contains(&pg.port().to_string()));
    }
}
