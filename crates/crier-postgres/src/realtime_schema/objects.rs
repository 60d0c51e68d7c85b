//! The objects of the `realtime` schema Crier creates when they are missing, in the
//! order they must be made, each with the test of its presence and the privilege that
//! creating it takes.
//!
//! The functions are written against Supabase's signatures and behaviour (what a trigger
//! calls on Supabase works here): `send` and `send_binary` insert one broadcast row and
//! never fail the caller's transaction (an error becomes a warning); `broadcast_changes`
//! sends a trigger's row change as `{id, schema, table, operation, record, old_record}`.
//! They run with the caller's rights, as Supabase's do, so the caller's role needs an
//! `INSERT` policy on `realtime.messages` (a trigger runs as the role that wrote the row).

/// What creating an object takes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Needs {
    /// `CREATE` on the database (for a schema).
    CreateOnDatabase,
    /// `CREATE` on the schema `realtime`.
    CreateOnSchema,
}

impl Needs {
    /// The statement that gives `user` what it needs.
    pub(super) fn grant(self, user: &str, database: &str) -> String {
        match self {
            Needs::CreateOnDatabase => {
                format!("GRANT CREATE ON DATABASE \"{database}\" TO \"{user}\"")
            }
            Needs::CreateOnSchema => format!("GRANT CREATE ON SCHEMA realtime TO \"{user}\""),
        }
    }
}

/// One object.
pub(super) struct Object {
    /// How it is named in reports and errors.
    pub(super) name: &'static str,
    /// An SQL expression, true when it exists.
    exists: &'static str,
    /// The statements that make it (run in one transaction).
    create: &'static str,
    /// A grant to Supabase's roles that exist here (`%I` for the role), if any.
    grant: Option<&'static str>,
    pub(super) needs: Needs,
}

impl Object {
    /// Everything that makes it, its grants included.
    pub(super) fn create(&self) -> String {
        match self.grant {
            None => self.create.to_owned(),
            Some(grant) => format!("{}\n{}", self.create, grant_to_supabase_roles(grant)),
        }
    }
}

/// `current_user`, the database, then one column per object: true when it exists.
pub(super) fn presence_query() -> String {
    let columns: Vec<&str> = OBJECTS.iter().map(|object| object.exists).collect();
    format!(
        "select current_user::text, pg_catalog.current_database()::text, {}",
        columns.join(", ")
    )
}

/// A `DO` block that runs `grant` (with `%I` for the role) for each of Supabase's roles
/// that exists here: a plain PostgreSQL may have none of them.
fn grant_to_supabase_roles(grant: &str) -> String {
    format!(
        "do $grants$
declare
    r text;
begin
    for r in select rolname from pg_catalog.pg_roles
             where rolname in ('anon', 'authenticated', 'service_role', 'postgres')
    loop
        execute pg_catalog.format('{grant}', r);
    end loop;
end
$grants$;"
    )
}

pub(super) const OBJECTS: [Object; 6] = [
    Object {
        name: "schema realtime",
        exists: "exists (select 1 from pg_catalog.pg_namespace where nspname = 'realtime')",
        create: "create schema if not exists realtime;",
        grant: Some("grant usage on schema realtime to %I"),
        needs: Needs::CreateOnDatabase,
    },
    Object {
        name: "table realtime.messages",
        exists: "pg_catalog.to_regclass('realtime.messages') is not null",
        create: MESSAGES,
        grant: Some("grant select, insert, update on realtime.messages to %I"),
        needs: Needs::CreateOnSchema,
    },
    Object {
        name: "function realtime.topic()",
        exists: "pg_catalog.to_regprocedure('realtime.topic()') is not null",
        create: TOPIC,
        grant: None,
        needs: Needs::CreateOnSchema,
    },
    Object {
        name: "function realtime.send()",
        exists: "pg_catalog.to_regprocedure('realtime.send(jsonb, text, text, boolean)') is not null",
        create: SEND,
        grant: None,
        needs: Needs::CreateOnSchema,
    },
    Object {
        name: "function realtime.send_binary()",
        exists: "pg_catalog.to_regprocedure('realtime.send_binary(bytea, text, text, boolean)') is not null",
        create: SEND_BINARY,
        grant: None,
        needs: Needs::CreateOnSchema,
    },
    Object {
        name: "function realtime.broadcast_changes()",
        exists: "pg_catalog.to_regprocedure('realtime.broadcast_changes(text, text, text, text, text, record, record, text)') is not null",
        create: BROADCAST_CHANGES,
        grant: None,
        needs: Needs::CreateOnSchema,
    },
];

