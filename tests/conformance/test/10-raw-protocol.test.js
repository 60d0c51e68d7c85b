// Protocol details no client library exposes, checked with a bare `ws` socket
// (protocol.md §1 connect checks, §3 heartbeat and lifecycle, §4 join errors).

import { describe, it, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import WebSocket from 'ws'

import { startServer } from '../lib/server.js'
import { decodeFrame } from '../lib/frames.js'
import { Recorder, withTimeout } from '../lib/wait.js'
import { mintToken, signJwt } from '../lib/jwt.js'
import { uniqueName } from '../lib/clients.js'

describe('raw protocol', () => {
  let server
  const open = new Set()

  before(async () => {
    server = await startServer()
  })
  afterEach(() => {
    for (const ws of open) ws.terminate()
    open.clear()
  })
  after(() => server?.stop())

  const url = (params) => `${server.wsUrl}/websocket?${new URLSearchParams(params)}`

  /** Opens a 2.0.0 socket; `send([...])` sends an array frame, `frames` records replies. */
  async function connect(params = {}) {
    const ws = new WebSocket(url({ apikey: server.token(), vsn: '2.0.0', ...params }))
    open.add(ws)
    const frames = new Recorder('frame')
    ws.on('message', (data, isBinary) => frames.push(decodeFrame(data, isBinary)))
    await withTimeout(
      new Promise((resolve, reject) => {
        ws.once('open', resolve)
        ws.once('error', reject)
      }),
      5000,
      'websocket open'
    )
    return { ws, frames, send: (frame) => ws.send(JSON.stringify(frame)) }
  }

  /** Attempts a connection that the server must refuse; resolves with `{status, body}`. */
  function refused(params) {
    const ws = new WebSocket(url(params))
    open.add(ws)
    return withTimeout(
      new Promise((resolve, reject) => {
        ws.once('open', () => reject(new Error('the connection was accepted')))
        ws.once('unexpected-response', (_req, res) => {
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (chunk) => (body += chunk))
          res.on('end', () => resolve({ status: res.statusCode, body }))
        })
        ws.once('error', () => {})
      }),
      8000,
      'the refused connection'
    )
  }

  const errorOf = (body) => JSON.parse(body).error

  it('connect without apikey: 401 "API key is missing"', async () => {
    const { status, body } = await refused({ vsn: '2.0.0' })
    assert.equal(status, 401)
    assert.equal(errorOf(body), 'API key is missing')
  })

  it('connect with an expired token: 401 "Token has expired"', async () => {
    const { status, body } = await refused({ apikey: server.token({ ttl: -30 }), vsn: '2.0.0' })
    assert.equal(status, 401)
    assert.equal(errorOf(body), 'Token has expired')
  })

  it('connect with a token signed by another secret: 401 "Failed to validate JWT signature"', async () => {
    const { status, body } = await refused({ apikey: mintToken('another-secret'), vsn: '2.0.0' })
    assert.equal(status, 401)
    assert.equal(errorOf(body), 'Failed to validate JWT signature')
  })

  it('connect with a token lacking role: 401 "Fields `role` and `exp` are required in JWT"', async () => {
    const noRole = signJwt(server.secret, { exp: Math.floor(Date.now() / 1000) + 3600 })
    const { status, body } = await refused({ apikey: noRole, vsn: '2.0.0' })
    assert.equal(status, 401)
    assert.equal(errorOf(body), 'Fields `role` and `exp` are required in JWT')
  })

  it('connect with an unknown vsn: 403', async () => {
    const { status } = await refused({ apikey: server.token(), vsn: '3.0.0' })
    assert.equal(status, 403)
  })

  it('heartbeat on topic phoenix gets an ok reply with the same ref', async () => {
    const { frames, send } = await connect()
    send([null, '5', 'phoenix', 'heartbeat', {}])
    const reply = await frames.waitFor((f) => f.topic === 'phoenix', 'the heartbeat reply')
    assert.deepEqual(reply, {
      format: 'v2',
      join_ref: null,
      ref: '5',
      topic: 'phoenix',
      event: 'phx_reply',
      payload: { status: 'ok', response: {} },
    })
  })

  it('a push to a topic that is not joined gets "unmatched topic"', async () => {
    const { frames, send } = await connect()
    send(['1', '2', 'realtime:not-joined', 'broadcast', { type: 'broadcast', event: 'x', payload: {} }])
    const reply = await frames.waitFor((f) => f.ref === '2', 'the reply')
    assert.deepEqual(reply.payload, { status: 'error', response: { reason: 'unmatched topic' } })
  })

  it('join with an expired access_token is refused with InvalidJWTToken', async () => {
    const { frames, send } = await connect()
    const topic = `realtime:${uniqueName('raw-expired')}`
    send(['1', '1', topic, 'phx_join', { config: {}, access_token: server.token({ ttl: -10 }) }])
    const reply = await frames.waitFor((f) => f.ref === '1', 'the join reply', 8000)
    assert.equal(reply.payload.status, 'error')
    assert.match(reply.payload.response.reason, /^InvalidJWTToken: Token has expired \d+ seconds ago$/)
  })

  it('join of bare "realtime:" is refused with TopicNameRequired', async () => {
    const { frames, send } = await connect()
    send(['1', '1', 'realtime:', 'phx_join', { config: {} }])
    const reply = await frames.waitFor((f) => f.ref === '1', 'the join reply', 8000)
    assert.deepEqual(reply.payload, {
      status: 'error',
      response: { reason: 'TopicNameRequired: You must provide a topic name' },
    })
  })

  it('phx_leave: ok reply, then phx_close with the join ref', async () => {
    const { frames, send } = await connect()
    const topic = `realtime:${uniqueName('raw-leave')}`
    send(['1', '1', topic, 'phx_join', { config: {} }])
    await frames.waitFor((f) => f.ref === '1' && f.payload?.status === 'ok', 'the join reply')
    send(['1', '2', topic, 'phx_leave', {}])
    const close = await frames.waitFor((f) => f.event === 'phx_close', 'phx_close')
    const reply = frames.items.find((f) => f.ref === '2')
    assert.deepEqual(reply?.payload, { status: 'ok', response: {} }, 'the reply came before phx_close')
    assert.deepEqual(close, { format: 'v2', join_ref: '1', ref: '1', topic, event: 'phx_close', payload: {} })
  })

  it('a duplicate join closes the old join_ref first, then answers the new join', async () => {
    const { frames, send } = await connect()
    const topic = `realtime:${uniqueName('raw-dup')}`
    send(['1', '1', topic, 'phx_join', { config: {} }])
    await frames.waitFor((f) => f.ref === '1' && f.payload?.status === 'ok', 'the first join reply')
    send(['3', '3', topic, 'phx_join', { config: {} }])
    const second = await frames.waitFor((f) => f.ref === '3', 'the second join reply')
    assert.equal(second.payload.status, 'ok')
    const close = frames.items.find((f) => f.event === 'phx_close')
    assert.ok(close, `no phx_close for the old join: ${frames.describe()}`)
    assert.equal(close.join_ref, '1')
    assert.ok(frames.items.indexOf(close) < frames.items.indexOf(second), 'phx_close before the new reply')
  })

  it('a malformed 2.0.0 frame is dropped and the socket stays usable', async () => {
    const { ws, frames, send } = await connect()
    ws.send(JSON.stringify(['only', 'three', 'elements']))
    ws.send('not json at all')
    send([null, '9', 'phoenix', 'heartbeat', {}])
    const reply = await frames.waitFor((f) => f.ref === '9', 'the heartbeat reply')
    assert.equal(reply.payload.status, 'ok')
    assert.equal(ws.readyState, WebSocket.OPEN)
  })
})
