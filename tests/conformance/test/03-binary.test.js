// Case 3 (vsn 2.0.0 only): an ArrayBuffer broadcast from one realtime-js client arrives
// byte-identical, as an ArrayBuffer, at another (kind 3 in, kind 4 out).

import { describe, it } from 'node:test'
import assert from 'node:assert/strict'

import { subscribeOk, send, tapOf, uniqueName, withoutPosition } from '../lib/clients.js'
import { useServer } from '../lib/suite.js'
import { Recorder } from '../lib/wait.js'

describe('binary broadcast (vsn 2.0.0)', () => {
  const { server, pool } = useServer()

  async function member(name, broadcast = {}) {
    const client = pool.realtime(server, { vsn: '2.0.0' })
    const received = new Recorder('broadcast')
    const channel = client
      .channel(name, { config: { broadcast } })
      .on('broadcast', { event: '*' }, received.push)
    await subscribeOk(channel)
    return { client, channel, received }
  }

  it('an ArrayBuffer payload arrives byte-identical as an ArrayBuffer', async () => {
    const name = uniqueName('bin')
    const sender = await member(name, { ack: true })
    const receiver = await member(name)

    // Every byte value (including 0x00, invalid UTF-8 and bytes that look like JSON), then some.
    const bytes = new Uint8Array(1024 + 3)
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + (i >> 8)) & 0xff
    bytes.set(Buffer.from('{"not":"json"'), 300)
    const sent = bytes.buffer.slice(0)

    const status = await send(sender.channel, { type: 'broadcast', event: 'blob', payload: sent })
    assert.equal(status, 'ok', 'acked')

    const got = await receiver.received.waitFor((m) => m.event === 'blob', 'blob')
    assert.equal(got.type, 'broadcast')
    assert.ok(got.payload instanceof ArrayBuffer, `payload is ${Object.prototype.toString.call(got.payload)}`)
    assert.equal(got.payload.byteLength, bytes.byteLength)
    assert.ok(Buffer.from(got.payload).equals(Buffer.from(bytes)), 'bytes differ')

    const frame = tapOf(receiver.client).frames.items.find(
      (f) => f.topic === `realtime:${name}` && f.event === 'broadcast'
    )
    assert.equal(frame.format, 'binary:4', 'delivered as a binary user_broadcast (kind 4)')
  })

  it('a binary broadcast does not reach a 1.0.0 subscriber (JSON ones do)', async () => {
    const name = uniqueName('bin-v1')
    const sender = await member(name)
    const v2 = await member(name)
    const v1Client = pool.realtime(server, { vsn: '1.0.0' })
    const v1Received = new Recorder('broadcast')
    const v1Channel = v1Client.channel(name).on('broadcast', { event: '*' }, v1Received.push)
    await subscribeOk(v1Channel)

    await send(sender.channel, { type: 'broadcast', event: 'blob', payload: new Uint8Array([9, 9]).buffer })
    await send(sender.channel, { type: 'broadcast', event: 'after', payload: { json: true } })

    await v2.received.waitForCount(2)
    assert.deepEqual(v2.received.items.map((m) => m.event), ['blob', 'after'])
    // Same sender, so 'blob' was fanned out before 'after': its absence at the 1.0.0 socket is final.
    await v1Received.waitFor((m) => m.event === 'after', "'after' at the 1.0.0 client")
    assert.deepEqual(v1Received.items.map(withoutPosition), [{ type: 'broadcast', event: 'after', payload: { json: true } }])
    const v1Frames = tapOf(v1Client).frames.items.filter((f) => f.topic === `realtime:${name}`)
    assert.ok(
      v1Frames.every((f) => f.format === 'v1'),
      `1.0.0 socket got non-JSON frames: ${JSON.stringify(v1Frames.map((f) => f.format))}`
    )
  })

  it('an empty ArrayBuffer arrives as an empty ArrayBuffer', async () => {
    const name = uniqueName('bin-empty')
    const sender = await member(name)
    const receiver = await member(name)

    await send(sender.channel, { type: 'broadcast', event: 'empty', payload: new ArrayBuffer(0) })

    const got = await receiver.received.waitFor((m) => m.event === 'empty', 'empty')
    assert.ok(got.payload instanceof ArrayBuffer)
    assert.equal(got.payload.byteLength, 0)
  })

  it('JSON and binary broadcasts interleave in order', async () => {
    const name = uniqueName('bin-mix')
    const sender = await member(name)
    const receiver = await member(name)

    await send(sender.channel, { type: 'broadcast', event: 'j1', payload: { i: 1 } })
    await send(sender.channel, { type: 'broadcast', event: 'b2', payload: new Uint8Array([1, 2, 3]).buffer })
    await send(sender.channel, { type: 'broadcast', event: 'j3', payload: { i: 3 } })

    const got = await receiver.received.waitForCount(3)
    assert.deepEqual(got.map((m) => m.event), ['j1', 'b2', 'j3'])
    assert.deepEqual(got[0].payload, { i: 1 })
    assert.deepEqual([...new Uint8Array(got[1].payload)], [1, 2, 3])
    assert.deepEqual(got[2].payload, { i: 3 })
  })
})
