//! Running the `crier` binary from the integration tests: one way to spawn it, read its
//! stdout line by line with a deadline, start `crier serve` and learn its port, and stop
//! it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

pub(crate) const CRIER: &str = env!("CARGO_BIN_EXE_crier");
/// The failure guard on every wait: it only turns a hang into a failure.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// The binary, with no `CRIER_*` settings inherited from the developer's shell (every
/// flag of `crier serve` has one, so any of them would change what a test sees).
pub(crate) fn crier() -> Command {
    let mut command = Command::new(CRIER);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CRIER_") {
            command.env_remove(name);
        }
    }
    command
}

/// A spawned child whose stdout is read line by line; killed when dropped.
///
/// The lines are read on a thread into a channel, so every wait has a deadline, and so
/// the child's stdout keeps being drained for as long as it runs: a server never blocks
/// on, or writes into, a pipe nobody reads. Its stderr is inherited (the test runner
/// captures it and shows it with a failure).
pub(crate) struct Running {
    /// Taken by `terminate` and `kill`.
    child: Option<Child>,
    name: String,
    lines: mpsc::Receiver<String>,
    /// The thread reading stdout; taken by `first_line_then_close`.
    reader: Option<JoinHandle<()>>,
}

impl Running {
    /// `crier ARGS...`.
    pub(crate) fn spawn(args: &[&str]) -> Running {
        let mut command = crier();
        command.args(args);
        Running::start(command)
    }

    /// Any `crier` command (from [`crier`], perhaps with settings in its environment).
    pub(crate) fn start(command: Command) -> Running {
        Running::start_reading(command, usize::MAX)
    }

    /// Reads `count` lines of stdout at most, then closes the pipe.
    fn start_reading(mut command: Command, count: usize) -> Running {
        let name = command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("crier starts");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .take(count)
            {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running {
            child: Some(child),
            name,
            lines,
            reader: Some(reader),
        }
    }

    /// Starts `command`, returns its first line of stdout, and closes the pipe: whatever
    /// the child writes after that goes into a closed pipe (EPIPE).
    pub(crate) fn first_line_then_close(command: Command) -> (Running, String) {
        let mut running = Running::start_reading(command, 1);
        let first = running.next_line();
        // The reader ends after one line; once joined, the read end is certainly closed.
        running.reader.take().unwrap().join().unwrap();
        (running, first)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Whether the child has not exited yet.
    pub(crate) fn is_running(&mut self) -> bool {
        let child = self.child.as_mut().expect("running");
        child.try_wait().unwrap().is_none()
    }

    /// The next line of stdout.
    pub(crate) fn next_line(&self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|err| panic!("`crier {}`: no line ({err})", self.name))
    }

    /// The next line, which must be one JSON object.
    pub(crate) fn next_json(&self) -> Value {
        let line = self.next_line();
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|err| panic!("not a JSON line ({err}): {line}"));
        assert!(value.is_object(), "{line}");
        value
    }

