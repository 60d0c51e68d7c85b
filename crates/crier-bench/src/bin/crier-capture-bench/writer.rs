//! The writer: this binary run again as a child process (`write`), so that the
//! consumer's CPU is its own process's alone.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::time::{MissedTickBehavior, interval};
use tokio_postgres::NoTls;

use crate::{BoxError, Load, WriteArgs};

/// Connects, says `ready pid=<its backend>`, waits for a line on stdin so that the
/// consumer is in place first, inserts rows as told, says `rows=N seconds=S`, then holds
/// its connection open until stdin closes: its backend must still exist when `run` takes
/// the last CPU snapshot.
pub(crate) async fn write(args: WriteArgs) -> Result<(), BoxError> {
    let (client, connection) = tokio_postgres::connect(&args.url, NoTls).await?;
    tokio::spawn(connection);
    let insert = client
        .prepare(
            "insert into bench (id, title, n, payload, at) \
             select g, 'row ' || g, (g % 1000)::int, \
                    jsonb_build_object('id', g, 'kind', 'bench', 'tags', jsonb_build_array('a', 'b', 'c')), \
                    clock_timestamp() \
             from generate_series($1::bigint, $2::bigint) as g",
        )
        .await?;
    let pid: i32 = client
        .query_one("select pg_backend_pid()", &[])
        .await?
        .get(0);
    say(&format!("ready pid={pid}"))?;
    tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await??;

    let load = args.load;
    // One transaction per tick; Burst catches up after a slow commit so the average
    // rate holds (the timer's granularity is 1 ms).
    let mut ticker = (load.rate > 0).then(|| {
        let period = Duration::from_secs_f64(load.batch as f64 / load.rate as f64);
        let mut ticker = interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        ticker
    });
    let start = Instant::now();
    let deadline = start + Duration::from_secs(load.seconds);
    let mut next_id = 1_i64;
    while Instant::now() < deadline {
        if let Some(ticker) = ticker.as_mut() {
            ticker.tick().await;
        }
        client
            .execute(&insert, &[&next_id, &(next_id + load.batch - 1)])
            .await?;
        next_id += load.batch;
    }
    let elapsed = start.elapsed().as_secs_f64();
    say(&format!("rows={} seconds={elapsed:.3}", next_id - 1))?;
    tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await??;
    Ok(())
}

/// One line to the parent, flushed (stdout is a pipe, so it would sit in the buffer).
fn say(line: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{line}")?;
    stdout.flush()
}

/// A writer child process.
pub(crate) struct Writer {
    child: Child,
    stdout: Option<BufReader<ChildStdout>>,
    /// Its server backend.
    pub(crate) backend_pid: u32,
}

impl Writer {
    /// Starts the writer and waits until it is connected and ready to write.
    pub(crate) async fn spawn(url: &str, load: &Load) -> Result<Writer, BoxError> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["write", "--url", url])
            .args(["--rate", &load.rate.to_string()])
            .args(["--batch", &load.batch.to_string()])
            .args(["--seconds", &load.seconds.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = BufReader::new(child.stdout.take().ok_or("writer stdout")?);
        let mut writer = Writer {
            child,
            stdout: Some(stdout),
            backend_pid: 0,
        };
        let line = writer.line().await?;
        writer.backend_pid = field(&line, "pid=")?;
        Ok(writer)
    }

    /// Lets it write.
    pub(crate) fn go(&mut self) -> Result<(), BoxError> {
        let stdin = self.child.stdin.as_mut().ok_or("writer stdin")?;
        stdin.write_all(b"go\n")?;
        stdin.flush()?;
        Ok(())
    }

    /// Waits for the writer to finish writing: (rows, seconds it wrote for).
    pub(crate) async fn written(&mut self) -> Result<(u64, f64), BoxError> {
        let line = self.line().await?;
        Ok((field(&line, "rows=")?, field(&line, "seconds=")?))
    }

    async fn line(&mut self) -> Result<String, BoxError> {
        let mut stdout = self.stdout.take().ok_or("writer stdout")?;
        let (stdout, line) = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            stdout.read_line(&mut line).map(|_| (stdout, line))
        })
        .await??;
        self.stdout = Some(stdout);
        Ok(line)
    }

    /// Lets the writer exit (closing its stdin) and reaps it.
    pub(crate) async fn finish(mut self) -> Result<(), BoxError> {
        drop(self.child.stdin.take());
        let status = tokio::task::spawn_blocking(move || self.child.wait()).await??;
        if !status.success() {
            return Err(format!("writer exited with {status}").into());
        }
        Ok(())
    }
}

/// The value of `name=` in a line the writer said.
fn field<T: std::str::FromStr>(line: &str, name: &str) -> Result<T, BoxError> {
    line.split_whitespace()
        .find_map(|part| part.strip_prefix(name))
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| format!("writer said {line:?}").into())
}
