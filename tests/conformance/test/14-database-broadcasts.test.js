// Case 14: broadcasts from the database with realtime-js. Triggers call realtime.send,
// realtime.send_binary and realtime.broadcast_changes; `crier serve --database-url`
// captures the rows from its slot and realtime-js receives them as it does from
// Supabase: `{type, event, payload, meta: {id}}`, binary payloads as ArrayBuffers
// (2.0.0), and the `system` message a `replication_ready` join asks for.

import { before, describe, it } from 'node:test'
import assert from 'node:assert/strict'

import { VSNS, subscribeOk, uniqueName } from '../lib/clients.js'
import { useServerWithDatabase } from '../lib/postgres.js'
import { Recorder } from '../lib/wait.js'

const ROLES = `
  create role anon nologin;
  create role authenticated nologin;
  create role service_role nologin bypassrls;
`

const SCHEMA = `
  create policy members_read on realtime.messages for select to authenticated
    using (realtime.topic() like 'room-%');
  create table todos (id int primary key, title text, room text not null);
  create function todos_broadcast() returns trigger language plpgsql as $$
  begin
    perform realtime.broadcast_changes(coalesce(NEW.room, OLD.room), TG_OP, TG_OP,
                                       TG_TABLE_NAME, TG_TABLE_SCHEMA, NEW, OLD);
    return null;
  end $$;
  create trigger todos_broadcast after insert or update or delete on todos
    for each row execute function todos_broadcast();
`

describe('broadcast from the database', () => {
  const { server, db, pool } = useServerWithDatabase({ schema: ROLES })
  before(() => db.sql(SCHEMA))

  const member = () => server.token({ role: 'authenticated', sub: 'reader' })

  /** A subscribed channel whose broadcasts are recorded, live for database broadcasts. */
  async function listen(name, { vsn = '2.0.0', isPrivate = true, config = {} } = {}) {
    const client = pool.realtime(server, { vsn, token: member() })
    const received = new Recorder('broadcast')
    const system = new Recorder('system message')
    const channel = client
      .channel(name, {
        config: { private: isPrivate, broadcast: { replication_ready: true }, ...config },
      })
      .on('broadcast', { event: '*' }, received.push)
      .on('system', {}, system.push)
    await subscribeOk(channel)
    await system.waitFor(
      (m) => m.message === 'Replication connection established',
      'database broadcasts to be live'
    )
    return { channel, received }
  }

  for (const vsn of VSNS) {
    it(`vsn ${vsn}: realtime.send reaches its private or public channel with meta.id`, async () => {
      const name = uniqueName('room')
      const privateOne = await listen(name, { vsn })
      const publicOne = await listen(name, { vsn, isPrivate: false })
      await db.sql(`select realtime.send('{"text": "hi"}', 'shout', '${name}')`)
      await db.sql(`select realtime.send('{"text": "all"}', 'shout', '${name}', false)`)

      const got = await privateOne.received.waitFor(() => true, 'the private message')
      assert.equal(got.type, 'broadcast')
      assert.equal(got.event, 'shout')
      assert.equal(got.payload.text, 'hi')
      assert.match(got.meta.id, /^[0-9a-f-]{36}$/)
      assert.equal(got.payload.id, got.meta.id)

      const open = await publicOne.received.waitFor(() => true, 'the public message')
      assert.equal(open.payload.text, 'all')
      assert.equal(publicOne.received.items.length, 1, 'the private one stayed private')
    })

    it(`vsn ${vsn}: broadcast_changes from a trigger sends the row`, async () => {
      const name = uniqueName('room')
      const { received } = await listen(name, { vsn })
      await db.sql(`insert into todos values (1${vsn === '1.0.0' ? 0 : 1}, 'milk', '${name}')`)
      await db.sql(`update todos set title = 'oat milk' where room = '${name}'`)
      const [insert, update] = await received.waitForCount(2, 'an insert and an update')
      assert.equal(insert.event, 'INSERT')
      assert.equal(insert.payload.operation, 'INSERT')
      assert.equal(insert.payload.schema, 'public')
      assert.equal(insert.payload.table, 'todos')
      assert.equal(insert.payload.record.title, 'milk')
      assert.equal(insert.payload.old_record, null)
      assert.equal(update.payload.operation, 'UPDATE')
      assert.equal(update.payload.record.title, 'oat milk')
      assert.equal(update.payload.old_record.title, 'milk')
      assert.equal(update.meta.id, update.payload.id)
    })
  }

  it('vsn 2.0.0: send_binary arrives as an ArrayBuffer', async () => {
    const name = uniqueName('room')
    const { received } = await listen(name)
    await db.sql(`select realtime.send_binary('\\x00ff10'::bytea, 'blob', '${name}')`)
    const got = await received.waitFor(() => true, 'the binary message')
    assert.equal(got.event, 'blob')
    assert.ok(got.payload instanceof ArrayBuffer, `payload is ${Object.prototype.toString.call(got.payload)}`)
    assert.deepEqual([...new Uint8Array(got.payload)], [0x00, 0xff, 0x10])
    assert.match(got.meta.id, /^[0-9a-f-]{36}$/)
  })

  it('a replayed message comes first, marked replayed; live ones follow unmarked', async () => {
    const name = uniqueName('room')
    await db.sql(`select realtime.send('{"n": 1}', 'note', '${name}')`)
    const { received } = await listen(name, { config: { broadcast: { replication_ready: true, replay: { since: 0 } } } })
    await db.sql(`select realtime.send('{"n": 2}', 'note', '${name}')`)
    const [replayed, live] = await received.waitForCount(2, 'the replayed and the live message')
    assert.equal(replayed.payload.n, 1)
    assert.equal(replayed.meta.replayed, true)
    assert.equal(live.payload.n, 2)
    assert.equal(live.meta.replayed, undefined)
    assert.equal(received.items.length, 2)
  })
})
