//! One measured run: a fresh server, the writer and one consumer, and the report.

use std::time::{Duration, Instant};

use crier_postgres::replication::{self, CaptureSettings, ChangeStream};
use crier_testkit::TestPostgres;
use tokio::sync::watch;
use tokio::time::{interval, timeout};
use tokio_postgres::types::PgLsn;
use tokio_postgres::{Client, NoTls};

use crate::consume::{Stats, consume_poll, consume_stream};
use crate::cpu::{CpuSnapshot, CpuUse, parent};
use crate::writer::Writer;
use crate::{BoxError, Mode, POLL_SLOT, PUBLICATION, RunArgs, SESSION_SETTINGS, STREAM_SLOT};

/// The consumer, running.
struct Consumer {
    task: tokio::task::JoinHandle<Result<Stats, BoxError>>,
    stop: watch::Sender<bool>,
    progress: watch::Receiver<u64>,
    /// The server process decoding for it.
    backend_pid: u32,
}

async fn start_consumer(
    args: &RunArgs,
    admin: &Client,
    settings: &CaptureSettings,
) -> Result<Consumer, BoxError> {
    let (stop, stop_rx) = watch::channel(false);
    let (progress_tx, progress) = watch::channel(0);
    let (task, backend_pid) = match args.mode {
        Mode::Stream => {
            let stream = ChangeStream::connect(settings, false).await?;
            let pid = walsender_pid(admin).await?;
            (
                tokio::spawn(consume_stream(stream, stop_rx, progress_tx)),
                pid,
            )
        }
        Mode::Poll => {
            let (client, connection) =
                tokio_postgres::connect(&settings.database_url, NoTls).await?;
            tokio::spawn(connection);
            client.batch_execute(SESSION_SETTINGS).await?;
            let pid: i32 = client
                .query_one("select pg_backend_pid()", &[])
                .await?
                .get(0);
            let every = Duration::from_millis(args.interval_ms);
            (
                tokio::spawn(consume_poll(
                    client,
                    every,
                    args.max_changes,
                    stop_rx,
                    progress_tx,
                )),
                pid as u32,
            )
        }
    };
    Ok(Consumer {
        task,
        stop,
        progress,
        backend_pid,
    })
}

/// The walsender serving the stream slot: it holds the slot once streaming started.
async fn walsender_pid(admin: &Client) -> Result<u32, BoxError> {
    let mut ticker = interval(Duration::from_millis(10));
    timeout(Duration::from_secs(10), async {
        loop {
            ticker.tick().await;
            let pid: Option<i32> = admin
                .query_one(
                    "select active_pid from pg_replication_slots where slot_name = $1",
                    &[&STREAM_SLOT],
                )
                .await?
                .get(0);
            if let Some(pid) = pid {
                return Ok::<u32, BoxError>(pid as u32);
            }
        }
    })
    .await
    .map_err(|_| "the stream never took its slot")?
}

