// Cases 6 and 7: a channel's access token and its expiry.
//
// The client connects with a long-lived apikey and calls setAuth(<short-lived token>) before
// subscribing, as supabase-js does with a user session, so the join carries
// `access_token`. Then:
//  - case 6: setAuth(<new token>) before expiry (an `access_token` push) keeps the channel
//    alive past the old token's expiry;
//  - case 7: without a refresh the server sends `system` "Token has expired N seconds ago"
//    and closes the channel (the subscribe callback gets CLOSED).
//
// The only timed wait is for the old token's expiry moment to pass, which is the scenario.
// Each case runs for both serializers concurrently to keep the file short.

import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { startServer } from '../lib/server.js'
import { ClientPool, VSNS, subscribeOk, send, setAuth, tapOf, uniqueName } from '../lib/clients.js'
import { Recorder, waitUntilTime } from '../lib/wait.js'
import { expOf } from '../lib/jwt.js'

const EXPIRED_MESSAGE = /^Token has expired \d+ seconds ago$/

describe('channel token refresh and expiry', { concurrency: true }, () => {
  let server
  const pool = new ClientPool()

  before(async () => {
    server = await startServer()
  })
  after(async () => {
    await pool.closeAll()
    await server?.stop()
  })

  /** A client whose channel joins with `accessToken`, recording broadcasts and system events. */
  async function joinWithToken(vsn, name, accessToken) {
    const client = pool.realtime(server, { vsn })
    await setAuth(client, accessToken)
    const received = new Recorder('broadcast')
    const system = new Recorder('system event')
    const channel = client
      .channel(name)
      .on('broadcast', { event: '*' }, received.push)
      .on('system', {}, system.push)
    const statuses = await subscribeOk(channel)
    const join = tapOf(client).sent.items.find((f) => f.topic === `realtime:${name}` && f.event === 'phx_join')
    assert.equal(join.payload.access_token, accessToken, 'the join carries the access token')
    return { client, channel, received, system, statuses }
  }

  async function sender(vsn, name) {
    const client = pool.realtime(server, { vsn })
    const channel = client.channel(name)
    await subscribeOk(channel)
    return channel
  }

  for (const vsn of VSNS) {
    it(`vsn ${vsn}: setAuth before expiry keeps the channel past the old token's exp`, async () => {
      const name = uniqueName('refresh')
      const shortToken = server.token({ ttl: 3 })
      const member = await joinWithToken(vsn, name, shortToken)
      const out = await sender(vsn, name)

      const longToken = server.token({ ttl: 3600 })
      await setAuth(member.client, longToken)
      const pushes = tapOf(member.client).sent.items.filter(
        (f) => f.topic === `realtime:${name}` && f.event === 'access_token'
      )
      assert.deepEqual(pushes.map((f) => f.payload), [{ access_token: longToken }])

      // The scenario: the first token's expiry moment passes (plus margin for the server's check).
      await waitUntilTime(expOf(shortToken) * 1000 + 1500)

      await send(out, { type: 'broadcast', event: 'still-here', payload: { vsn } })
      const got = await member.received
        .waitFor((m) => m.event === 'still-here', 'still-here')
        .catch((error) => {
          error.message += `; system events: ${member.system.describe()}; statuses: ${member.statuses.describe()}`
          throw error
        })
      assert.deepEqual(got.payload, { vsn })

      assert.deepEqual(member.system.items, [], 'no system message (expiry) was sent')
      assert.deepEqual(member.statuses.items.map((s) => s.status), ['SUBSCRIBED'], 'never CLOSED')
      assert.equal(member.channel.state, 'joined')
      assert.ok(
        !tapOf(member.client).frames.items.some((f) => f.topic === `realtime:${name}` && f.event === 'phx_close'),
        'the server sent no phx_close'
      )
    })

    it(`vsn ${vsn}: an expired channel token gets system "Token has expired" then CLOSED`, async () => {
      const name = uniqueName('expire')
      const shortToken = server.token({ ttl: 2 })
      const member = await joinWithToken(vsn, name, shortToken)
      const expMs = expOf(shortToken) * 1000
      const guardMs = Math.max(0, expMs - Date.now()) + 5000

      const sys = await member.system.waitFor(() => true, 'a system message', guardMs)
      assert.equal(sys.extension, 'system')
      assert.equal(sys.status, 'error')
      assert.match(sys.message, EXPIRED_MESSAGE)
      assert.equal(sys.channel, name, 'channel is the name without realtime:')
      assert.ok(Date.now() >= expMs, 'not sent before the token expired')

      const closed = await member.statuses.waitFor((s) => s.status !== 'SUBSCRIBED', 'CLOSED')
      assert.equal(closed.status, 'CLOSED')
      assert.deepEqual(member.statuses.items.map((s) => s.status), ['SUBSCRIBED', 'CLOSED'])

      const frames = tapOf(member.client)
        .frames.items.filter((f) => f.topic === `realtime:${name}` && ['system', 'phx_close'].includes(f.event))
        .map((f) => f.event)
      assert.deepEqual(frames, ['system', 'phx_close'], 'system first, then phx_close')
      assert.equal(member.channel.state, 'closed')
    })
  }

  it('vsn 2.0.0: a channel joined without access_token falls back to the connect token and expires with it', async () => {
    const name = uniqueName('expire-connect')
    const shortToken = server.token({ ttl: 2 })
    const client = pool.realtime(server, { vsn: '2.0.0', token: shortToken })
    const system = new Recorder('system event')
    const channel = client.channel(name).on('system', {}, system.push)
    const statuses = await subscribeOk(channel)
    const join = tapOf(client).sent.items.find((f) => f.topic === `realtime:${name}` && f.event === 'phx_join')
    assert.equal(join.payload.access_token, undefined, 'the join carries no access_token')

    const guardMs = Math.max(0, expOf(shortToken) * 1000 - Date.now()) + 5000
    const sys = await system.waitFor(() => true, 'a system message', guardMs)
    assert.equal(sys.status, 'error')
    assert.match(sys.message, EXPIRED_MESSAGE)
    await statuses.waitFor((s) => s.status === 'CLOSED', 'CLOSED')
  })
})
