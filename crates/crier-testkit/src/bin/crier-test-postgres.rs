//! Starts a private PostgreSQL for a test written in another language (the Node
//! conformance suite), prints its URL on the first line of stdout, and stops and removes
//! it when stdin closes. Closing stdin (or the parent exiting) is the stop signal, so the
//! cluster is cleaned up even when the parent is killed.

use std::io::Read;

fn main() {
    let pg = match crier_testkit::TestPostgres::start() {
        Ok(pg) => pg,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::exit(1);
        }
    };
    println!("{}", pg.url());
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(pg);
}
