// Case 2: broadcast between realtime-js clients, and the `self` and `ack` options.

import { describe, it } from 'node:test'
import assert from 'node:assert/strict'

import { VSNS, subscribeOk, send, broadcastFrames, tapOf, uniqueName, withoutPosition } from '../lib/clients.js'
import { useServer } from '../lib/suite.js'
import { Recorder } from '../lib/wait.js'

describe('broadcast', () => {
  const { server, pool } = useServer()

  /** A subscribed channel on a new client that records every broadcast it receives. */
  async function member(vsn, name, broadcast = {}) {
    const client = pool.realtime(server, { vsn })
    const received = new Recorder('broadcast')
    const channel = client
      .channel(name, { config: { broadcast } })
      .on('broadcast', { event: '*' }, received.push)
    await subscribeOk(channel)
    return { client, channel, received }
  }

  for (const vsn of VSNS) {
    describe(`vsn ${vsn}`, () => {
      it('a broadcast reaches the other client with type, event and payload', async () => {
        const name = uniqueName('bc')
        const sender = await member(vsn, name)
        const receiver = await member(vsn, name)
        const payload = { text: 'hello', n: 42, nested: { list: [1, 'two', null], ok: true } }

        assert.equal(await send(sender.channel, { type: 'broadcast', event: 'greet', payload }), 'ok')

        const got = await receiver.received.waitFor((m) => m.event === 'greet', 'greet')
        assert.equal(got.type, 'broadcast')
        assert.deepEqual(got.payload, payload)
        assert.equal(receiver.received.length, 1)
      })

      it('event filters: a listener for one event does not get another', async () => {
        const name = uniqueName('bc-filter')
        const sender = await member(vsn, name)
        const client = pool.realtime(server, { vsn })
        const onlyB = new Recorder('broadcast')
        const all = new Recorder('broadcast')
        const channel = client
          .channel(name)
          .on('broadcast', { event: 'b' }, onlyB.push)
          .on('broadcast', { event: '*' }, all.push)
        await subscribeOk(channel)

        await send(sender.channel, { type: 'broadcast', event: 'a', payload: { i: 1 } })
        await send(sender.channel, { type: 'broadcast', event: 'b', payload: { i: 2 } })

        await all.waitForCount(2)
        assert.deepEqual(all.items.map((m) => m.event), ['a', 'b'], 'order of one sender is kept')
        assert.deepEqual(onlyB.items.map((m) => m.payload), [{ i: 2 }])
      })

      it('self:true delivers the sender its own broadcast', async () => {
        const name = uniqueName('bc-self')
        const sender = await member(vsn, name, { self: true })

        await send(sender.channel, { type: 'broadcast', event: 'echo', payload: { me: 1 } })

        const got = await sender.received.waitFor((m) => m.event === 'echo', 'own echo')
        assert.deepEqual(withoutPosition(got), { type: 'broadcast', event: 'echo', payload: { me: 1 } })
        assert.ok(Number.isInteger(got.meta.offset) && typeof got.meta.epoch === 'string', 'meta has the position')
      })

      it('ack:true makes send() resolve "ok" from the server reply', async () => {
        const name = uniqueName('bc-ack')
        const sender = await member(vsn, name, { ack: true })
        const receiver = await member(vsn, name)

        // With ack:true realtime-js resolves only on the server's reply ('timed out' otherwise).
        const status = await send(
          sender.channel,
          { type: 'broadcast', event: 'acked', payload: { a: 1 } },
          { timeout: 4000 }
        )
        assert.equal(status, 'ok')
        const replies = tapOf(sender.client).frames.items.filter(
          (f) => f.topic === `realtime:${name}` && f.event === 'phx_reply'
        )
        assert.equal(replies.length, 2, 'one reply for the join, one for the acked broadcast')
        assert.deepEqual(replies[1].payload, { status: 'ok', response: {} })
        const got = await receiver.received.waitFor((m) => m.event === 'acked', 'acked')
        assert.deepEqual(got.payload, { a: 1 })
      })

      it('self:false (default) does not deliver the sender its own broadcast', async () => {
        const name = uniqueName('bc-noself')
        const sender = await member(vsn, name, { self: false })
        const other = await member(vsn, name)

        await send(sender.channel, { type: 'broadcast', event: 'A', payload: { from: 'sender' } })
        // A has been fanned out once the other client has it; only then does B go out, so
        // anything the server sent the sender for A would arrive before B.
        await other.received.waitFor((m) => m.event === 'A', 'A at the other client')
        await send(other.channel, { type: 'broadcast', event: 'B', payload: { from: 'other' } })
        await sender.received.waitFor((m) => m.event === 'B', 'B at the sender')

        assert.deepEqual(sender.received.items.map(withoutPosition), [
          { type: 'broadcast', event: 'B', payload: { from: 'other' } },
        ])
        assert.deepEqual(
          broadcastFrames(sender.client, `realtime:${name}`).map((f) => f.payload.event),
          ['B'],
          'the server sent the sender no frame for its own broadcast'
        )
      })
    })
  }
})
