//! `crier token`: mint a JWT signed with the server's secret.

use std::time::Duration;

use anyhow::{Context, bail};
use crier_server::auth::{sign_token, unix_now};
use serde_json::{Map, Value};

/// Arguments of `crier token`.
#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    /// The secret the server verifies tokens with.
    #[arg(long, env = "CRIER_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// The `role` claim (the Postgres role for row level security).
    #[arg(long, default_value = "anon")]
    role: String,
    /// The `sub` claim (the user id).
    #[arg(long)]
    sub: Option<String>,
    /// How long the token is valid, e.g. `90s`, `1h`, `30days`.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    exp: Duration,
}

pub(crate) fn run(args: &TokenArgs) -> anyhow::Result<()> {
    if args.jwt_secret.is_empty() {
        bail!("--jwt-secret is empty");
    }
    let now = unix_now();
    let lifetime = i64::try_from(args.exp.as_secs()).context("--exp is too long")?;
    let mut claims = Map::new();
    claims.insert("role".into(), Value::from(args.role.clone()));
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now.saturating_add(lifetime)));
    if let Some(sub) = &args.sub {
        claims.insert("sub".into(), Value::from(sub.clone()));
    }
    println!("{}", sign_token(&args.jwt_secret, &claims));
    Ok(())
}
