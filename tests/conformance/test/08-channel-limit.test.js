// Case 9: one socket may hold 100 channels (the default max_channels_per_client); the 101st
// join is refused with `ChannelRateLimitReached: Too many channels`, and leaving a channel
// frees its slot. The server runs with a high join rate so only the channel limit applies.
// Supabase Realtime delays join errors by a 5 s backoff (protocol.md §4), so the guard
// allows for it, and the two serializers run concurrently.

import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { startServer } from '../lib/server.js'
import { ClientPool, VSNS, startSubscribe, subscribeOk, tapOf, uniqueName } from '../lib/clients.js'

const LIMIT = 100
const REFUSAL = 'ChannelRateLimitReached: Too many channels'
// realtime-js times a join out after 10 s; the server's refusal must come before that.
const REFUSAL_GUARD_MS = 12_000

describe('channels per client', { concurrency: true }, () => {
  let server
  const pool = new ClientPool()

  before(async () => {
    server = await startServer({ args: ['--max-joins-per-second', '10000'] })
  })
  after(async () => {
    await pool.closeAll()
    await server?.stop()
  })

  for (const vsn of VSNS) {
    it(`vsn ${vsn}: the 101st channel gets CHANNEL_ERROR ${REFUSAL}`, async () => {
      const client = pool.realtime(server, { vsn })
      const prefix = uniqueName('limit')
      const channels = Array.from({ length: LIMIT }, (_, i) => client.channel(`${prefix}-${i}`))
      await Promise.all(channels.map((channel) => subscribeOk(channel, 10_000)))
      assert.equal(channels.filter((c) => c.state === 'joined').length, LIMIT)

      const extra = client.channel(`${prefix}-extra`)
      const statuses = startSubscribe(extra)
      const first = await statuses.waitFor(() => true, 'a status for the 101st channel', REFUSAL_GUARD_MS)
      assert.equal(first.status, 'CHANNEL_ERROR', `got ${first.status}: ${first.error}`)
      assert.ok(first.error?.includes(REFUSAL), `error message: ${JSON.stringify(first.error)}`)

      const reply = tapOf(client).frames.items.find(
        (f) => f.topic === `realtime:${prefix}-extra` && f.event === 'phx_reply'
      )
      assert.deepEqual(reply.payload, { status: 'error', response: { reason: REFUSAL } })

      // The refusal closed neither the socket nor the other channels.
      assert.ok(client.isConnected())
      assert.equal(channels.filter((c) => c.state === 'joined').length, LIMIT)

      // Leaving one channel frees a slot for a new one.
      assert.equal(await client.removeChannel(extra), 'ok')
      assert.equal(await client.removeChannel(channels[0]), 'ok')
      const leave = tapOf(client).sent.items.find(
        (f) => f.topic === `realtime:${prefix}-0` && f.event === 'phx_leave'
      )
      await tapOf(client).frames.waitFor(
        (f) => f.topic === `realtime:${prefix}-0` && f.event === 'phx_reply' && f.ref === leave.ref,
        'the reply to the leave'
      )
      await subscribeOk(client.channel(`${prefix}-replacement`), REFUSAL_GUARD_MS)
    })
  }
})
