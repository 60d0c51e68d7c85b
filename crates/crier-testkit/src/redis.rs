//! A private Redis for one test: `redis-server` from the system, on a free loopback port,
//! with nothing saved to disk, gone when dropped. It can be stopped and started again on
//! the same port, as a Redis restart mid-run.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::postgres::HarnessError;

/// A private `redis-server`.
#[derive(Debug)]
pub struct TestRedis {
    port: u16,
    /// `redis-server` options beyond the harness's own.
    options: Vec<String>,
    child: Option<Child>,
}

impl TestRedis {
    /// Starts one; it answers `PING` when this returns.
    pub fn start() -> Result<TestRedis, HarnessError> {
        TestRedis::start_with(&[])
    }

    /// Starts one with more `redis-server` options (`["--requirepass", "secret"]`).
    pub fn start_with(options: &[&str]) -> Result<TestRedis, HarnessError> {
        let mut last = None;
        for _ in 0..5 {
            let mut redis = TestRedis {
                port: crate::postgres::free_port()?,
                options: options.iter().map(|o| (*o).to_owned()).collect(),
                child: None,
            };
            match redis.start_again() {
                Ok(()) => return Ok(redis),
                Err(err) => last = Some(err),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL: what it held is gone, as after a crash).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn start_again(&mut self) -> Result<(), HarnessError> {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(&self.options)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| HarnessError::Command {
                command: "redis-server".into(),
                output: format!("{err} (apt-get install redis-server)"),
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.pings() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(HarnessError::Command {
                    command: format!("redis-server --port {}", self.port),
                    output: format!("exited: {status}"),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(HarnessError::Command {
            command: format!("redis-server --port {}", self.port),
            output: "did not answer PING within 10 s".into(),
        })
    }

    fn pings(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        // Any answer means it is up: a server with a password answers `-NOAUTH`.
        let mut answer = [0u8; 1];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && matches!(&answer, b"+" | b"-")
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
