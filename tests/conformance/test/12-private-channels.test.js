// Case 12: private channels with realtime-js and phoenix.js. `crier serve --database-url`
// creates the realtime schema at start; the policies below are Supabase-style policies on
// realtime.messages. Members read and write broadcasts and presence on `room-*`; a
// stranger's subscribe fails with Supabase's reason; a member without presence write gets
// an error from track(); a broadcast a member may not write never arrives (shown with a
// later witness message that does).

import { before, describe, it } from 'node:test'
import assert from 'node:assert/strict'

import { VSNS, assertJoinResponse, phoenixJoin, send, startSubscribe, subscribeOk, uniqueName } from '../lib/clients.js'
import { useServerWithDatabase } from '../lib/postgres.js'
import { Recorder } from '../lib/wait.js'

const ROLES = `
  create role anon nologin;
  create role authenticated nologin;
  create role service_role nologin bypassrls;
`

const POLICIES = `
  create function public.sub() returns text language sql stable
    as $$ select current_setting('request.jwt.claims', true)::jsonb->>'sub' $$;
  grant execute on function public.sub() to anon, authenticated;
  create policy members_read on realtime.messages for select to authenticated
    using (realtime.topic() like 'room-%');
  create policy members_write on realtime.messages for insert to authenticated
    with check (realtime.topic() like 'room-%' and public.sub() <> 'quiet');
`

describe('private channels', () => {
  const { server, db, pool } = useServerWithDatabase({ schema: ROLES })
  // After the server started: it created realtime.messages.
  before(() => db.sql(POLICIES))

  const member = (sub) => server.token({ role: 'authenticated', sub })
  const privateChannel = (client, name, config = {}) =>
    client.channel(name, { config: { private: true, ...config } })

  for (const vsn of VSNS) {
    it(`vsn ${vsn}: members broadcast to each other; a stranger is refused`, async () => {
      const name = uniqueName('room')
      const alice = pool.realtime(server, { vsn, token: member('alice') })
      const bob = pool.realtime(server, { vsn, token: member('bob') })
      const got = new Recorder('broadcast')
      const bobChannel = privateChannel(bob, name).on('broadcast', { event: 'hi' }, got.push)
      await subscribeOk(bobChannel)
      const aliceChannel = privateChannel(alice, name, { broadcast: { ack: true } })
      await subscribeOk(aliceChannel)
      assert.equal(await send(aliceChannel, { type: 'broadcast', event: 'hi', payload: { n: 1 } }), 'ok')
      const message = await got.waitFor(() => true, 'bob to get alice\'s broadcast')
      assert.deepEqual(message.payload, { n: 1 })

      const stranger = pool.realtime(server, { vsn, token: server.token() })
      const statuses = startSubscribe(privateChannel(stranger, name))
      const first = await statuses.waitFor(() => true, 'the stranger\'s subscribe status')
      assert.equal(first.status, 'CHANNEL_ERROR')
      assert.match(
        first.error,
        new RegExp(`Unauthorized: You do not have permissions to read from this Channel topic: ${name}`)
      )
    })

    it(`vsn ${vsn}: a write the policy denies never arrives`, async () => {
      const name = uniqueName('room')
      const quiet = pool.realtime(server, { vsn, token: member('quiet') })
      const loud = pool.realtime(server, { vsn, token: member('loud') })
      const reader = pool.realtime(server, { vsn, token: member('reader') })
      const got = new Recorder('broadcast')
      await subscribeOk(privateChannel(reader, name).on('broadcast', { event: 'e' }, got.push))
      const quietChannel = privateChannel(quiet, name)
      await subscribeOk(quietChannel)
      // A public channel on the same socket, with ack: its reply comes after the server
      // has dealt with everything the socket sent before it, the denied broadcast too.
      const quietPublic = quiet.channel(uniqueName('lobby'), { config: { broadcast: { ack: true } } })
      await subscribeOk(quietPublic)
      const loudChannel = privateChannel(loud, name)
      await subscribeOk(loudChannel)
      await send(quietChannel, { type: 'broadcast', event: 'e', payload: { from: 'quiet' } })
      assert.equal(await send(quietPublic, { type: 'broadcast', event: 'x', payload: {} }), 'ok')
      await send(loudChannel, { type: 'broadcast', event: 'e', payload: { from: 'loud' } })
      const first = await got.waitFor(() => true, 'the witness broadcast')
      assert.deepEqual(first.payload, { from: 'loud' })
      assert.equal(got.items.length, 1, 'only the allowed broadcast arrived')
    })

    it(`vsn ${vsn}: presence with policies`, async () => {
      const name = uniqueName('room')
      const alice = pool.realtime(server, { vsn, token: member('alice') })
      const events = new Recorder('presence join')
      const aliceChannel = privateChannel(alice, name, { presence: { key: 'alice' } }).on(
        'presence',
        { event: 'join' },
        events.push
      )
      await subscribeOk(aliceChannel)
      assert.equal(await aliceChannel.track({ online: true }), 'ok')
      await events.waitFor((e) => e.key === 'alice', 'alice\'s own join')

      const quiet = pool.realtime(server, { vsn, token: member('quiet') })
      const quietChannel = privateChannel(quiet, name, { presence: { key: 'quiet' } })
      await subscribeOk(quietChannel)
      assert.equal(await quietChannel.track({ online: true }), 'error', 'the write policy denies quiet')
    })
  }

  it('a private join replays the stored messages, oldest first', async () => {
    const name = uniqueName('room')
    await db.sql(`
      select realtime.send('{"n": 1}', 'note', '${name}');
      select realtime.send('{"n": 2}', 'note', '${name}');
      select realtime.send('{"n": 3}', 'note', '${name}');
    `)
    const client = pool.realtime(server, { vsn: '2.0.0', token: member('reader') })
    const got = new Recorder('replayed broadcast')
    const channel = privateChannel(client, name, { broadcast: { replay: { since: 0, limit: 2 } } }).on(
      'broadcast',
      { event: 'note' },
      got.push
    )
    await subscribeOk(channel)
    const replayed = await got.waitForCount(2, 'two replayed messages')
    assert.deepEqual(
      replayed.map((m) => m.payload.n),
      [2, 3]
    )
    for (const message of replayed) {
      assert.equal(message.meta.replayed, true)
      assert.equal(message.meta.id, message.payload.id)
    }
  })

  it('phoenix.js joins a private channel with the Supabase payload', async () => {
    const socket = pool.phoenix(server, { token: member('carol') })
    const channel = socket.channel(`realtime:${uniqueName('room')}`, {
      config: { private: true },
      access_token: member('carol'),
    })
    assertJoinResponse(await phoenixJoin(channel))
    const refused = socket.channel(`realtime:${uniqueName('hall')}`, { config: { private: true } })
    await assert.rejects(phoenixJoin(refused), /Unauthorized: You do not have permissions to read/)
  })
})
