// Case 15: history and resume with realtime-js. Every broadcast carries its place in the
// topic's stream in `meta` (`offset`, `epoch`), and the join reply says where the stream
// is. A client that comes back creates its channel with `config.broadcast.resume`
// (realtime-js passes `config` through as it is) and gets what it missed, then a
// `system` message saying so, then live messages.

import { describe, it } from 'node:test'
import assert from 'node:assert/strict'

import { VSNS, send, subscribeOk, tapOf, uniqueName } from '../lib/clients.js'
import { useServer } from '../lib/suite.js'
import { Recorder } from '../lib/wait.js'

describe('history and resume', () => {
  const { server, pool } = useServer()

  async function listener(vsn, name, config = {}) {
    const client = pool.realtime(server, { vsn })
    const received = new Recorder('broadcast')
    const system = new Recorder('system message')
    const channel = client
      .channel(name, { config })
      .on('broadcast', { event: '*' }, received.push)
      .on('system', {}, system.push)
    await subscribeOk(channel)
    return { client, channel, received, system }
  }

  for (const vsn of VSNS) {
    it(`vsn ${vsn}: a client that comes back resumes from meta.offset`, async () => {
      const name = uniqueName('resume')
      const sender = await listener(vsn, name, { broadcast: { ack: true } })
      const first = await listener(vsn, name)
      for (let n = 1; n <= 3; n++) {
        assert.equal(await send(sender.channel, { type: 'broadcast', event: 'n', payload: { n } }), 'ok')
      }
      const seen = await first.received.waitForCount(3, 'three broadcasts')
      const last = seen[2].meta
      assert.equal(typeof last.epoch, 'string')
      assert.deepEqual(seen.map((m) => m.meta.offset), [1, 2, 3])
      await pool.closeRealtime(first.client)

      for (let n = 4; n <= 6; n++) {
        await send(sender.channel, { type: 'broadcast', event: 'n', payload: { n } })
      }
      const back = await listener(vsn, name, { broadcast: { resume: { epoch: last.epoch, offset: last.offset } } })
      const report = await back.system.waitFor((m) => m.extension === 'broadcast', 'the resume report')
      assert.equal(report.status, 'ok')
      assert.equal(report.message, 'Resumed: 3 missed messages')
      assert.deepEqual(back.received.items.map((m) => m.payload.n), [4, 5, 6], 'the missed ones, first')

      await send(sender.channel, { type: 'broadcast', event: 'n', payload: { n: 7 } })
      const live = await back.received.waitFor((m) => m.payload.n === 7, 'the live one')
      assert.equal(live.meta.offset, 7)
      assert.equal(back.received.items.length, 4, 'nothing twice')
    })
  }

  it('the join reply says where the stream is, and an unknown epoch gets recovered: false', async () => {
    const name = uniqueName('resume-gap')
    const client = await listener('2.0.0', name, { broadcast: { resume: { epoch: 'gone', offset: 9 } } })
    const report = await client.system.waitFor((m) => m.extension === 'broadcast', 'the resume report')
    assert.equal(report.status, 'error')
    assert.equal(report.message, 'Resume gap: epoch changed')
    const reply = tapOf(client.client).frames.items.find(
      (f) => f.topic === `realtime:${name}` && f.event === 'phx_reply'
    )
    assert.equal(reply.payload.response.broadcast.offset, 0)
    assert.equal(typeof reply.payload.response.broadcast.epoch, 'string')
  })
})
