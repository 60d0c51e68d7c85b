// Case 11: postgres_changes. Crier captures row changes from a private PostgreSQL (logical
// replication, publication supabase_realtime) and realtime-js and phoenix.js receive them:
// payload shapes and values, REPLICA IDENTITY, filters, event filters, a wildcard table, row
// level security per user, and the error for a filter the server cannot parse.
//
// Waiting for a subscription: realtime-js reports SUBSCRIBED on the join reply, which the
// server sends before it has checked the bindings against the database. Only the `system`
// message that follows ("Subscribed to PostgreSQL", extension postgres_changes) says the
// subscription is live, so every test listens for it (channel.on('system', ...), registered
// before subscribe()) and writes rows only after it has arrived. Absence ("this callback did
// not get row X") is always shown with a later witness row that the callback does receive.

import { describe, it } from 'node:test'
import assert from 'node:assert/strict'

import { VSNS, phoenixJoin, send, startSubscribe, subscribeOk, tapOf, uniqueName } from '../lib/clients.js'
import { useServerWithDatabase } from '../lib/postgres.js'
import { Recorder } from '../lib/wait.js'

/** The database path is slower than a broadcast: a change goes through the WAL first. */
const DB_WAIT_MS = 15_000

const SCHEMA = `
  create role anon nologin;
  create role authenticated nologin;
  create table todos (
    id bigint primary key,
    title text,
    done boolean default false,
    tags text[],
    meta jsonb,
    due timestamptz,
    price numeric
  );
  create table notes (id bigint primary key, body text);
  alter table notes replica identity full;
  create table items (id bigint primary key, title text);
  create table events (id bigint primary key, owner text, body text);
  alter table events enable row level security;
  create policy own_events on events for select to authenticated
    using (owner = current_setting('request.jwt.claims', true)::jsonb->>'sub');
  grant select on all tables in schema public to anon, authenticated;
  create publication supabase_realtime for table todos, notes, items, events;
`

