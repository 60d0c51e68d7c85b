//! `crier listen`: print every message of a channel as JSON lines until interrupted.

use crier_client::{
    ChangeEvent, ChannelEvent, ChannelOptions, Error, PostgresChange, PostgresChangesFilter,
};
use futures_util::StreamExt;
use serde_json::Value;

use super::lines::Line;
use super::{ConnectionArgs, Exit, Shutdown, ended, print_line, unless_signalled};

/// `crier listen --help`: the line shapes are this command's interface.
pub(crate) const LISTEN_LONG_ABOUT: &str = r#"Join a channel and print every message it receives, one JSON object per line on
stdout, until interrupted (Ctrl-C or SIGTERM: exit 0).

Lines ("type" comes first):
  {"type":"status","status":"joined"}
      the channel's status: joining, joined, leaving, closed, or
      {"type":"status","status":"errored","error":"...","retrying":true};
      {"type":"status","status":"resumed","gap_ms":1200} after a rejoin (messages
      sent during the gap were missed)
  {"type":"broadcast","event":"cursor","payload":{"x":1}}
      a broadcast ("meta" too when it has one); a binary payload prints as
      {"type":"broadcast","event":"blob","payload_base64":"AAEC"}
  {"type":"presence","event":"join","key":"alice","meta":{"status":"online","phx_ref":"F-x"}}
      with --presence: "join" and "leave" (key, meta), "update" (key, "old", "new"),
      then {"type":"presence","event":"sync"} once the state reflects them
  {"type":"postgres_changes","event":"INSERT","schema":"public","table":"todos",
   "commit_timestamp":"...","new":{"id":1},"old":null}
      with --postgres; "new" is null for a DELETE, "old" for an INSERT
  {"type":"system","extension":"postgres_changes","status":"error","message":"..."}
      a system message from the server

--postgres EVENT:SCHEMA[.TABLE][:FILTER] subscribes to row changes and may repeat.
EVENT is *, INSERT, UPDATE or DELETE (any case); without .TABLE every table of the
schema; FILTER is column=op.value:
  --postgres 'INSERT:public.todos'  --postgres '*:public.todos:id=eq.1'  --postgres '*:public'
The command waits for the server to confirm the changes are live. When it cannot
(a server without a database says so), that is printed as a system line and the
command keeps printing broadcasts.

A server that cannot be reached, a refused key, a refused join or a bad argument
prints one line on stderr and exits non-zero."#;

