// Case 5: broadcasts sent over HTTP reach WebSocket subscribers: realtime-js httpSend
// (POST /api/broadcast/<name>/events/<event>) and the batch endpoint (POST /api/broadcast).

import { describe, it } from 'node:test'
import assert from 'node:assert/strict'

import { VSNS, subscribeOk, uniqueName } from '../lib/clients.js'
import { useServer } from '../lib/suite.js'
import { Recorder } from '../lib/wait.js'
import { mintToken } from '../lib/jwt.js'

describe('HTTP broadcast', () => {
  const { server, pool } = useServer()

  async function subscriber(vsn, name) {
    const client = pool.realtime(server, { vsn })
    const received = new Recorder('broadcast')
    const channel = client.channel(name).on('broadcast', { event: '*' }, received.push)
    await subscribeOk(channel)
    return { client, channel, received }
  }

  function postBatch(body, headers = { apikey: server.token() }) {
    return fetch(`${server.httpUrl}/api/broadcast`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    })
  }

  for (const vsn of VSNS) {
    describe(`subscriber vsn ${vsn}`, () => {
      it('channel.httpSend resolves {success:true} and is delivered', async () => {
        const name = uniqueName('http-send')
        const sub = await subscriber(vsn, name)
        // httpSend needs no subscription; the sender's channel is never joined.
        const senderClient = pool.realtime(server, { vsn })
        const senderChannel = senderClient.channel(name)

        const result = await senderChannel.httpSend('via-http', { hello: 'rest', n: [1, 2] })
        assert.deepEqual(result, { success: true })

        const got = await sub.received.waitFor((m) => m.event === 'via-http', 'via-http')
        assert.equal(got.type, 'broadcast')
        assert.deepEqual(got.payload, { hello: 'rest', n: [1, 2] })
      })

      it('POST /api/broadcast (batch, apikey header) returns 202 and delivers every message', async () => {
        const name = uniqueName('http-batch')
        const other = uniqueName('http-batch-other')
        const sub = await subscriber(vsn, name)

        const response = await postBatch({
          messages: [
            { topic: name, event: 'e', payload: { n: 1 } },
            { topic: other, event: 'e', payload: { n: 'elsewhere' } },
            { topic: name, event: 'f', payload: { n: 2 } },
          ],
        })
        assert.equal(response.status, 202, await response.text())

        const got = await sub.received.waitForCount(2)
        assert.deepEqual(
          got.map((m) => [m.event, m.payload]).sort(),
          [
            ['e', { n: 1 }],
            ['f', { n: 2 }],
          ]
        )
      })
    })
  }

  it('POST /api/broadcast with Authorization: Bearer is accepted too', async () => {
    const name = uniqueName('http-bearer')
    const sub = await subscriber('2.0.0', name)
    const response = await postBatch(
      { messages: [{ topic: name, event: 'bearer', payload: { ok: true } }] },
      { authorization: `Bearer ${server.token()}` }
    )
    assert.equal(response.status, 202, await response.text())
    const got = await sub.received.waitFor((m) => m.event === 'bearer', 'bearer')
    assert.deepEqual(got.payload, { ok: true })
  })

  it('POST /api/broadcast without a valid token is refused with 401', async () => {
    const missing = await postBatch({ messages: [{ topic: 'x', event: 'e', payload: {} }] }, {})
    assert.equal(missing.status, 401)
    await missing.body?.cancel()

    const forged = await postBatch(
      { messages: [{ topic: 'x', event: 'e', payload: {} }] },
      { apikey: mintToken('not-the-server-secret') }
    )
    assert.equal(forged.status, 401)
    await forged.body?.cancel()

    const expired = await postBatch(
      { messages: [{ topic: 'x', event: 'e', payload: {} }] },
      { apikey: server.token({ ttl: -60 }) }
    )
    assert.equal(expired.status, 401)
    await expired.body?.cancel()
  })
})