describe('postgres_changes', () => {
  const { server, db, pool } = useServerWithDatabase({ schema: SCHEMA })

  /**
   * Subscribes `channel` (its postgres_changes bindings already registered) and resolves
   * once the server's system message says the subscription is live: SUBSCRIBED alone comes
   * from the join reply, before the database has been asked (see the top of this file).
   */
  async function subscribeLive(channel) {
    const system = new Recorder('system message')
    channel.on('system', {}, system.push)
    const statuses = await subscribeOk(channel)
    const status = await system.waitFor(
      (m) => m.extension === 'postgres_changes',
      `the postgres_changes system message on ${channel.topic}`,
      DB_WAIT_MS
    )
    assert.deepEqual(status, {
      extension: 'postgres_changes',
      status: 'ok',
      message: 'Subscribed to PostgreSQL',
      channel: channel.topic.replace(/^realtime:/, ''),
    })
    return { statuses, system }
  }

  /** A channel on `client` with one postgres_changes binding recorded into a new Recorder. */
  function changesChannel(client, binding, name = uniqueName('pg')) {
    const changes = new Recorder('change')
    const channel = client.channel(name).on('postgres_changes', binding, changes.push)
    return { channel, changes }
  }

  /** `{eventType, id}` of each change, in order; the id of a delete comes from `old`. */
  const summary = (changes) =>
    changes.items.map((c) => ({ eventType: c.eventType, id: (c.eventType === 'DELETE' ? c.old : c.new).id }))

  const ISO_UTC_MILLIS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/

  function assertCommitTimestamp(change) {
    assert.match(change.commit_timestamp, ISO_UTC_MILLIS)
    const age = Date.now() - Date.parse(change.commit_timestamp)
    assert.ok(Math.abs(age) < 60_000, `commit_timestamp ${change.commit_timestamp} is not about now`)
  }

  for (const vsn of VSNS) {
    it(`vsn ${vsn}: INSERT, UPDATE and DELETE reach the callback with their values; old is the key under REPLICA IDENTITY DEFAULT`, async () => {
      const id = vsn === '1.0.0' ? 1 : 2
      const client = pool.realtime(server, { vsn })
      const { channel, changes } = changesChannel(client, { event: '*', schema: 'public', table: 'todos' })
      await subscribeLive(channel)

      await db.sql(`insert into todos values (${id}, 'write tests', false, '{a,"b c"}', '{"k": [1, 2.50], "s": "x"}',
                                              '2026-01-02 03:04:05.678+00', 10.50)`)
      await db.sql(`update todos set done = true, title = 'tested' where id = ${id}`)
      await db.sql(`delete from todos where id = ${id}`)
      const [insert, update, del] = await changes.waitForCount(3, 'insert, update and delete', DB_WAIT_MS)

      const row = {
        id,
        title: 'write tests',
        done: false,
        tags: ['a', 'b c'],
        meta: { k: [1, 2.5], s: 'x' },
        due: '2026-01-02T03:04:05.678+00:00',
        price: 10.5,
      }
      const base = { schema: 'public', table: 'todos', errors: null }
      assertCommitTimestamp(insert)
      assert.deepEqual(insert, {
        ...base,
        commit_timestamp: insert.commit_timestamp,
        eventType: 'INSERT',
        new: row,
        old: {},
      })
      assertCommitTimestamp(update)
      assert.deepEqual(update, {
        ...base,
        commit_timestamp: update.commit_timestamp,
        eventType: 'UPDATE',
        new: { ...row, done: true, title: 'tested' },
        old: { id },
      })
      assertCommitTimestamp(del)
      assert.deepEqual(del, {
        ...base,
        commit_timestamp: del.commit_timestamp,
        eventType: 'DELETE',
        new: {},
        old: { id },
      })
      assert.ok(insert.commit_timestamp <= update.commit_timestamp)
      assert.ok(update.commit_timestamp <= del.commit_timestamp)

      // On the wire: the server's payload realtime-js turned into the above.
      const frames = tapOf(client).frames.items.filter(
        (f) => f.topic === channel.topic && f.event === 'postgres_changes'
      )
      assert.equal(frames.length, 3)
      const [binding] = channel.bindings.postgres_changes
      assert.equal(typeof binding.id, 'number')
      assert.deepEqual(frames[0].payload.ids, [binding.id])
      assert.deepEqual(frames[0].payload.data.columns, [
        { name: 'id', type: 'int8' },
        { name: 'title', type: 'text' },
        { name: 'done', type: 'bool' },
        { name: 'tags', type: '_text' },
        { name: 'meta', type: 'jsonb' },
        { name: 'due', type: 'timestamptz' },
        { name: 'price', type: 'numeric' },
      ])
    })
  }

  it('REPLICA IDENTITY FULL: old is the whole previous row', async () => {
    const client = pool.realtime(server)
    const { channel, changes } = changesChannel(client, { event: '*', schema: 'public', table: 'notes' })
    await subscribeLive(channel)

    // The row is written after subscribing too: a change committed before the subscription
    // was confirmed may still reach it (it is matched when it is delivered, as in Supabase).
    await db.sql(`insert into notes values (10, 'before')`)
    await db.sql(`update notes set body = 'after' where id = 10`)
    await db.sql(`delete from notes where id = 10`)
    const [insert, update, del] = await changes.waitForCount(3, 'insert, update and delete', DB_WAIT_MS)

    assert.equal(insert.eventType, 'INSERT')
    assert.deepEqual(insert.new, { id: 10, body: 'before' })
    assert.deepEqual(insert.old, {})
    assert.equal(update.eventType, 'UPDATE')
    assert.deepEqual(update.new, { id: 10, body: 'after' })
    assert.deepEqual(update.old, { id: 10, body: 'before' })
    assert.equal(del.eventType, 'DELETE')
    assert.deepEqual(del.new, {})
    assert.deepEqual(del.old, { id: 10, body: 'after' })
  })

  it('filters, an event filter and a wildcard table: each callback gets exactly its rows', async () => {
    const client = pool.realtime(server)
    // Each channel also has a witness binding for the last row written (items id 100), so
    // its arrival proves every earlier change has been dispatched to that channel.
    const cases = [
      {
        binding: { event: '*', schema: 'public', table: 'items', filter: 'id=eq.2' },
        expected: [
          { eventType: 'INSERT', id: 2 },
          { eventType: 'UPDATE', id: 2 },
        ],
      },
      {
        binding: { event: '*', schema: 'public', table: 'items', filter: 'id=in.(1,3)' },
        expected: [
          { eventType: 'INSERT', id: 1 },
          { eventType: 'INSERT', id: 3 },
        ],
      },
      {
        binding: { event: '*', schema: 'public', table: 'items', filter: 'title=like.a%' },
        // 2 matches once its update renames it 'apricot'.
        expected: [
          { eventType: 'INSERT', id: 1 },
          { eventType: 'INSERT', id: 3 },
          { eventType: 'UPDATE', id: 2 },
        ],
      },
      {
        binding: { event: 'INSERT', schema: 'public', table: 'items' },
        expected: [1, 2, 3, 4].map((id) => ({ eventType: 'INSERT', id })),
      },
      {
        binding: { event: '*', schema: 'public', table: '*' },
        expected: [
          ...[1, 2, 3, 4].map((id) => ({ eventType: 'INSERT', id })),
          { eventType: 'UPDATE', id: 2 },
          { eventType: 'DELETE', id: 4 },
          { eventType: 'INSERT', id: 50 }, // notes
        ],
      },
    ]
    const witnessBinding = { event: 'INSERT', schema: 'public', table: 'items', filter: 'id=eq.100' }
    const subscribed = cases.map((testCase) => {
      const { channel, changes } = changesChannel(client, testCase.binding)
      const witness = new Recorder('witness')
      channel.on('postgres_changes', witnessBinding, witness.push)
      return { ...testCase, channel, changes, witness }
    })
    await Promise.all(subscribed.map(({ channel }) => subscribeLive(channel)))

    await db.sql(`insert into items values (1, 'apple'), (2, 'banana'), (3, 'avocado'), (4, 'cherry')`)
    await db.sql(`update items set title = 'apricot' where id = 2`)
    await db.sql(`delete from items where id = 4`)
    await db.sql(`insert into notes values (50, 'another table')`)
    await db.sql(`insert into items values (100, 'witness')`)

    for (const { binding, changes, witness, expected } of subscribed) {
      await witness.waitFor(() => true, `the witness row for ${JSON.stringify(binding)}`, DB_WAIT_MS)
      // Bindings the witness row also matches get it too, last: leave it out.
      const seen = summary(changes).filter((c) => c.id !== 100)
      assert.deepEqual(seen, expected, `binding ${JSON.stringify(binding)}`)
      const tables = new Set(changes.items.map((c) => c.table))
      assert.deepEqual([...tables].sort(), binding.table === '*' ? ['items', 'notes'] : ['items'])
    }
  })

  it('row level security: each user gets only the rows its JWT may select', async () => {
    const users = {}
    for (const sub of ['alice', 'bob']) {
      const client = pool.realtime(server, { token: server.token({ role: 'authenticated', sub }) })
      const { channel, changes } = changesChannel(client, { event: '*', schema: 'public', table: 'events' })
      users[sub] = { channel, changes }
    }
    await Promise.all(Object.values(users).map(({ channel }) => subscribeLive(channel)))

    await db.sql(`insert into events values (1, 'alice', 'a1'), (2, 'bob', 'b1')`)
    await db.sql(`insert into events values (3, 'alice', 'a2')`)
    await db.sql(`update events set body = 'b2' where id = 2`)
    // The witnesses: the last rows, one per user.
    await db.sql(`insert into events values (100, 'alice', 'end'), (101, 'bob', 'end')`)

    const alice = await users.alice.changes.waitFor((c) => c.new.id === 100, "alice's witness", DB_WAIT_MS)
    const bob = await users.bob.changes.waitFor((c) => c.new.id === 101, "bob's witness", DB_WAIT_MS)
    assert.equal(alice.new.owner, 'alice')
    assert.equal(bob.new.owner, 'bob')
    const rows = (changes) => changes.items.map((c) => `${c.eventType} ${c.new.id} ${c.new.owner} ${c.new.body}`)
    assert.deepEqual(rows(users.alice.changes), ['INSERT 1 alice a1', 'INSERT 3 alice a2', 'INSERT 100 alice end'])
    assert.deepEqual(rows(users.bob.changes), ['INSERT 2 bob b1', 'UPDATE 2 bob b2', 'INSERT 101 bob end'])
  })

  it('a filter the server cannot parse: a system error, the channel stays SUBSCRIBED and gets broadcasts', async () => {
    const client = pool.realtime(server)
    const name = uniqueName('pg-bad')
    const broadcasts = new Recorder('broadcast')
    const system = new Recorder('system message')
    const channel = client
      .channel(name)
      .on('postgres_changes', { event: '*', schema: 'public', table: 'items', filter: 'id=foo.1' }, () => {})
      .on('broadcast', { event: '*' }, broadcasts.push)
      .on('system', {}, system.push)
    const statuses = startSubscribe(channel)
    await statuses.waitFor(() => true, 'a subscribe status')

    // realtime-js has no handling of its own for a `system` error: subscribe() has reported
    // SUBSCRIBED from the join reply, and the error reaches only the system listeners.
    const error = await system.waitFor(
      (m) => m.extension === 'postgres_changes',
      'the postgres_changes system message',
      DB_WAIT_MS
    )
    assert.deepEqual(error, {
      extension: 'postgres_changes',
      status: 'error',
      message: 'Error parsing `filter` params: ["foo", "1"]',
      channel: name,
    })
    assert.equal(channel.state, 'joined')

    // Still joined: a broadcast from another client arrives.
    const other = pool.realtime(server)
    const sender = other.channel(name)
    await subscribeOk(sender)
    assert.equal(await send(sender, { type: 'broadcast', event: 'still-here', payload: { n: 1 } }), 'ok')
    const got = await broadcasts.waitFor((m) => m.event === 'still-here', 'the broadcast')
    assert.deepEqual(got.payload, { n: 1 })

    // The broadcast is the witness: nothing else reached the subscribe callback.
    assert.deepEqual(statuses.items.map((s) => s.status), ['SUBSCRIBED'])
  })

  it('an unknown table and an unknown filter column get the system errors Supabase sends', async () => {
    const client = pool.realtime(server)
    const cases = [
      {
        binding: { event: '*', schema: 'public', table: 'doesnotexist' },
        message:
          'Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given connect parameters: [event: *, schema: public, table: doesnotexist, filters: [], select: nil]',
      },
      {
        binding: { event: 'INSERT', schema: 'public', table: 'items', filter: 'nope=eq.1' },
        message:
          'Unable to subscribe to changes with given parameters. Exception: ERROR P0001 (raise_exception) invalid column for filter nope',
      },
    ]
    for (const { binding, message } of cases) {
      const system = new Recorder('system message')
      const { channel } = changesChannel(client, binding)
      channel.on('system', {}, system.push)
      const statuses = await subscribeOk(channel)
      const error = await system.waitFor(
        (m) => m.extension === 'postgres_changes',
        `the system message for ${JSON.stringify(binding)}`,
        DB_WAIT_MS
      )
      assert.equal(error.status, 'error')
      assert.equal(error.message, message)
      assert.deepEqual(statuses.items.map((s) => s.status), ['SUBSCRIBED'])
    }
  })

  it('postgres_changes_options.wait: SUBSCRIBED means live; a subscription that cannot work is CHANNEL_ERROR', async () => {
    const client = pool.realtime(server)
    // With wait, the server answers the join only once the changes are live, so a row
    // written right after SUBSCRIBED is delivered: no system message needs awaiting.
    const changes = new Recorder('change')
    const live = client
      .channel(uniqueName('pg-wait'), { config: { postgres_changes_options: { wait: true } } })
      .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'items' }, changes.push)
    await subscribeOk(live, DB_WAIT_MS)
    await db.sql(`insert into items values (500, 'right after SUBSCRIBED')`)
    const [insert] = await changes.waitForCount(1, 'the row written right after SUBSCRIBED', DB_WAIT_MS)
    assert.equal(insert.new.id, 500)

    const refused = client
      .channel(uniqueName('pg-wait-bad'), { config: { postgres_changes_options: { wait: true } } })
      .on('postgres_changes', { event: '*', schema: 'public', table: 'doesnotexist' }, () => {})
    const statuses = startSubscribe(refused)
    const first = await statuses.waitFor(() => true, 'a subscribe status', DB_WAIT_MS)
    assert.equal(first.status, 'CHANNEL_ERROR')
    assert.match(first.error, /^Unable to subscribe to changes with given parameters\. Please check Realtime is enabled/)
    await client.removeChannel(refused)
  })

  it('phoenix.js joins with a postgres_changes config and receives the raw postgres_changes event', async () => {
    const socket = pool.phoenix(server)
    const binding = { event: 'INSERT', schema: 'public', table: 'items', filter: 'id=eq.200' }
    const name = uniqueName('phx-pg')
    const channel = socket.channel(`realtime:${name}`, { config: { postgres_changes: [binding] } })
    const system = new Recorder('system message')
    const changes = new Recorder('change')
    channel.on('system', system.push)
    channel.on('postgres_changes', changes.push)

    const response = await phoenixJoin(channel)
    assert.equal(response.postgres_changes.length, 1)
    const { id, ...echoed } = response.postgres_changes[0]
    assert.deepEqual(echoed, binding)
    assert.equal(typeof id, 'number')
    // As with realtime-js, the subscription is live once the system message says so.
    const status = await system.waitFor((m) => m.extension === 'postgres_changes', 'the system message', DB_WAIT_MS)
    assert.equal(status.status, 'ok')

    await db.sql(`insert into items values (200, 'from phoenix')`)
    const change = await changes.waitFor(() => true, 'the change', DB_WAIT_MS)
    assert.deepEqual(change.ids, [id])
    assert.match(change.data.commit_timestamp, ISO_UTC_MILLIS)
    assert.deepEqual(change.data, {
      schema: 'public',
      table: 'items',
      commit_timestamp: change.data.commit_timestamp,
      type: 'INSERT',
      columns: [
        { name: 'id', type: 'int8' },
        { name: 'title', type: 'text' },
      ],
      record: { id: 200, title: 'from phoenix' },
      errors: null,
    })
  })
})
