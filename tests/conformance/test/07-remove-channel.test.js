// Case 8: after client.removeChannel(ch), the server stops delivering the topic to that
// socket. realtime-js resolves removeChannel() as soon as phx_leave is sent, so the test also
// awaits the server's leave reply and phx_close before sending. Absence is checked on the raw
// frames (realtime-js would drop a frame for a removed channel itself), with two witnesses
// that a later message did get through:
//  - another client subscribed to the same topic receives the message sent after removal;
//  - the same socket, on a second channel, receives a message the sender sent after that
//    one, so anything the server had sent for the removed topic would have arrived first.

import { describe, it } from 'node:test'
import assert from 'node:assert/strict'

import { VSNS, subscribeOk, send, broadcastFrames, tapOf, uniqueName } from '../lib/clients.js'
import { useServer } from '../lib/suite.js'
import { Recorder } from '../lib/wait.js'

describe('removeChannel', () => {
  const { server, pool } = useServer()

  function listen(client, name) {
    const received = new Recorder('broadcast')
    const channel = client.channel(name).on('broadcast', { event: '*' }, received.push)
    return { channel, received }
  }

  for (const vsn of VSNS) {
    it(`vsn ${vsn}: no delivery to a removed channel`, async () => {
      const topic = uniqueName('rm')
      const side = uniqueName('rm-side')

      const leaver = pool.realtime(server, { vsn })
      const gone = listen(leaver, topic)
      const kept = listen(leaver, side)
      const witness = listen(pool.realtime(server, { vsn }), topic)
      const senderClient = pool.realtime(server, { vsn })
      const toTopic = senderClient.channel(topic)
      const toSide = senderClient.channel(side)
      await Promise.all([gone, kept, witness].map((m) => subscribeOk(m.channel)))
      await Promise.all([subscribeOk(toTopic), subscribeOk(toSide)])

      // Before removal the leaver does receive the topic.
      await send(toTopic, { type: 'broadcast', event: 'before', payload: { i: 0 } })
      await gone.received.waitFor((m) => m.event === 'before', "'before' at the leaver")
      await witness.received.waitFor((m) => m.event === 'before', "'before' at the witness")

      assert.equal(await leaver.removeChannel(gone.channel), 'ok')
      // realtime-js resolves removeChannel as soon as phx_leave is sent (its channel is no
      // longer "joined", so the leave push is acknowledged locally). The server's answer is
      // awaited here: a phx_reply ok to the leave, then phx_close (protocol.md §3).
      const { frames, sent } = tapOf(leaver)
      const leave = sent.items.find((f) => f.topic === `realtime:${topic}` && f.event === 'phx_leave')
      assert.ok(leave, 'realtime-js sent phx_leave')
      const reply = await frames.waitFor(
        (f) => f.topic === `realtime:${topic}` && f.event === 'phx_reply' && f.ref === leave.ref,
        'the reply to phx_leave'
      )
      assert.equal(reply.payload.status, 'ok')
      const close = await frames.waitFor(
        (f) => f.topic === `realtime:${topic}` && f.event === 'phx_close',
        'phx_close after the leave'
      )
      assert.ok(frames.items.indexOf(close) > frames.items.indexOf(reply), 'phx_close follows the reply')

      await send(toTopic, { type: 'broadcast', event: 'after', payload: { i: 1 } })
      await send(toSide, { type: 'broadcast', event: 'later', payload: { i: 2 } })

      await witness.received.waitFor((m) => m.event === 'after', "'after' at the witness")
      await kept.received.waitFor((m) => m.event === 'later', "'later' on the leaver's other channel")

      assert.deepEqual(
        broadcastFrames(leaver, `realtime:${topic}`).map((f) => f.payload.event),
        ['before'],
        'the server sent the removed topic nothing after the leave'
      )
      assert.deepEqual(gone.received.items.map((m) => m.event), ['before'])
      assert.equal(leaver.getChannels().length, 1)
    })
  }
})
