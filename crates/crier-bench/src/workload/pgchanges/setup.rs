//! The database side of B3 before any row is written: the harness SQL for each row level
//! security variant, the connections to the database, and the claims each subscriber's
//! token carries.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::BenchError;

/// The table the workload writes and subscribes to, in schema `public`.
pub const TABLE: &str = "bench";

/// How a run sets up row level security on the table (see the module docs of
/// [`super`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RlsMode {
    /// RLS disabled; one `anon` token for everyone.
    Off,
    /// RLS enabled with a policy that passes every row; one claims group per user.
    All,
    /// RLS enabled; each row visible to its owner's subscribers only.
    PerUser,
}

impl RlsMode {
    /// Every variant, in the order reports list them.
    pub const ALL: [RlsMode; 3] = [RlsMode::Off, RlsMode::All, RlsMode::PerUser];

    /// The name used on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            RlsMode::Off => "off",
            RlsMode::All => "all",
            RlsMode::PerUser => "per-user",
        }
    }
}

impl fmt::Display for RlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RlsMode::ALL
            .into_iter()
            .find(|mode| mode.name() == s)
            .ok_or_else(|| format!("unknown rls variant {s:?}; expected off, all or per-user"))
    }
}

/// How rows reach the subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Postgres changes: a binding on the table, rows rendered by the server.
    PostgresChanges,
    /// Broadcast from the database: a trigger calls `realtime.broadcast_changes` for
    /// each row, into the private topic `bench`, which the subscribers join.
    DatabaseBroadcasts,
}

impl Via {
    /// Both, in the order a comparison runs them.
    pub const ALL: [Via; 2] = [Via::PostgresChanges, Via::DatabaseBroadcasts];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Via::PostgresChanges => "postgres-changes",
            Via::DatabaseBroadcasts => "database-broadcasts",
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Via {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Via::ALL
            .into_iter()
            .find(|via| via.name() == s)
            .ok_or_else(|| {
                format!("unknown delivery {s:?}; expected postgres-changes or database-broadcasts")
            })
    }
}

/// The trigger of [`Via::DatabaseBroadcasts`] and the policy that lets every subscriber
/// read the `bench` topic; for [`Via::PostgresChanges`], no trigger (the rows pay for
/// nothing they do not use). The policy needs `realtime.messages`, which a node with a
/// database creates at start.
fn via_sql(via: Via) -> &'static str {
    match via {
        Via::PostgresChanges => "drop trigger if exists bench_broadcast on public.bench;",
        Via::DatabaseBroadcasts => {
            "create or replace function public.bench_broadcast() returns trigger
  language plpgsql as $f$
begin
  perform realtime.broadcast_changes('bench', TG_OP, TG_OP, TG_TABLE_NAME, TG_TABLE_SCHEMA, NEW, null);
  return null;
end $f$;
drop trigger if exists bench_broadcast on public.bench;
create trigger bench_broadcast after insert on public.bench
  for each row execute function public.bench_broadcast();
grant usage on schema realtime to anon, authenticated;
grant select on realtime.messages to anon, authenticated;
drop policy if exists bench_topic_read on realtime.messages;
create policy bench_topic_read on realtime.messages for select to anon, authenticated
  using (realtime.topic() = 'bench');"
        }
    }
}

/// The harness SQL for one RLS variant. Idempotent: every run may apply it, and applying
/// another variant switches the table's policy.
///
/// It creates the roles `anon` and `authenticated`, the table
/// `bench (id bigserial primary key, owner text, body text, at timestamptz default clock_timestamp())`,
/// grants `select` on it to both roles, puts the policy of `rls` in place, and adds the
/// table to `publication` (creating the publication when missing).
/// Then it puts the trigger of `via` in place, or removes it.
pub fn setup_sql(publication: &str, rls: RlsMode, via: Via) -> String {
    let policy = match rls {
        RlsMode::Off => "alter table public.bench disable row level security;".to_owned(),
        RlsMode::All => "alter table public.bench enable row level security;\n\
             create policy bench_read on public.bench for select to authenticated using (true);"
            .to_owned(),
        RlsMode::PerUser => "alter table public.bench enable row level security;\n\
             create policy bench_read on public.bench for select to authenticated\n  \
             using (owner = current_setting('request.jwt.claims', true)::jsonb->>'sub');"
            .to_owned(),
    };
    // The publication's name appears both as a string literal and as an identifier.
    let name = publication.replace('\'', "''");
    let ident = publication.replace('"', "\"\"");
    format!(
        "do $$ begin
  if not exists (select 1 from pg_roles where rolname = 'anon') then create role anon nologin; end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then create role authenticated nologin; end if;
end $$;
create table if not exists public.bench (
  id bigserial primary key, owner text, body text, at timestamptz default clock_timestamp());
grant usage on schema public to anon, authenticated;
grant select on public.bench to anon, authenticated;
drop policy if exists bench_read on public.bench;
{policy}
do $$ begin
  if not exists (select 1 from pg_publication where pubname = '{name}') then
    create publication \"{ident}\";
  end if;
  if not exists (select 1 from pg_publication_tables
                 where pubname = '{name}' and schemaname = 'public' and tablename = 'bench') then
    alter publication \"{ident}\" add table public.bench;
  end if;
end $$;
{via}",
        via = via_sql(via)
    )
}

