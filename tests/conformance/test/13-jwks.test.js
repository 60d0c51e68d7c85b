// Case 13: asymmetric JWT keys. `crier serve --jwt-jwks <file>` with the test keys'
// public set (crates/crier-testkit/keys); realtime-js and phoenix.js connect and join
// with ES256 and RS256 tokens signed by the private keys, as users of a Supabase project
// with asymmetric signing keys do, and HS256 tokens keep working next to them.

import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

import { VSNS, assertJoinResponse, phoenixJoin, send, startSubscribe, subscribeOk, uniqueName } from '../lib/clients.js'
import { signWithJwk } from '../lib/jwt.js'
import { useServer } from '../lib/suite.js'
import { Recorder } from '../lib/wait.js'

const KEYS = resolve(dirname(fileURLToPath(import.meta.url)), '../../../crates/crier-testkit/keys')
const PRIVATE = JSON.parse(readFileSync(`${KEYS}/private.jwks.json`, 'utf8')).keys
const privateKey = (kid) => PRIVATE.find((key) => key.kid === kid)

const claims = (extra = {}) => {
  const now = Math.floor(Date.now() / 1000)
  return { role: 'authenticated', iat: now, exp: now + 3600, ...extra }
}

describe('asymmetric JWT keys (JWKS)', () => {
  const { server, pool } = useServer({ args: ['--jwt-jwks', `${KEYS}/public.jwks.json`] })

  for (const vsn of VSNS) {
    for (const kid of ['test-p256', 'test-rsa']) {
      it(`vsn ${vsn}: a ${kid} token connects, joins and broadcasts`, async () => {
        const token = signWithJwk(privateKey(kid), claims({ sub: kid }))
        const name = uniqueName('jwks')
        const sender = pool.realtime(server, { vsn, token })
        const receiver = pool.realtime(server, { vsn, token: server.token() })
        const got = new Recorder('broadcast')
        await subscribeOk(receiver.channel(name).on('broadcast', { event: 'e' }, got.push))
        const channel = sender.channel(name, { config: { broadcast: { ack: true } } })
        await subscribeOk(channel)
        assert.equal(await send(channel, { type: 'broadcast', event: 'e', payload: { kid } }), 'ok')
        assert.deepEqual((await got.waitFor(() => true, 'the broadcast')).payload, { kid })
      })
    }
  }

  it('a token from a key the set does not hold is refused with the reason', async () => {
    const token = signWithJwk(privateKey('test-rsa-next'), claims())
    const client = pool.realtime(server, { vsn: '2.0.0' })
    // The connect apikey is a valid HS token; the channel's own token is the unknown one.
    client.setAuth(token)
    const statuses = startSubscribe(client.channel(uniqueName('jwks')))
    const first = await statuses.waitFor(() => true, 'the subscribe status')
    assert.equal(first.status, 'CHANNEL_ERROR')
    assert.match(first.error, /JwtSignerError: No key in the JWKS has kid `test-rsa-next`/)
  })

  it('phoenix.js joins with an ES256 token', async () => {
    const token = signWithJwk(privateKey('test-p256'), claims())
    const socket = pool.phoenix(server, { token })
    const channel = socket.channel(`realtime:${uniqueName('jwks')}`, { config: {}, access_token: token })
    assertJoinResponse(await phoenixJoin(channel))
  })
})
