//! `crier bench`: the load generator (`crier-bench`) on the command line.

mod pgchanges;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use crier_bench::worker::Launch;
use crier_bench::workload::{self, FanoutOptions, IdleOptions, VuOptions};
use crier_bench::{Options, Rate, Run, ServerKind, Target, Vsn};
use crier_server::auth::{sign_token, unix_now};
use serde_json::{Map, Value};
use tokio::runtime::Runtime;

pub(crate) const BENCH_LONG_ABOUT: &str = "\
Load-test Crier or a peer server and measure deliveries/s, delivery ratio, \
publish-to-receive latency (p50/p95/p99/max), connect+join rate, and the server's RSS and \
CPU (with --server-pid).

Workloads:
  fanout     B1: N subscribers on one topic, one publisher; every --payload-bytes x --rates \
pair is measured on the same connections (rate `max`: as fast as deliveries come back).
  vus        B2: virtual users, each with an echo topic and a 6-member group topic, \
publishing to both every --period-ms; users are added until p99 or delivery breaks its limit.
  idle       N idle joined connections: server RSS per connection.
  pgchanges  B3 (Crier only): rows inserted into PostgreSQL at --rate, delivered as \
postgres changes to N subscribers, with or without row level security (--rls): \
commit-to-receive latency, deliveries/s, missing, stale and unauthorized deliveries, and the \
CPU of the server, the tool and PostgreSQL. The node must capture from --database-url.

Servers (fanout, vus, idle): crier (Phoenix v1/v2 JSON), raw-ws and ws (the `sub`/`pub` \
line protocol of bench/peers), socket.io, nats (its WebSocket listener). Runs above \
--per-worker connections are split over worker processes dialling from 127.0.0.x source \
addresses. Pin the server and the tool to different cores (taskset) for stable figures; \
bench/run does all of this for every server.";

/// Arguments of `crier bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// B1: one topic, N subscribers, one publisher.
    Fanout(FanoutArgs),
    /// B2: virtual users on echo and group topics, ramped until a limit breaks.
    Vus(VuArgs),
    /// Idle joined connections: the server's memory per connection.
    Idle(IdleArgs),
    /// B3: rows written to PostgreSQL, delivered as postgres changes (Crier only).
    #[command(long_about = pgchanges::LONG_ABOUT)]
    Pgchanges(pgchanges::PgChangesArgs),
    /// A reconnect storm: N connected clients join one (private) channel at once
    /// (Crier only); reports the time until all are answered, refusals, and the
    /// authorization checks and database round trips from /metrics.
    JoinStorm(JoinStormArgs),
}

#[derive(Debug, Args)]
struct JoinStormArgs {
    /// The WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:4000/socket/websocket")]
    url: String,
    /// The server's /metrics URL [default: from --url].
    #[arg(long)]
    metrics_url: Option<String>,
    /// The JWT secret to mint the clients' tokens with.
    #[arg(long, env = "CRIER_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// How many clients.
    #[arg(long, default_value_t = 5000)]
    clients: usize,
    /// The channel name.
    #[arg(long, default_value = "storm")]
    topic: String,
    /// The tokens' role.
    #[arg(long, default_value = "authenticated")]
    role: String,
    /// One token per client (`sub` user-N) instead of one shared by all: no two checks
    /// are alike, so none can be shared.
    #[arg(long)]
    distinct_users: bool,
    /// Join the public channel instead of the private one.
    #[arg(long)]
    public: bool,
    /// How long a join may wait for its answer.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
}

