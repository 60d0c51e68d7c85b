// realtime-js and phoenix.js clients wired to a test server, with a tap on every socket
// (what the server sent, decoded independently) and cleanup that lets the process exit.

import WebSocket from 'ws'
import { RealtimeClient } from '@supabase/realtime-js'
import { Socket as PhoenixSocket, Presence as PhoenixPresence } from 'phoenix'

import { decodeFrame, decodeSentFrame } from './frames.js'
import { Recorder, unrefTimersDuring, withTimeout, DEFAULT_TIMEOUT_MS } from './wait.js'

export { RealtimeClient, PhoenixSocket, PhoenixPresence }

export const VSNS = ['1.0.0', '2.0.0']

/**
 * Per-client tap: `frames` (every decoded frame from the server), `sent` (every frame the
 * client sent) and `urls` (every connect URL).
 */
const taps = new WeakMap()

export function tapOf(client) {
  const tap = taps.get(client)
  if (!tap) throw new Error('client was not created through a ClientPool')
  return tap
}

/** A `ws` subclass that records every frame the server sends and every URL it connects to. */
function tappedTransport(tap) {
  return class TappedWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols)
      tap.urls.push(String(url))
      this.on('message', (data, isBinary) => {
        let frame
        try {
          frame = decodeFrame(data, isBinary)
        } catch (error) {
          frame = { format: 'undecodable', error: String(error) }
        }
        tap.frames.push(frame)
      })
    }

    send(data, ...rest) {
      let frame
      try {
        frame = decodeSentFrame(data)
      } catch (error) {
        frame = { format: 'undecodable', error: String(error) }
      }
      tap.sent.push(frame)
      return super.send(data, ...rest)
    }
  }
}

function newTap() {
  return { frames: new Recorder('frame'), sent: new Recorder('sent frame'), urls: [] }
}

/** Broadcast frames for `topic` whose user event is `event`, in arrival order. */
export function broadcastFrames(client, topic, event) {
  return tapOf(client).frames.items.filter(
    (f) => f.topic === topic && f.event === 'broadcast' && (event === undefined || f.payload?.event === event)
  )
}

/** Creates clients and closes every one of them again. One pool per test file. */
export class ClientPool {
  constructor() {
    this.realtimeClients = new Set()
    this.phoenixSockets = new Set()
  }

  /** A RealtimeClient for `server` speaking `vsn`, with `token` (default: 1 h anon) as apikey. */
  realtime(server, { vsn, token = server.token(), ...options } = {}) {
    const tap = newTap()
    const client = new RealtimeClient(server.wsUrl, {
      params: { apikey: token },
      transport: tappedTransport(tap),
      vsn,
      ...options,
    })
    taps.set(client, tap)
    this.realtimeClients.add(client)
    return client
  }

  /** A connected phoenix.js Socket (its default serializer, vsn 2.0.0). */
  phoenix(server, { token = server.token(), ...options } = {}) {
    const tap = newTap()
    const socket = new PhoenixSocket(server.wsUrl, {
      transport: tappedTransport(tap),
      params: { apikey: token },
      ...options,
    })
    taps.set(socket, tap)
    this.phoenixSockets.add(socket)
    socket.connect()
    return socket
  }

  /** Closes one realtime-js client: stops every channel's timers, then disconnects. */
  async closeRealtime(client) {
    this.realtimeClients.delete(client)
    for (const channel of client.getChannels()) channel.teardown()
    await withTimeout(
      unrefTimersDuring(() => client.disconnect(1000, 'test done')),
      DEFAULT_TIMEOUT_MS,
      'realtime-js disconnect'
    )
  }

  async closePhoenix(socket) {
    this.phoenixSockets.delete(socket)
    for (const channel of socket.channels) channel.rejoinTimer.reset()
    await withTimeout(
      new Promise((resolve) => unrefTimersDuring(() => socket.disconnect(resolve, 1000, 'test done'))),
      DEFAULT_TIMEOUT_MS,
      'phoenix disconnect'
    )
  }