/// Arguments of `crier listen`.
#[derive(Debug, clap::Args)]
pub(crate) struct ListenArgs {
    /// The channel name (without `realtime:`).
    topic: String,
    /// Print only the broadcasts with this event (other lines are not filtered).
    #[arg(long)]
    event: Option<String>,
    /// Join with presence and print presence events.
    #[arg(long)]
    presence: bool,
    /// Subscribe to postgres changes: EVENT:SCHEMA[.TABLE][:FILTER], repeatable.
    #[arg(long = "postgres", value_name = "SPEC")]
    postgres: Vec<String>,
    /// A private channel: the server checks its policies (on Supabase and on Crier with
    /// a database: row level security on `realtime.messages`).
    #[arg(long)]
    private: bool,
    /// With --private: first print the messages the database stored for the channel
    /// since this Unix time in milliseconds (at most 25, `meta.replayed` set).
    #[arg(long, value_name = "UNIX_MS", requires = "private")]
    replay_since: Option<i64>,
    /// Print a `system` line once broadcasts from the database are live for the channel
    /// ("Replication connection established"); the server shuts the channel down when
    /// they are not within a minute.
    #[arg(long)]
    replication_ready: bool,
    /// Start from this place in the channel's stream (a broadcast's `meta.epoch` and
    /// `meta.offset`): the broadcasts after it are printed first, then a `resumed` status
    /// line says whether they were all still there.
    #[arg(long, value_name = "EPOCH:OFFSET", value_parser = parse_resume)]
    resume: Option<(String, u64)>,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// Parses `EPOCH:OFFSET` (the epoch has no colon; the offset is a whole number).
fn parse_resume(text: &str) -> Result<(String, u64), String> {
    let (epoch, offset) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not EPOCH:OFFSET"))?;
    let offset = offset
        .parse()
        .map_err(|_| format!("{offset:?} is not an offset (a whole number)"))?;
    if epoch.is_empty() {
        return Err(format!("{text:?} has no epoch"));
    }
    Ok((epoch.to_owned(), offset))
}

/// Parses `EVENT:SCHEMA[.TABLE][:FILTER]`. The filter is everything after the second
/// colon, so a value may hold colons (`created_at=gt.2026-01-01T00:00:00`).
fn parse_postgres_spec(spec: &str) -> Result<PostgresChangesFilter, String> {
    let problem = |why: &str| {
        format!(
            "--postgres '{spec}': {why}; expected EVENT:SCHEMA[.TABLE][:FILTER], e.g. 'INSERT:public.todos'"
        )
    };
    let mut parts = spec.splitn(3, ':');
    let event = match parts
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase()
        .as_str()
    {
        "*" => ChangeEvent::All,
        "INSERT" => ChangeEvent::Insert,
        "UPDATE" => ChangeEvent::Update,
        "DELETE" => ChangeEvent::Delete,
        _ => return Err(problem("the event is one of *, INSERT, UPDATE, DELETE")),
    };
    let Some(target) = parts.next() else {
        return Err(problem("no schema"));
    };
    let filter = parts.next();
    let (schema, table) = match target.split_once('.') {
        Some((schema, table)) => (schema, Some(table)),
        None => (target, None),
    };
    if schema.is_empty() {
        return Err(problem("no schema"));
    }
    let mut parsed = PostgresChangesFilter::new(event, schema);
    match table {
        Some("") => return Err(problem("no table after the `.`")),
        Some(table) if table.contains('.') => {
            return Err(problem("one `.` between schema and table"));
        }
        Some(table) => parsed = parsed.table(table),
        None => {}
    }
    if let Some(filter) = filter {
        let valid = filter.split_once('=').is_some_and(|(column, rest)| {
            !column.is_empty() && rest.split_once('.').is_some_and(|(op, _)| !op.is_empty())
        });
        if !valid {
            return Err(problem("the filter is column=op.value, e.g. id=eq.1"));
        }
        parsed = parsed.filter(filter);
    }
    Ok(parsed)
}

pub(super) async fn run(args: ListenArgs) -> Result<(), Exit> {
    let filters = args
        .postgres
        .iter()
        .map(|spec| parse_postgres_spec(spec).map_err(Exit::usage))
        .collect::<Result<Vec<_>, _>>()?;
    let mut shutdown = Shutdown::install()?;
    let Some(client) = unless_signalled(&mut shutdown, args.connection.connect())
        .await
        .transpose()?
    else {
        return Ok(());
    };

    let mut options = ChannelOptions::default().wait_for_postgres(true);
    options.presence = args.presence;
    options.private = args.private;
    options.replay = args.replay_since.map(|since| (since, None));
    options.replication_ready = args.replication_ready;
    options.resume_from = args.resume;
    let channel = client.channel_with(&args.topic, options);
    for filter in filters {
        // Registers the filter; its changes are read from `events` with everything else,
        // so the lines come out in the order the messages came in.
        drop(channel.postgres_changes::<Value>(filter));
    }
    let mut events = channel.events();
    let subscribe = channel.subscribe();
    tokio::pin!(subscribe);
    let mut listener = Listener {
        topic: &args.topic,
        event: args.event.as_deref(),
        presence: args.presence,
        subscribed: false,
        postgres_error_printed: false,
        last_system_error: None,
    };
    loop {
        // Events first: a system message is printed before the subscribe result it causes.
        tokio::select! {
            biased;
            () = shutdown.signalled() => return Ok(()),
            event = events.next() => match event {
                Some(event) => listener.on_event(&event)?,
                None => return Err(Exit::failed("the client stopped")),
            },
            result = &mut subscribe, if !listener.subscribed => listener.on_subscribed(result)?,
        }
    }
}

/// What `listen` prints, and when it stops.
struct Listener<'a> {
    topic: &'a str,
    event: Option<&'a str>,
    presence: bool,
    subscribed: bool,
    postgres_error_printed: bool,
    last_system_error: Option<String>,
}