fn run_join_storm(args: JoinStormArgs, runtime: &Runtime) -> anyhow::Result<ExitCode> {
    let now = unix_now();
    let mint = |sub: String| {
        let mut claims = serde_json::Map::new();
        claims.insert("role".into(), args.role.clone().into());
        claims.insert("sub".into(), sub.into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + 3600).into());
        sign_token(&args.jwt_secret, &claims)
    };
    let tokens = if args.distinct_users {
        (0..args.clients)
            .map(|n| mint(format!("user-{n}")))
            .collect()
    } else {
        vec![mint("storm-user".to_owned())]
    };
    // ws://host:port/socket/websocket -> http://host:port/metrics
    let metrics_url = args.metrics_url.clone().or_else(|| {
        let (scheme, rest) = args.url.split_once("://")?;
        let host = rest.split('/').next()?;
        let scheme = if scheme == "wss" { "https" } else { "http" };
        Some(format!("{scheme}://{host}/metrics"))
    });
    let options = workload::JoinStormOptions {
        url: args.url.clone(),
        metrics_url,
        tokens,
        clients: args.clients,
        topic: args.topic.clone(),
        private: !args.public,
        connect_concurrency: 200,
        timeout: args.timeout,
    };
    let report = runtime.block_on(workload::join_storm(&options))?;
    println!(
        "join storm: {} clients ({}), {} joined, {} refused, all answered in {:.3} s; join latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        report.clients,
        if args.distinct_users {
            "one token each"
        } else {
            "one shared token"
        },
        report.joined,
        report.errors.values().sum::<usize>(),
        report.seconds_until_all_answered,
        report.p50_ms,
        report.p99_ms,
        report.max_ms,
    );
    if let (Some(checks), Some(queries)) =
        (report.authorization_checks, report.authorization_queries)
    {
        println!(
            "authorization: {checks} checks, {queries} database round trips ({:.1} % of the joins)",
            100.0 * queries / report.clients as f64
        );
    }
    for (reason, count) in &report.errors {
        println!("  {count} x {reason}");
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(Debug, Args)]
struct Common {
    /// The server's protocol: crier, raw-ws, ws, socket.io or nats.
    #[arg(long, default_value = "crier")]
    server: ServerKind,
    /// WebSocket URL [default: the server's usual local address, e.g.
    /// ws://127.0.0.1:4000/socket/websocket for crier].
    #[arg(long)]
    url: Option<String>,
    /// Crier: the JWT secret to mint a token with (or give --token).
    #[arg(long, env = "CRIER_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Crier: the `apikey` token to connect with.
    #[arg(long, env = "CRIER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Crier: Phoenix serializer version, 1 or 2.
    #[arg(long, default_value = "2")]
    vsn: Vsn,
    /// The server's process id: report its RSS and CPU.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Another node of the same Crier cluster (repeatable): connections are spread over
    /// --url and these, the publisher stays on --url.
    #[arg(long = "also-url", value_name = "URL")]
    also_urls: Vec<String>,
    /// Report this process's CPU too, as NAME (repeatable): another node, Redis.
    #[arg(long = "peer-pid", value_name = "NAME=PID", value_parser = parse_peer)]
    peer_pids: Vec<(String, u32)>,
    /// Write the results as JSON ({"runs": [...]}) to this file (`-` for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Connections per worker; larger runs use several worker processes.
    #[arg(long, default_value_t = 15_000)]
    per_worker: usize,
    /// Connects in flight at once, per worker.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Client read buffer per socket, in bytes.
    #[arg(long, default_value_t = 4096)]
    read_buffer: usize,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Debug, Args)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    /// Subscriber connections.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Payload sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100")]
    payload_bytes: Vec<usize>,
    /// Publish rates (messages/s, or `max`), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,max")]
    rates: Vec<Rate>,
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Warm-up seconds before each measured window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds to wait for a window's last deliveries.
    #[arg(long, default_value_t = 3.0)]
    drain: f64,
    /// Rate `max`: messages in flight per subscriber.
    #[arg(long, default_value_t = 32)]
    window: u64,
    /// Seconds between the last join and the idle memory reading.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
}

#[derive(Debug, Args)]
struct VuArgs {
    #[command(flatten)]
    common: Common,
    /// Virtual users in the first step.
    #[arg(long, default_value_t = 1000)]
    start: usize,
    /// Users added per step.
    #[arg(long, default_value_t = 1000)]
    step: usize,
    /// Users in the last step.
    #[arg(long, default_value_t = 16_000)]
    max: usize,
    /// Measured seconds per step.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Warm-up seconds after each step's joins.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds a window's last messages may take to count.
    #[arg(long, default_value_t = 1.0)]
    drain: f64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 100)]
    payload_bytes: usize,
    /// Each user publishes to each of its two topics every this many ms (500 = 2/s).
    #[arg(long, default_value_t = 500)]
    period_ms: u64,
    /// Stop when p99 exceeds this (Supabase's published p99 is 213 ms).
    #[arg(long, default_value_t = 213.0)]
    p99_limit_ms: f64,
    /// Stop when fewer deliveries than this share arrive.
    #[arg(long, default_value_t = 0.999)]
    min_delivery_ratio: f64,
}