/// The table, its key, constraint and index, as Supabase's.
const MESSAGES: &str = "
create table realtime.messages (
    topic text not null,
    extension text not null,
    payload jsonb,
    event text,
    private boolean default false,
    updated_at timestamp without time zone not null default now(),
    inserted_at timestamp without time zone not null default now(),
    id uuid not null default gen_random_uuid(),
    binary_payload bytea,
    constraint messages_payload_exclusive check (payload is null or binary_payload is null),
    constraint messages_pkey primary key (id, inserted_at)
) partition by range (inserted_at);
create index messages_inserted_at_topic_index on only realtime.messages
    using btree (inserted_at desc, topic)
    where extension = 'broadcast' and private is true;
alter table realtime.messages enable row level security;";

/// `realtime.topic()`: the channel being authorized, set by the server per check.
const TOPIC: &str = "
create function realtime.topic() returns text
    language sql stable
    as $topic$ select nullif(pg_catalog.current_setting('realtime.topic', true), '')::text $topic$;";

/// `realtime.send`: one broadcast row. The payload gets the row's `id` unless it has one;
/// `realtime.topic` is set for the insert, so an `INSERT` policy can read it.
const SEND: &str = "
create function realtime.send(payload jsonb, event text, topic text, private boolean default true)
    returns void
    language plpgsql
    as $send$
declare
    message_id uuid := pg_catalog.gen_random_uuid();
begin
    perform pg_catalog.set_config('realtime.topic', topic, true);
    insert into realtime.messages (id, topic, extension, event, private, payload)
    values (
        message_id, topic, 'broadcast', event, private,
        case when payload ? 'id' then payload
             else payload || pg_catalog.jsonb_build_object('id', message_id) end
    );
exception when others then
    if sqlerrm like 'no partition of relation%' then
        raise warning 'ErrorSendingBroadcastMessage: MissingPartition: realtime.messages has no partition for %; Crier creates them a day back to three days ahead, every hour while it runs', pg_catalog.now()::date;
    else
        raise warning 'ErrorSendingBroadcastMessage: %', sqlerrm;
    end if;
end
$send$;";

/// `realtime.send_binary`: the same with opaque bytes, delivered as they are.
const SEND_BINARY: &str = "
create function realtime.send_binary(payload bytea, event text, topic text, private boolean default true)
    returns void
    language plpgsql
    as $send$
begin
    perform pg_catalog.set_config('realtime.topic', topic, true);
    insert into realtime.messages (topic, extension, event, private, binary_payload)
    values (topic, 'broadcast', event, private, payload);
exception when others then
    if sqlerrm like 'no partition of relation%' then
        raise warning 'ErrorSendingBroadcastMessage: MissingPartition: realtime.messages has no partition for %; Crier creates them a day back to three days ahead, every hour while it runs', pg_catalog.now()::date;
    else
        raise warning 'ErrorSendingBroadcastMessage: %', sqlerrm;
    end if;
end
$send$;";

/// `realtime.broadcast_changes`: a row trigger's change as one broadcast. A statement
/// trigger or an operation other than INSERT, UPDATE and DELETE is a warning too: the
/// caller's write goes on either way.
const BROADCAST_CHANGES: &str = "
create function realtime.broadcast_changes(
    topic_name text, event_name text, operation text, table_name text, table_schema text,
    new record, old record, level text default 'ROW'
)
    returns void
    language plpgsql
    as $changes$
begin
    if level is distinct from 'ROW' then
        raise warning 'ErrorSendingBroadcastMessage: broadcast_changes works for each row, not for each %', level;
        return;
    end if;
    if operation not in ('INSERT', 'UPDATE', 'DELETE') then
        raise warning 'ErrorSendingBroadcastMessage: unexpected operation %', operation;
        return;
    end if;
    perform realtime.send(
        pg_catalog.jsonb_build_object(
            'schema', table_schema,
            'table', table_name,
            'operation', operation,
            'record', case when operation = 'DELETE' then null else pg_catalog.to_jsonb(new) end,
            'old_record', case when operation = 'INSERT' then null else pg_catalog.to_jsonb(old) end
        ),
        event_name,
        topic_name
    );
exception when others then
    raise warning 'ErrorSendingBroadcastMessage: %', sqlerrm;
end
$changes$;";