  async closeAll() {
    await Promise.all([
      ...[...this.realtimeClients].map((c) => this.closeRealtime(c)),
      ...[...this.phoenixSockets].map((s) => this.closePhoenix(s)),
    ])
  }
}

/**
 * Calls `channel.subscribe` and returns a Recorder of every status callback
 * (`{status, error}` with `error` the Error's message).
 */
export function startSubscribe(channel) {
  const statuses = new Recorder('status')
  channel.subscribe((status, err) => statuses.push({ status, error: err?.message, cause: err?.cause }))
  return statuses
}

/** Subscribes and resolves with the status Recorder once SUBSCRIBED; rejects on any other first status. */
export async function subscribeOk(channel, ms = DEFAULT_TIMEOUT_MS) {
  const statuses = startSubscribe(channel)
  const first = await statuses.waitFor(() => true, `a subscribe status for ${channel.topic}`, ms)
  if (first.status !== 'SUBSCRIBED') {
    throw new Error(`${channel.topic}: expected SUBSCRIBED, got ${first.status} (${first.error})`)
  }
  return statuses
}

/** `channel.send(message, opts)` without leaving a 10 s push timer holding the process open. */
export function send(channel, message, opts) {
  return unrefTimersDuring(() => channel.send(message, opts))
}

/** `client.setAuth(token)`; the access_token push has no reply, so its timer is unref'd. */
export function setAuth(client, token) {
  return unrefTimersDuring(() => client.setAuth(token))
}

/** Joins a phoenix.js channel; resolves with the join response, rejects on error/timeout. */
export function phoenixJoin(channel, ms = DEFAULT_TIMEOUT_MS) {
  return withTimeout(
    new Promise((resolve, reject) => {
      channel
        .join()
        .receive('ok', resolve)
        .receive('error', (resp) => reject(new Error(`join error: ${JSON.stringify(resp)}`)))
        .receive('timeout', () => reject(new Error('join timeout')))
    }),
    ms,
    `phoenix join of ${channel.topic}`
  )
}

/** Pushes on a phoenix.js channel; resolves with `{status, response}` (reply) or rejects on timeout. */
export function phoenixPush(channel, event, payload, ms = DEFAULT_TIMEOUT_MS) {
  return withTimeout(
    new Promise((resolve, reject) => {
      unrefTimersDuring(() => channel.push(event, payload))
        .receive('ok', (response) => resolve({ status: 'ok', response }))
        .receive('error', (response) => resolve({ status: 'error', response }))
        .receive('timeout', () => reject(new Error(`push ${event} timed out`)))
    }),
    ms,
    `reply to ${event} on ${channel.topic}`
  )
}

/** Pushes without waiting for a reply (the server sends none, e.g. broadcast without ack). */
export function phoenixPushNoReply(channel, event, payload) {
  unrefTimersDuring(() => channel.push(event, payload))
}

/** A unique channel name per call, so tests never see each other's traffic. */
let counter = 0
export function uniqueName(prefix) {
  counter += 1
  return `${prefix}-${process.pid}-${counter}`
}

/**
 * A received broadcast without the stream position Crier puts in `meta` (`offset`,
 * `epoch`), and without `meta` when nothing else is in it: what Supabase would send.
 */
export function withoutPosition(message) {
  if (!message?.meta) return message
  const { offset, epoch, ...rest } = message.meta
  const { meta, ...body } = message
  return Object.keys(rest).length ? { ...body, meta: rest } : body
}

/** Asserts a join reply's response: the bindings, and where the topic's stream is. */
export function assertJoinResponse(response, postgresChanges = []) {
  const { broadcast, ...rest } = response
  if (JSON.stringify(rest) !== JSON.stringify({ postgres_changes: postgresChanges })) {
    throw new Error(`unexpected join response ${JSON.stringify(response)}`)
  }
  if (typeof broadcast?.epoch !== 'string' || !Number.isInteger(broadcast?.offset)) {
    throw new Error(`the join response has no stream position: ${JSON.stringify(response)}`)
  }
}