pub(crate) async fn run(args: RunArgs) -> Result<(), BoxError> {
    let pg = TestPostgres::start()?;
    pg.psql(
        "create table bench (id bigint primary key, title text, n int, payload jsonb, \
                             at timestamptz default now()) with (autovacuum_enabled = off)",
    )?;
    let (admin, connection) = tokio_postgres::connect(&pg.url(), NoTls).await?;
    tokio::spawn(connection);
    let settings = CaptureSettings {
        database_url: pg.url(),
        publication: PUBLICATION.into(),
        slot: STREAM_SLOT.into(),
        database_broadcasts: false,
    };
    replication::prepare(&admin, &settings).await?;
    admin
        .batch_execute(&format!("alter publication {PUBLICATION} add table bench"))
        .await?;
    if args.mode == Mode::Poll {
        admin
            .query_one(
                "select pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&POLL_SLOT],
            )
            .await?;
    }
    let admin_pid: i32 = admin
        .query_one("select pg_backend_pid()", &[])
        .await?
        .get(0);
    let postmaster = parent(admin_pid as u32).ok_or("no /proc entry for the server")?;

    let mut writer = Writer::spawn(&pg.url(), &args.load).await?;
    let (rows, write_seconds);
    let before;
    let start;
    let mut consumer;
    let wal_start = current_wal(&admin).await?;
    if args.backlog {
        writer.go()?;
        (rows, write_seconds) = writer.written().await?;
        before = CpuSnapshot::take(postmaster);
        start = Instant::now();
        consumer = start_consumer(&args, &admin, &settings).await?;
    } else {
        consumer = start_consumer(&args, &admin, &settings).await?;
        before = CpuSnapshot::take(postmaster);
        start = Instant::now();
        writer.go()?;
        (rows, write_seconds) = writer.written().await?;
    }
    let lag_at_writer_end = rows.saturating_sub(*consumer.progress.borrow());
    let drained = timeout(
        Duration::from_secs(args.drain_seconds),
        consumer.progress.wait_for(|decoded| *decoded >= rows),
    )
    .await
    .is_ok();
    let after = CpuSnapshot::take(postmaster);
    let wall = start.elapsed().as_secs_f64();
    let cpu = CpuUse::between(&before, &after, consumer.backend_pid, writer.backend_pid);
    let wal_written = current_wal(&admin).await? - wal_start;
    let slot = match args.mode {
        Mode::Stream => STREAM_SLOT,
        Mode::Poll => POLL_SLOT,
    };
    // Every peek and advance decodes from restart_lsn, not from where the last poll
    // ended; how far back that is explains what a poll costs the server.
    let restart_trails: f64 = admin
        .query_one(
            "select pg_wal_lsn_diff(confirmed_flush_lsn, restart_lsn)::float8 \
             from pg_replication_slots where slot_name = $1",
            &[&slot],
        )
        .await?
        .get(0);
    consumer.stop.send_replace(true);
    let mut stats = consumer.task.await??;
    writer.finish().await?;

    let span = stats
        .last
        .map_or(wall, |last| last.duration_since(start).as_secs_f64());
    stats.latencies_us.sort_unstable();
    let pct = |p: f64| {
        let v = &stats.latencies_us;
        if v.is_empty() {
            return f64::NAN;
        }
        v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
    };
    let mode = match args.mode {
        Mode::Stream => "stream",
        Mode::Poll => "poll",
    };
    println!(
        "mode={mode} rate={} batch={} seconds={} backlog={} interval_ms={} max_changes={}",
        args.load.rate,
        args.load.batch,
        args.load.seconds,
        args.backlog,
        args.interval_ms,
        args.max_changes
    );
    println!(
        "written: {rows} rows in {write_seconds:.2} s ({:.0} rows/s)",
        rows as f64 / write_seconds
    );
    println!(
        "decoded: {} rows, {} transactions{}, {:.0} rows/s over {span:.2} s; \
         behind by {lag_at_writer_end} rows when the writer stopped; {}",
        stats.changes,
        stats.transactions,
        if args.mode == Mode::Poll {
            format!(" in {} polls", stats.polls)
        } else {
            String::new()
        },
        stats.changes as f64 / span,
        if drained {
            "drained".to_owned()
        } else {
            format!("NOT drained within {} s", args.drain_seconds)
        }
    );
    println!(
        "latency commit->decoded ms: p50 {:.2} p99 {:.2} max {:.2}",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "cpu s over {wall:.2} s: consumer {:.2}, decoder backend {:.2}, writer backend {:.2}, \
         server total {:.2}; {:.0} decoded rows per consumer cpu-s",
        cpu.consumer,
        cpu.decoder_backend,
        cpu.writer_backend,
        cpu.server_total,
        stats.changes as f64 / cpu.consumer.max(0.01)
    );
    println!(
        "decoder backend: {:.1} us per decoded row{}; WAL written {:.1} MB; \
         slot restart_lsn trails confirmed_flush_lsn by {:.1} MB",
        cpu.decoder_backend * 1e6 / stats.changes.max(1) as f64,
        if args.mode == Mode::Poll {
            format!(
                ", {:.1} ms per poll",
                cpu.decoder_backend * 1e3 / stats.polls.max(1) as f64
            )
        } else {
            String::new()
        },
        wal_written as f64 / 1e6,
        restart_trails / 1e6
    );
    drop(pg);
    Ok(())
}

/// The server's current WAL position.
async fn current_wal(admin: &Client) -> Result<u64, BoxError> {
    let lsn: PgLsn = admin
        .query_one("select pg_current_wal_lsn()", &[])
        .await?
        .get(0);
    Ok(lsn.into())
}