    /// Skips lines up to the first that `wanted` accepts, and returns it.
    pub(crate) fn until(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let line = self.next_json();
            if wanted(&line) {
                return line;
            }
        }
    }

    /// Waits for `{"type":"status","status":"joined"}`: from then on the server delivers
    /// the channel's messages to this process.
    pub(crate) fn joined(&self) {
        self.until(|line| *line == json!({"type": "status", "status": "joined"}));
    }

    /// Reads the first line of a `crier serve`, "crier 0.1.0 listening on
    /// 127.0.0.1:PORT (...)": it is ready then. Returns the port.
    pub(crate) fn listening_port(&self) -> u16 {
        let first = self.next_line();
        listening_port_in(&first).unwrap_or_else(|| panic!("no port in {first}"))
    }

    /// SIGTERM, then the exit status.
    pub(crate) fn terminate(self) -> ExitStatus {
        self.terminate_with_output().0
    }

    /// SIGTERM, then the exit status and the lines of stdout not read yet (all of them,
    /// to the end: the child has exited).
    pub(crate) fn terminate_with_output(mut self) -> (ExitStatus, Vec<String>) {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = match rx.recv_timeout(WAIT) {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                panic!("`crier {}` did not exit after SIGTERM", self.name);
            }
        };
        let mut rest = Vec::new();
        loop {
            match self.lines.recv_timeout(WAIT) {
                Ok(line) => rest.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("`crier {}`: its stdout did not end", self.name)
                }
            }
        }
        (status, rest)
    }

    /// SIGKILL (no goodbye: no close frames, no drain), then waits for the exit.
    pub(crate) fn kill(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `crier serve --bind 127.0.0.1 --port PORT EXTRA_ARGS...`, on a free port without
/// `port`. Not started.
pub(crate) fn serve_command(port: Option<u16>, extra_args: &[&str]) -> Command {
    let port = port.unwrap_or(0).to_string();
    let mut command = crier();
    command
        .args(["serve", "--bind", "127.0.0.1", "--port", &port])
        .args(extra_args);
    command
}

/// `crier serve` on a free loopback port (see [`serve_on`]).
pub(crate) fn serve(extra_args: &[&str]) -> (Running, u16) {
    serve_on(None, extra_args)
}

/// `crier serve` on `port` (a free one without), ready: it has said where it listens.
/// Returns it and its port. The rest of its output is drained until it stops.
pub(crate) fn serve_on(port: Option<u16>, extra_args: &[&str]) -> (Running, u16) {
    let server = Running::start(serve_command(port, extra_args));
    let listening = server.listening_port();
    if let Some(port) = port {
        assert_eq!(
            listening, port,
            "`crier serve` listens on the port it was given"
        );
    }
    (server, listening)
}

/// The port in `crier serve`'s first line, "crier 0.1.0 listening on 127.0.0.1:PORT (...)".
pub(crate) fn listening_port_in(line: &str) -> Option<u16> {
    line.split("listening on 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|port| port.parse().ok())
}

/// Runs a command to its end (killed if it outlives the guard).
pub(crate) fn run(args: &[&str]) -> Output {
    let child = crier()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("crier starts");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("`crier {}` did not finish", args.join(" "));
        }
    }
}

/// `crier token --jwt-secret SECRET --exp 1h`, which must succeed: the token.
pub(crate) fn token(secret: &str) -> String {
    let output = run(&["token", "--jwt-secret", secret, "--exp", "1h"]);
    assert!(output.status.success(), "crier token: {output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned()
}

/// A loopback port nothing listens on (it was free a moment ago).
pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A plain HTTP/1.1 GET over a std socket: enough to probe the server from a sync test.
/// Reads the head, then `Content-Length` bytes of body (an upgraded connection stays
/// open, so reading to the end would never return).
pub(crate) fn http_get(port: u16, path: &str, headers: &str) -> String {
    http_request(port, "GET", path, headers, "", WAIT)
}

/// A plain HTTP/1.1 POST of a JSON `body`, answered as [`http_get`] answers. Its guard
/// is longer than [`WAIT`]: the broadcast API answers a batch once every message is
/// queued, which is at the pace of the slowest subscriber it waits for.
pub(crate) fn http_post_json(port: u16, path: &str, headers: &str, body: &str) -> String {
    let headers = format!(
        "{headers}Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    http_request(port, "POST", path, &headers, body, 6 * WAIT)
}

fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
    guard: Duration,
) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(guard)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n{body}"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    head + &String::from_utf8(body).unwrap()
}

/// A printed broadcast line without the stream position the server adds to its `meta`
/// (`offset`, `epoch`), and without `meta` when nothing else is in it.
pub(crate) fn without_position(line: &serde_json::Value) -> serde_json::Value {
    let mut line = line.clone();
    if let Some(object) = line.as_object_mut()
        && let Some(serde_json::Value::Object(meta)) = object.get_mut("meta")
    {
        meta.remove("offset");
        meta.remove("epoch");
        if meta.is_empty() {
            object.remove("meta");
        }
    }
    line
}
