//! `crier token`: mint a JWT signed with the server's secret, or with a private JWK.

use std::time::Duration;

use anyhow::{Context, bail};
use crier_server::auth::{sign_token, sign_with_jwk, unix_now};
use serde_json::{Map, Value};

/// Arguments of `crier token`.
#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    /// The secret the server verifies tokens with (HS256).
    #[arg(
        long,
        env = "CRIER_JWT_SECRET",
        hide_env_values = true,
        required_unless_present = "jwk"
    )]
    jwt_secret: Option<String>,
    /// Sign with a private JWK instead (RSA, EC P-256/P-384, Ed25519 or oct): a file
    /// holding one key, or a set (`{"keys": [...]}`) from which --kid picks one. The
    /// token's header names the key's `kid`, so a server with the public set verifies it.
    #[arg(long, value_name = "FILE", conflicts_with = "jwt_secret")]
    jwk: Option<std::path::PathBuf>,
    /// With --jwk and a set: the `kid` of the key to sign with [default: the first
    /// private key].
    #[arg(long, requires = "jwk")]
    kid: Option<String>,
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
    let now = unix_now();
    let lifetime = i64::try_from(args.exp.as_secs()).context("--exp is too long")?;
    let mut claims = Map::new();
    claims.insert("role".into(), Value::from(args.role.clone()));
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now.saturating_add(lifetime)));
    if let Some(sub) = &args.sub {
        claims.insert("sub".into(), Value::from(sub.clone()));
    }
    let token = match (&args.jwk, &args.jwt_secret) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let key = pick_key(&text, args.kid.as_deref())
                .with_context(|| format!("no usable private key in {}", path.display()))?;
            sign_with_jwk(&key, &claims)
                .with_context(|| format!("cannot sign with {}", path.display()))?
        }
        (None, Some(secret)) if !secret.is_empty() => sign_token(secret, &claims),
        (None, _) => bail!("--jwt-secret is empty"),
    };
    println!("{token}");
    Ok(())
}

/// The private key to sign with: the file's one key, or the set's key with `kid` (the
/// first with a private part when no kid is given).
fn pick_key(text: &str, kid: Option<&str>) -> anyhow::Result<String> {
    let value: Value = serde_json::from_str(text).context("not JSON")?;
    let Some(keys) = value.get("keys").and_then(Value::as_array) else {
        return Ok(text.to_owned());
    };
    let private = |key: &&Value| key.get("d").is_some() || key.get("k").is_some();
    let found = match kid {
        Some(kid) => keys
            .iter()
            .find(|key| key.get("kid").and_then(Value::as_str) == Some(kid))
            .with_context(|| format!("no key with kid `{kid}`"))?,
        None => keys
            .iter()
            .find(private)
            .context("no key with a private part")?,
    };
    Ok(found.to_string())
}
