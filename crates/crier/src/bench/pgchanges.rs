//! `crier bench pgchanges` (B3): its arguments, setup modes, tokens, run and report.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use crier_bench::workload::pgchanges::{self, RlsMode, Via};
use crier_bench::workload::{self, PgChangesOptions};
use crier_bench::{Options, ServerKind, Target, Vsn};
use tokio::runtime::Runtime;

use super::sign_for_a_day;

pub(super) const LONG_ABOUT: &str = "\
B3: rows written to PostgreSQL and delivered by Crier as postgres changes.

The harness SQL (--print-setup shows it; idempotent, applied on every run unless \
--no-setup) creates the roles anon and authenticated, the table public.bench and its row \
level security variant, and adds the table to --publication. N subscribers join \
realtime:bench with one INSERT binding and wait for `Subscribed to PostgreSQL`; --writers \
connections insert --rate rows/s; after --warmup, --seconds are measured, then up to \
--drain seconds are given to the last deliveries.

Variants (--rls): off (one anon token, every subscriber gets every row), all (policy \
`using (true)`, one set of claims per user: every row is checked per user and passes), \
per-user (each row visible to its owner's subscribers only). --rls all and per-user need \
--jwt-secret to mint one token per user.

Latency is from the row's `at` (clock_timestamp() at the insert) to receipt, on one \
machine's clock. The report ends with its figures as one JSON line; --json writes a B3 run \
row like the other workloads'. Give --server-pid and --pg-pid (the postmaster) for CPU.";

#[derive(Debug, Args)]
pub(super) struct PgChangesArgs {
    /// The node's WebSocket URL; it must capture from --database-url [default:
    /// ws://127.0.0.1:4000/socket/websocket].
    #[arg(long)]
    url: Option<String>,
    /// The node's JWT secret: one token is minted per user (needed for --rls all and
    /// per-user).
    #[arg(long, env = "CRIER_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// The `apikey` token of every subscriber when there is no --jwt-secret (--rls off
    /// only).
    #[arg(long, env = "CRIER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The database the node captures from (a role that may create roles, tables and
    /// publications, e.g. the superuser).
    #[arg(
        long,
        env = "CRIER_DATABASE_URL",
        hide_env_values = true,
        required_unless_present = "print_setup"
    )]
    database_url: Option<String>,
    /// The publication the node streams (`crier serve --publication`).
    #[arg(long, default_value = "supabase_realtime")]
    publication: String,
    /// Subscriber sockets, one channel each.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Give each subscriber its own topic (realtime:bench-<i>) instead of all sharing
    /// realtime:bench.
    #[arg(long)]
    topic_per_subscriber: bool,
    /// Row level security: off, all or per-user.
    #[arg(long, default_value = "off")]
    rls: RlsMode,
    /// How rows reach the subscribers: postgres-changes (a binding on the table), or
    /// database-broadcasts (a trigger calls realtime.broadcast_changes into the private
    /// topic bench; needs --rls off).
    #[arg(long, default_value = "postgres-changes")]
    via: Via,
    /// Distinct users (sub claims user-0, ...): subscriber i is user-<i % users>, row
    /// seq belongs to user-<seq % users> [default: one per subscriber].
    #[arg(long)]
    users: Option<usize>,
    /// Rows per second, all writers together; 0 writes as fast as they can.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Rows per transaction (one INSERT statement each).
    #[arg(long, default_value_t = 1)]
    rows_per_tx: usize,
    /// Writer connections, sharing the rate.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Length of each row's body, in bytes.
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds of writing before the measured window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// After the writers stop, wait at most this long for missing deliveries.
    #[arg(long, default_value_t = 10.0)]
    drain: f64,
    /// Do not run the setup SQL (the table and its RLS must already be as --rls says).
    #[arg(long)]
    no_setup: bool,
    /// Run the setup SQL and exit.
    #[arg(long)]
    setup_only: bool,
    /// Print the setup SQL and exit.
    #[arg(long)]
    print_setup: bool,
    /// The server's process id: report its CPU and RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The PostgreSQL postmaster's pid: report the CPU of the whole database server.
    #[arg(long)]
    pg_pid: Option<u32>,
    /// Also write the result as JSON ({"runs": [...]}, one B3 run) to this file (`-` for
    /// stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Connects and joins in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Client read buffer per socket, in bytes.
    #[arg(long, default_value_t = 4096)]
    read_buffer: usize,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// `crier bench pgchanges`: its setup modes, its tokens, the run and its report.
pub(super) fn run(args: PgChangesArgs, runtime: &Runtime) -> anyhow::Result<ExitCode> {
    if args.print_setup {
        println!(
            "{}",
            pgchanges::setup_sql(&args.publication, args.rls, args.via)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let database_url = args.database_url.context("--database-url is required")?;
    if args.setup_only {
        runtime.block_on(pgchanges::apply_setup(
            &database_url,
            &args.publication,
            args.rls,
            args.via,
        ))?;
        println!(
            "setup: table public.{}, rls {}, via {}",
            pgchanges::TABLE,
            args.rls,
            args.via
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut shape = PgChangesOptions::new(database_url);
    shape.publication = args.publication;
    shape.subscribers = args.subscribers;
    shape.topic_per_subscriber = args.topic_per_subscriber;
    shape.rls = args.rls;
    shape.via = args.via;
    shape.users = args.users;
    shape.rate = args.rate;
    shape.rows_per_tx = args.rows_per_tx;
    shape.writers = args.writers;
    shape.body_bytes = args.body_bytes;
    shape.seconds = args.seconds;
    shape.warmup = args.warmup;
    shape.drain = args.drain;
    shape.setup = !args.no_setup;
    shape.pg_pid = args.pg_pid;
    // The secret wins over a token: per-user claims are what the RLS variants measure.
    shape.tokens = match (&args.jwt_secret, args.token) {
        (Some(secret), _) => pgchanges::user_claims(args.rls, shape.user_count())
            .into_iter()
            .map(|claims| sign_for_a_day(secret, claims))
            .collect(),
        (None, Some(token)) if args.rls == RlsMode::Off => vec![token],
        (None, Some(_)) => {
            anyhow::bail!(
                "--rls {} needs --jwt-secret to mint a token per user",
                args.rls
            )
        }
        (None, None) => {
            anyhow::bail!("pgchanges needs --jwt-secret or --token (see `crier serve` output)")
        }
    };
    let mut options = Options::new(Target {
        kind: ServerKind::Crier,
        url: args
            .url
            .unwrap_or_else(|| ServerKind::Crier.default_url().to_owned()),
        vsn: Vsn::V2,
        token: None,
    });
    options.server_pid = args.server_pid;
    options.concurrency = args.concurrency;
    options.read_buffer = args.read_buffer;
    options.progress = !args.no_progress;
    let report = runtime.block_on(workload::pgchanges(&options, &shape))?;
    report.print(&mut std::io::stdout())?;
    if let Some(path) = &args.json {
        crier_bench::report::write_json(&[report.run()], path)?;
    }
    Ok(ExitCode::SUCCESS)
}
