// Case 1: a realtime-js channel subscribes and reaches SUBSCRIBED, and the server's join reply
// has the protocol's shape for the negotiated serializer.

import { describe, it } from 'node:test'
import assert from 'node:assert/strict'

import { VSNS, assertJoinResponse, subscribeOk, tapOf, uniqueName } from '../lib/clients.js'
import { useServer } from '../lib/suite.js'

describe('subscribe', () => {
  const { server, pool } = useServer()

  for (const vsn of VSNS) {
    it(`vsn ${vsn}: subscribe reaches SUBSCRIBED with the joined reply`, async () => {
      const client = pool.realtime(server, { vsn })
      const name = uniqueName('sub')
      const channel = client.channel(name)

      const statuses = await subscribeOk(channel)

      assert.equal(channel.state, 'joined')
      assert.deepEqual(statuses.items.map((s) => s.status), ['SUBSCRIBED'])

      const { urls, frames } = tapOf(client)
      assert.equal(urls.length, 1)
      const url = new URL(urls[0])
      assert.equal(url.pathname, '/socket/websocket')
      assert.equal(url.searchParams.get('vsn'), vsn)

      const reply = frames.items.find((f) => f.topic === `realtime:${name}` && f.event === 'phx_reply')
      assert.ok(reply, `no phx_reply for the join among ${frames.describe()}`)
      assert.equal(reply.format, vsn === '1.0.0' ? 'v1' : 'v2', 'frame format follows vsn')
      assert.equal(reply.payload.status, 'ok')
      assertJoinResponse(reply.payload.response)
      assert.equal(typeof reply.ref, 'string', 'the reply carries the join ref')
    })
  }
})
