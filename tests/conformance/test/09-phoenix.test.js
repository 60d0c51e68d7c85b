// Case 10: the plain phoenix.js client (its default 2.0.0 JSON serializer) joins realtime:
// topics, broadcasts, uses presence through phoenix's Presence class, and interoperates with
// realtime-js clients of both serializers.

import { describe, it } from 'node:test'
import assert from 'node:assert/strict'

import {
  VSNS,
  assertJoinResponse,
  PhoenixPresence,
  phoenixJoin,
  phoenixPush,
  phoenixPushNoReply,
  subscribeOk,
  send,
  tapOf,
  uniqueName,
  withoutPosition,
} from '../lib/clients.js'
import { useServer } from '../lib/suite.js'
import { Recorder } from '../lib/wait.js'

describe('phoenix.js', () => {
  const { server, pool } = useServer()

  /** A phoenix socket joined to realtime:<name>, recording broadcasts. */
  async function phoenixMember(name, config = {}) {
    const socket = pool.phoenix(server)
    const channel = socket.channel(`realtime:${name}`, { config })
    const received = new Recorder('broadcast')
    channel.on('broadcast', received.push)
    const presence = config.presence ? new PhoenixPresence(channel) : null
    const joinResponse = await phoenixJoin(channel)
    return { socket, channel, received, presence, joinResponse }
  }

  it('joins a realtime: topic with vsn 2.0.0 and gets the joined reply', async () => {
    const name = uniqueName('phx-join')
    const member = await phoenixMember(name)

    assertJoinResponse(member.joinResponse)
    const { urls, frames } = tapOf(member.socket)
    const url = new URL(urls[0])
    assert.equal(url.pathname, '/socket/websocket')
    assert.equal(url.searchParams.get('vsn'), '2.0.0')
    const reply = frames.items.find((f) => f.topic === `realtime:${name}` && f.event === 'phx_reply')
    assert.equal(reply.format, 'v2')
    assert.equal(reply.join_ref, member.channel.joinRef())
  })

  it('a topic outside realtime: is refused with "unmatched topic"', async () => {
    const socket = pool.phoenix(server)
    const channel = socket.channel('elsewhere:room', {})
    await assert.rejects(phoenixJoin(channel), /unmatched topic/)
  })

  it('broadcast between two phoenix sockets (and ack:true gets a reply)', async () => {
    const name = uniqueName('phx-bc')
    const sender = await phoenixMember(name, { broadcast: { ack: true, self: false } })
    const receiver = await phoenixMember(name, {})
    const message = { type: 'broadcast', event: 'shout', payload: { text: 'hi', n: [1, 2] } }

    const reply = await phoenixPush(sender.channel, 'broadcast', message)
    assert.deepEqual(reply, { status: 'ok', response: {} })

    const got = await receiver.received.waitFor((m) => m.event === 'shout', 'shout')
    assert.deepEqual(withoutPosition(got), message)
    assert.equal(sender.received.length, 0, 'self:false')
  })

  it('presence_state and presence_diff drive phoenix Presence: sync, join and leave', async () => {
    const name = uniqueName('phx-presence')
    const joins = { a: new Recorder('join'), b: new Recorder('join') }
    const leaves = new Recorder('leave')
    const syncs = { a: new Recorder('sync'), b: new Recorder('sync') }

    const a = await phoenixMember(name, { presence: { key: 'key-a', enabled: true } })
    a.presence.onJoin((key, current, added) => joins.a.push({ key, added }))
    a.presence.onLeave((key, current, removed) => leaves.push({ key, current, removed }))
    a.presence.onSync(() => syncs.a.push(a.presence.list((key) => key).sort()))
    const b = await phoenixMember(name, { presence: { key: 'key-b', enabled: true } })
    b.presence.onJoin((key, current, added) => joins.b.push({ key, added }))
    b.presence.onSync(() => syncs.b.push(b.presence.list((key) => key).sort()))

    assert.deepEqual(
      await phoenixPush(a.channel, 'presence', { type: 'presence', event: 'track', payload: { who: 'A' } }),
      { status: 'ok', response: {} }
    )
    assert.deepEqual(
      await phoenixPush(b.channel, 'presence', { type: 'presence', event: 'track', payload: { who: 'B' } }),
      { status: 'ok', response: {} }
    )

    const both = ['key-a', 'key-b']
    await syncs.a.waitFor((keys) => keys.join() === both.join(), 'a to sync both keys')
    await syncs.b.waitFor((keys) => keys.join() === both.join(), 'b to sync both keys')

    const bSeenByA = await joins.a.waitFor((j) => j.key === 'key-b', 'join of key-b at a')
    assert.equal(bSeenByA.added.metas.length, 1)
    assert.equal(bSeenByA.added.metas[0].who, 'B')
    assert.equal(typeof bSeenByA.added.metas[0].phx_ref, 'string')
    await joins.b.waitFor((j) => j.key === 'key-a', 'join of key-a at b')

    for (const member of [a, b]) {
      const events = tapOf(member.socket)
        .frames.items.filter((f) => f.topic === `realtime:${name}` && f.event.startsWith('presence_'))
        .map((f) => f.event)
      assert.equal(events[0], 'presence_state', JSON.stringify(events))
    }

    await pool.closePhoenix(b.socket)

    const left = await leaves.waitFor((l) => l.key === 'key-b', 'leave of key-b at a')
    assert.equal(left.removed.metas[0].who, 'B')
    await syncs.a.waitFor((keys) => keys.join() === 'key-a', 'a to sync only key-a')
  })

  for (const vsn of VSNS) {
    it(`interop with realtime-js vsn ${vsn}: broadcasts flow both ways`, async () => {
      const name = uniqueName('interop')
      const phx = await phoenixMember(name, {})

      const rtClient = pool.realtime(server, { vsn })
      const rtReceived = new Recorder('broadcast')
      const rtChannel = rtClient.channel(name).on('broadcast', { event: '*' }, rtReceived.push)
      await subscribeOk(rtChannel)

      // realtime-js -> phoenix.js (with 2.0.0 realtime-js sends a binary kind-3 push; the
      // phoenix socket must still get a frame its serializer can decode)
      await send(rtChannel, { type: 'broadcast', event: 'from-rt', payload: { vsn, x: 1 } })
      const atPhx = await phx.received.waitFor((m) => m.event === 'from-rt', 'from-rt at phoenix')
      assert.deepEqual(withoutPosition(atPhx), { type: 'broadcast', event: 'from-rt', payload: { vsn, x: 1 } })
      const frame = tapOf(phx.socket).frames.items.find(
        (f) => f.topic === `realtime:${name}` && f.event === 'broadcast'
      )
      assert.equal(frame.format, 'v2', 'phoenix.js got a JSON text frame')

      // phoenix.js -> realtime-js
      phoenixPushNoReply(phx.channel, 'broadcast', { type: 'broadcast', event: 'from-phx', payload: { y: 2 } })
      const atRt = await rtReceived.waitFor((m) => m.event === 'from-phx', 'from-phx at realtime-js')
      assert.deepEqual(withoutPosition(atRt), { type: 'broadcast', event: 'from-phx', payload: { y: 2 } })

      // self:false for the phoenix sender too: a later message from realtime-js is the
      // ordering witness that no echo of 'from-phx' is on its way.
      await send(rtChannel, { type: 'broadcast', event: 'final', payload: {} })
      await phx.received.waitFor((m) => m.event === 'final', 'final at phoenix')
      assert.deepEqual(phx.received.items.map((m) => m.event), ['from-rt', 'final'])
    })
  }
})