impl Listener<'_> {
    fn on_event(&mut self, event: &ChannelEvent) -> Result<(), Exit> {
        match event {
            ChannelEvent::Broadcast(message) => {
                if self.event.is_none_or(|wanted| wanted == message.event) {
                    print_line(&Line::broadcast(message))?;
                }
            }
            ChannelEvent::Presence(presence) => {
                if self.presence {
                    print_line(&Line::presence(presence))?;
                }
            }
            ChannelEvent::PostgresChange(routed) => {
                let decoded = PostgresChange::<Value>::from_data(&routed.data);
                print_line(&Line::postgres_change(routed, &decoded))?;
            }
            ChannelEvent::System(system) => {
                if system.extension == "postgres_changes" && system.status != "ok" {
                    self.postgres_error_printed = true;
                }
                if system.extension == "system" && system.status == "error" {
                    self.last_system_error = Some(system.message.clone());
                }
                print_line(&Line::system(system))?;
            }
            ChannelEvent::Status(status) => {
                print_line(&Line::status(status))?;
                if self.subscribed
                    && let Some(exit) = ended(self.topic, status, self.last_system_error.as_deref())
                {
                    return Err(exit);
                }
            }
            ChannelEvent::Resumed {
                gap,
                recovered,
                missed,
            } => print_line(&Line::resumed(*gap, *recovered, *missed))?,
        }
        Ok(())
    }

    fn on_subscribed(&mut self, result: Result<(), Error>) -> Result<(), Exit> {
        match result {
            Ok(()) => {}
            // Joined, but without postgres changes: say so, and keep listening.
            Err(Error::PostgresChangesUnavailable { message }) => {
                if !self.postgres_error_printed {
                    print_line(&Line::System {
                        extension: "postgres_changes",
                        status: "error",
                        message: &message,
                    })?;
                }
            }
            Err(err) => {
                return Err(Exit::failed(format!(
                    "cannot join channel `{}`: {err}",
                    self.topic
                )));
            }
        }
        self.subscribed = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_specs_parse() {
        let spec = |s: &str| parse_postgres_spec(s).unwrap();
        assert_eq!(
            spec("INSERT:public.todos"),
            PostgresChangesFilter::new(ChangeEvent::Insert, "public").table("todos")
        );
        assert_eq!(
            spec("*:public.todos:id=eq.1"),
            PostgresChangesFilter::new(ChangeEvent::All, "public")
                .table("todos")
                .filter("id=eq.1")
        );
        assert_eq!(
            spec("*:public"),
            PostgresChangesFilter::new(ChangeEvent::All, "public")
        );
        assert_eq!(
            spec("delete:app.users"),
            PostgresChangesFilter::new(ChangeEvent::Delete, "app").table("users")
        );
        assert_eq!(
            spec("Update:public.events:at=gt.2026-01-01T00:00:00"),
            PostgresChangesFilter::new(ChangeEvent::Update, "public")
                .table("events")
                .filter("at=gt.2026-01-01T00:00:00")
        );
    }

    #[test]
    fn bad_postgres_specs_say_why() {
        for (bad, why) in [
            ("", "the event is one of"),
            ("INSERT", "no schema"),
            ("INSERT:", "no schema"),
            ("UPSERT:public.todos", "the event is one of"),
            ("INSERT:.todos", "no schema"),
            ("INSERT:public.", "no table"),
            ("INSERT:public.a.b", "one `.`"),
            ("INSERT:public.todos:", "the filter is"),
            ("INSERT:public.todos:id", "the filter is"),
            ("INSERT:public.todos:id=1", "the filter is"),
            ("INSERT:public.todos:=eq.1", "the filter is"),
        ] {
            let err = parse_postgres_spec(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains("EVENT:SCHEMA[.TABLE][:FILTER]"), "{err}");
        }
    }
}
