//! Change capture, measured two ways: the streaming replication protocol
//! ([`ChangeStream`]) against SQL polling of a second pgoutput slot
//! (`pg_logical_slot_peek_binary_changes` + `pg_replication_slot_advance`, Supabase's
//! way, every `--interval-ms`).
//!
//! ```text
//! cargo build --release -p crier-bench --bin crier-capture-bench
//! B=$CARGO_TARGET_DIR/release/crier-capture-bench
//! $B run --mode stream --rate 1000 --batch 1   --seconds 10   # latency at 1000 rows/s
//! $B run --mode poll   --rate 1000 --batch 1   --seconds 10
//! $B run --mode stream --rate 0    --batch 100 --seconds 10   # writer unthrottled
//! $B run --mode poll   --rate 0    --batch 100 --seconds 10
//! $B run --mode stream --rate 0    --batch 100 --seconds 10 --backlog  # drain only
//! $B run --mode poll   --rate 0    --batch 100 --seconds 10 --backlog
//! ```
//!
//! Each run starts its own private PostgreSQL (crier-testkit), creates
//! `bench (id bigint primary key, title text, n int, payload jsonb, at timestamptz)`, the
//! publication and the slot ([`replication::prepare`]), and in `poll` mode a second
//! pgoutput slot. A writer inserts `--batch` rows per transaction at `--rate` rows/s (0:
//! as fast as one connection can) for `--seconds`; the consumer decodes until it has seen
//! every written row, or gives up `--drain-seconds` after the writer stopped.
//!
//! Design choices, for people reading the numbers:
//! * The writer is this same binary run as a child process (`write`), so the consumer's
//!   CPU is this process's CPU alone. Both run a single-threaded tokio runtime.
//! * Latency is commit → decoded: the commit timestamp pgoutput's `Begin` carries against
//!   the wall clock when the change was decoded. Server and bench share the machine and
//!   its clock. Every row also carries `at = clock_timestamp()` (its insert time), for
//!   anyone reading the table afterwards.
//! * CPU is each task's `sum_exec_runtime` from `/proc/<pid>/schedstat` (summed over
//!   this process's threads): the counter `getrusage` derives utime + stime from, read
//!   from /proc because the workspace forbids `unsafe` (and so a libc call), and because
//!   it works for server processes as well. Server processes are the postmaster and its
//!   children. The "decoder backend" is the walsender (`stream`) or the polling
//!   connection's backend (`poll`). The writer's backend is reported apart: it does the
//!   same work in both modes. Autovacuum is off for `bench`, so a worker that comes and
//!   goes inside the window does not take CPU the snapshot cannot see.
//! * `--backlog` writes everything before the consumer starts. The consumer then drains
//!   alone, without a writer competing for the machine's cores: its pure decode capacity.
//! * `poll` hands changes off (here: counts them) before it advances the slot, so a crash
//!   between the two sends them again: at-least-once, like `stream`'s ack.
//!
//! The parts: `writer` (the child process that inserts rows), `consume` (the two ways of
//! reading the slot), `cpu` (CPU time from /proc) and `run` (one measured run and its
//! report).

use clap::{Args, Parser, Subcommand, ValueEnum};

mod consume;
mod cpu;
mod run;
mod writer;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const PUBLICATION: &str = "supabase_realtime";
const STREAM_SLOT: &str = "crier_bench";
const POLL_SLOT: &str = "crier_bench_poll";
/// The same session settings `ChangeStream` pins, so both modes decode the same text.
const SESSION_SETTINGS: &str = concat!(
    "set datestyle = 'ISO, MDY'; set timezone = 'UTC'; ",
    "set intervalstyle = 'postgres'; set extra_float_digits = 1"
);

#[derive(Parser)]
#[command(about = "Streaming replication vs SQL polling of a pgoutput slot")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// One measured run: a fresh server, a writer, and one consumer.
    Run(RunArgs),
    /// The writer (started by `run`; not meant to be run by hand).
    #[command(hide = true)]
    Write(WriteArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// The streaming replication protocol (`ChangeStream`), acking each commit.
    Stream,
    /// `pg_logical_slot_peek_binary_changes` every interval, then `pg_replication_slot_advance`.
    Poll,
}

#[derive(Args, Clone)]
struct Load {
    /// Rows per second; 0 writes as fast as one connection can.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Rows per transaction.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i64).range(1..))]
    batch: i64,
    /// How long the writer writes.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

#[derive(Args)]
struct RunArgs {
    /// How to read the slot.
    #[arg(long, value_enum)]
    mode: Mode,
    #[command(flatten)]
    load: Load,
    /// Poll interval (`poll`); Supabase's default is 100 ms.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// `upto_nchanges` of each peek (`poll`); Supabase's default is 100. It counts
    /// pgoutput messages (Begin, Relation, each row, Commit), and a transaction is never
    /// cut, so a poll can return more.
    #[arg(long, default_value_t = 100)]
    max_changes: i32,
    /// Write everything first, then start the consumer: its drain rate alone.
    #[arg(long)]
    backlog: bool,
    /// How long the consumer may take, after the writer stopped, to catch up.
    #[arg(long, default_value_t = 15)]
    drain_seconds: u64,
}

#[derive(Args)]
struct WriteArgs {
    /// The database to write to.
    #[arg(long)]
    url: String,
    #[command(flatten)]
    load: Load,
}

fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Cmd::Run(args) => runtime.block_on(run::run(args)),
        Cmd::Write(args) => runtime.block_on(writer::write(args)),
    }
}