#[derive(Debug, Args)]
struct IdleArgs {
    #[command(flatten)]
    common: Common,
    /// Connections to open.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Spread over this many topics.
    #[arg(long, default_value_t = 100)]
    topics: usize,
    /// Seconds between the last join and the memory reading.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
}

impl Common {
    fn options(&self) -> anyhow::Result<Options> {
        let token = match (&self.token, &self.jwt_secret, self.server) {
            (Some(token), _, _) => Some(token.clone()),
            (None, Some(secret), ServerKind::Crier) => Some(mint(secret)),
            (None, None, ServerKind::Crier) => {
                anyhow::bail!("crier needs --jwt-secret or --token (see `crier serve` output)")
            }
            _ => None,
        };
        let target = Target {
            kind: self.server,
            url: self
                .url
                .clone()
                .unwrap_or_else(|| self.server.default_url().to_owned()),
            vsn: self.vsn,
            token,
        };
        let program = std::env::current_exe().context("cannot find the crier executable")?;
        let mut options = Options::new(target);
        options.server_pid = self.server_pid;
        options.also_urls.clone_from(&self.also_urls);
        options.peer_pids.clone_from(&self.peer_pids);
        options.launch = Launch::Processes {
            program,
            args: vec!["bench-worker".into()],
        };
        options.per_worker = self.per_worker;
        options.concurrency = self.concurrency;
        options.read_buffer = self.read_buffer;
        options.progress = !self.no_progress;
        Ok(options)
    }
}

/// `NAME=PID`.
fn parse_peer(text: &str) -> Result<(String, u32), String> {
    let (name, pid) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=PID, got {text:?}"))?;
    let pid = pid
        .parse()
        .map_err(|_| format!("{pid:?} is not a process id"))?;
    Ok((name.to_owned(), pid))
}

/// A service-role token valid for a day.
fn mint(secret: &str) -> String {
    let mut claims = Map::new();
    claims.insert("role".into(), Value::from("service_role"));
    claims.insert("iss".into(), Value::from("crier-bench"));
    sign_for_a_day(secret, claims)
}

/// `claims` signed with `secret`, issued now and valid for a day (benchmarks are long
/// but not that long).
fn sign_for_a_day(secret: &str, mut claims: Map<String, Value>) -> String {
    let now = unix_now();
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now + 86_400));
    sign_token(secret, &claims)
}

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (common, runs) = match args.workload {
        Workload::Fanout(args) => {
            let options = args.common.options()?;
            let shape = FanoutOptions {
                subscribers: args.subscribers,
                payloads: args.payload_bytes,
                rates: args.rates,
                seconds: args.seconds,
                warmup: args.warmup,
                drain: args.drain,
                window: args.window,
                settle: args.settle,
            };
            let runs = runtime.block_on(workload::fanout(&options, &shape));
            (args.common, runs)
        }
        Workload::Vus(args) => {
            let options = args.common.options()?;
            let shape = VuOptions {
                start: args.start,
                step: args.step,
                max: args.max,
                seconds: args.seconds,
                warmup: args.warmup,
                drain: args.drain,
                payload_bytes: args.payload_bytes,
                period_ms: args.period_ms,
                p99_limit_ms: args.p99_limit_ms,
                min_delivery_ratio: args.min_delivery_ratio,
            };
            let runs = runtime.block_on(workload::vus(&options, &shape));
            (args.common, runs)
        }
        Workload::Idle(args) => {
            let options = args.common.options()?;
            let shape = IdleOptions {
                connections: args.connections,
                topics: args.topics,
                settle: args.settle,
            };
            let runs = runtime.block_on(workload::idle(&options, &shape));
            (args.common, runs)
        }
        Workload::Pgchanges(args) => return pgchanges::run(args, &runtime),
        Workload::JoinStorm(args) => return run_join_storm(args, &runtime),
    };
    let runs: Vec<Run> = runs?;
    crier_bench::report::print_table(&runs, &mut std::io::stdout())?;
    if let Some(path) = &common.json {
        crier_bench::report::write_json(&runs, path)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `crier bench-worker`: a worker process of a split run (started by `crier bench`).
pub(crate) fn worker() -> anyhow::Result<ExitCode> {
    crier_bench::run_worker_process()?;
    Ok(ExitCode::SUCCESS)
}
