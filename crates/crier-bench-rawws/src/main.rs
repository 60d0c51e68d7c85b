//! `crier-rawws`: the raw WebSocket pub/sub server `crier bench` measures as the
//! transport ceiling. See the library docs for the protocol.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use clap::Parser;

/// Raw WebSocket pub/sub server: Crier's transport without Crier's protocol.
#[derive(Debug, Parser)]
#[command(name = "crier-rawws", version, about, long_about = None)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Port to listen on; 0 picks a free one (printed on the ready line).
    #[arg(long, default_value_t = 4701)]
    port: u16,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The same runtime `crier serve` builds: multi-thread, one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let address = SocketAddr::new(args.bind, args.port);
        // Crier's backlog (`crier_server::bind`), so connection storms meet the same queue.
        let socket = match address {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket
            .bind(address)
            .with_context(|| format!("cannot listen on {address}"))?;
        let listener = socket.listen(4096)?;
        let address = listener.local_addr()?;
        // The ready line benchmarks and tests wait for; flushed at once because stdout
        // is a pipe there, and ignoring a closed stdout so `| head -1` cannot kill us.
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "listening on {address}");
        let _ = stdout.flush();
        drop(stdout);
        crier_bench_rawws::serve(listener).await?;
        Ok(())
    })
}
