//! Starting workers and talking to them: in-process threads, or child processes that
//! exchange [`Command`]s and [`Event`]s as JSON lines over stdin and stdout.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::{Command, Event, WorkerSpec};
use crate::BenchError;

/// The environment variable that hands a worker process its [`WorkerSpec`].
pub const SPEC_ENV: &str = "CRIER_BENCH_WORKER_SPEC";

/// Where workers run.
#[derive(Debug, Clone)]
pub enum Launch {
    /// Threads of this process (one file-descriptor limit for all of them).
    Threads,
    /// Child processes running `program args...`, which must call
    /// [`run_worker_process`] (`crier bench-worker` does).
    Processes {
        /// The executable.
        program: PathBuf,
        /// Its arguments.
        args: Vec<String>,
    },
}

/// The coordinator's end of one worker.
pub struct WorkerHandle {
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<Event>,
    /// The worker's process id, when it is a process of its own.
    pub pid: Option<u32>,
    _child: Option<tokio::process::Child>,
}

impl WorkerHandle {
    /// Starts a worker.
    pub fn spawn(spec: WorkerSpec, launch: &Launch) -> Result<WorkerHandle, BenchError> {
        match launch {
            Launch::Threads => Ok(spawn_thread(spec)),
            Launch::Processes { program, args } => spawn_process(spec, program, args),
        }
    }

    fn send(&self, command: Command) -> Result<(), BenchError> {
        self.commands
            .send(command)
            .map_err(|_| BenchError::Worker("worker has exited".into()))
    }

    /// The next final answer, passing `Progress` events to `on_progress`.
    async fn answer(&mut self, on_progress: &mut dyn FnMut(usize, usize)) -> Event {
        loop {
            match self.events.recv().await {
                Some(Event::Progress { joined, failed }) => on_progress(joined, failed),
                Some(event) => return event,
                None => {
                    return Event::Failed {
                        message: "worker exited".into(),
                    };
                }
            }
        }
    }
}

fn spawn_thread(spec: WorkerSpec) -> WorkerHandle {
    let (command_tx, command_rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name(format!("bench-worker-{}", spec.index))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, super::run(spec, command_rx, event_tx));
        })
        .expect("spawn worker thread");
    WorkerHandle {
        commands: command_tx,
        events: event_rx,
        pid: None,
        _child: None,
    }
}

fn spawn_process(
    spec: WorkerSpec,
    program: &PathBuf,
    args: &[String],
) -> Result<WorkerHandle, BenchError> {
    let spec_json = serde_json::to_string(&spec).expect("spec serializes");
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env(SPEC_ENV, spec_json)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| BenchError::Worker(format!("cannot start {}: {e}", program.display())))?;
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let (command_tx, mut command_rx) = mpsc::unbounded_channel::<Command>();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(command) = command_rx.recv().await {
            let mut line = serde_json::to_vec(&command).expect("command serializes");
            line.push(b'\n');
            if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let event = serde_json::from_str(&line).unwrap_or_else(|e| Event::Failed {
                message: format!("unreadable worker output {line:?}: {e}"),
            });
            if event_tx.send(event).is_err() {
                break;
            }
        }
    });
    Ok(WorkerHandle {
        commands: command_tx,
        events: event_rx,
        pid,
        _child: Some(child),
    })
}

/// The body of a worker process: reads its spec from [`SPEC_ENV`], commands from stdin,
/// writes events to stdout, and returns when told to quit or when stdin closes.
pub fn run_worker_process() -> Result<(), BenchError> {
    let spec = std::env::var(SPEC_ENV)
        .map_err(|_| BenchError::Worker(format!("{SPEC_ENV} is not set")))?;
    let spec: WorkerSpec = serde_json::from_str(&spec)
        .map_err(|e| BenchError::Worker(format!("bad {SPEC_ENV}: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Worker(format!("tokio runtime: {e}")))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        let (event_tx, mut event_rx) = mpsc::unbounded_channel::<Event>();
        tokio::task::spawn_local(async move {
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Command>(&line) {
                    Ok(command) => {
                        if command_tx.send(command).is_err() {
                            break;
                        }
                    }
                    Err(e) => eprintln!("bench worker: bad command {line:?}: {e}"),
                }
            }
        });
        let writer = tokio::task::spawn_local(async move {
            let mut stdout = tokio::io::stdout();
            while let Some(event) = event_rx.recv().await {
                let mut line = serde_json::to_vec(&event).expect("event serializes");
                line.push(b'\n');
                if stdout.write_all(&line).await.is_err() || stdout.flush().await.is_err() {
                    break;
                }
            }
        });
        super::run(spec, command_rx, event_tx).await;
        let _ = writer.await;
    });
    Ok(())
}

/// All of a run's workers, addressed together.
pub struct Pool {
    /// The workers; worker 0 hosts the fan-out publisher.
    pub workers: Vec<WorkerHandle>,
}

impl Pool {
    /// Sends one command to each worker (`commands[i]` to worker `i`) and collects their
    /// answers, reporting summed progress as it comes.
    pub async fn each(
        &mut self,
        commands: Vec<Command>,
        on_progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<Event>, BenchError> {
        assert_eq!(commands.len(), self.workers.len(), "one command per worker");
        for (worker, command) in self.workers.iter().zip(commands) {
            worker.send(command)?;
        }
        let mut progress = vec![(0usize, 0usize); self.workers.len()];
        let mut answers = Vec::with_capacity(self.workers.len());
        for i in 0..self.workers.len() {
            let mut report = |joined: usize, failed: usize| {
                progress[i] = (joined, failed);
                let (j, f) = progress
                    .iter()
                    .fold((0, 0), |(j, f), (a, b)| (j + a, f + b));
                on_progress(j, f);
            };
            let answer = self.workers[i].answer(&mut report).await;
            if let Event::Failed { message } = &answer {
                return Err(BenchError::Worker(format!("worker {i}: {message}")));
            }
            answers.push(answer);
        }
        Ok(answers)
    }

    /// Sends the same command to every worker and collects the answers.
    pub async fn all(&mut self, command: Command) -> Result<Vec<Event>, BenchError> {
        let commands = vec![command; self.workers.len()];
        self.each(commands, &mut |_, _| {}).await
    }

    /// Sends a command to worker 0 only.
    pub async fn first(&mut self, command: Command) -> Result<Event, BenchError> {
        let worker = &mut self.workers[0];
        worker.send(command)?;
        match worker.answer(&mut |_, _| {}).await {
            Event::Failed { message } => Err(BenchError::Worker(format!("worker 0: {message}"))),
            answer => Ok(answer),
        }
    }

    /// Process ids of worker processes (empty when workers are threads).
    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().filter_map(|w| w.pid).collect()
    }

    /// Tells every worker to close its connections and waits for them.
    pub async fn quit(mut self) {
        let _ = self.all(Command::Quit).await;
    }
}