/// Applies [`setup_sql`] to the database at `database_url` (a role that may create
/// roles, tables and publications, e.g. the superuser).
pub async fn apply_setup(
    database_url: &str,
    publication: &str,
    rls: RlsMode,
    via: Via,
) -> Result<(), BenchError> {
    let client = connect(database_url).await?;
    client
        .batch_execute(&setup_sql(publication, rls, via))
        .await
        .map_err(|e| BenchError::Database(format!("setup SQL: {e}")))
}

/// The claims of each user's token, user `u` at index `u`: `anon` for everyone without
/// RLS (one entry), otherwise `{"role":"authenticated","sub":"user-<u>"}`. Whoever
/// signs them adds `exp`. Subscribers of one user share one token, hence one set of
/// claims: the server groups RLS checks by claims, and a per-token `iat` would split
/// the groups.
pub fn user_claims(rls: RlsMode, users: usize) -> Vec<Map<String, Value>> {
    let claims = |role: &str, sub: Option<String>| {
        let mut claims = Map::new();
        claims.insert("role".into(), Value::from(role));
        if let Some(sub) = sub {
            claims.insert("sub".into(), Value::from(sub));
        }
        claims
    };
    match rls {
        RlsMode::Off => vec![claims("anon", None)],
        RlsMode::All | RlsMode::PerUser => (0..users.max(1))
            .map(|u| claims("authenticated", Some(user_name(u as u64))))
            .collect(),
    }
}

/// The `sub` of user `u`, also written as the `owner` of the rows it owns.
pub(super) fn user_name(u: u64) -> String {
    format!("user-{u}")
}

/// Opens a plain connection, its I/O driven by a task of its own.
pub(super) async fn connect(url: &str) -> Result<tokio_postgres::Client, BenchError> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| BenchError::Database(format!("connect to {url}: {e}")))?;
    tokio::spawn(async move {
        // A broken connection also fails the writer's next statement, which is counted
        // there; this line says why.
        if let Err(e) = connection.await {
            eprintln!("postgres connection: {e}");
        }
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_read_and_write_by_name() {
        for mode in RlsMode::ALL {
            assert_eq!(mode.name().parse::<RlsMode>(), Ok(mode));
        }
        assert!("none".parse::<RlsMode>().unwrap_err().contains("per-user"));
    }

    #[test]
    fn the_sql_switches_policies_and_quotes_the_publication() {
        let off = setup_sql("supabase_realtime", RlsMode::Off, Via::PostgresChanges);
        assert!(off.contains("disable row level security"));
        assert!(!off.contains("create policy"));
        assert!(setup_sql("p", RlsMode::All, Via::PostgresChanges).contains("using (true)"));
        assert!(
            setup_sql("p", RlsMode::PerUser, Via::DatabaseBroadcasts).contains("jsonb->>'sub'")
        );
        let odd = setup_sql(r#"it's "odd""#, RlsMode::Off, Via::PostgresChanges);
        assert!(odd.contains(r#"pubname = 'it''s "odd"'"#), "{odd}");
        assert!(
            odd.contains(r#"create publication "it's ""odd""""#),
            "{odd}"
        );
    }

    #[test]
    fn claims_are_one_anon_or_one_per_user() {
        assert_eq!(user_claims(RlsMode::Off, 5).len(), 1);
        let users = user_claims(RlsMode::PerUser, 3);
        assert_eq!(users.len(), 3);
        assert_eq!(users[2]["sub"], "user-2");
        assert_eq!(users[2]["role"], "authenticated");
    }
}
