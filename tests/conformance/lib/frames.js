// Decodes WebSocket frames as they arrive from the server, independently of the client
// libraries, so tests can assert on what the server actually sent (including frames the
// client library would filter out before any callback sees them).
//
// Shapes follow protocol.md §2: 1.0.0 JSON objects, 2.0.0 JSON arrays, and 2.0.0 binary
// frames of kind 0 (push), 1 (reply), 2 (broadcast) and 4 (user_broadcast).

const toBuffer = (data) =>
  Array.isArray(data)
    ? Buffer.concat(data)
    : Buffer.isBuffer(data)
      ? data
      : Buffer.from(data instanceof ArrayBuffer ? data : data.buffer)

const toArrayBuffer = (buf) => buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength)

/**
 * Returns `{format, join_ref, ref, topic, event, payload}`; `format` is 'v1', 'v2' or
 * 'binary:<kind>'. A kind-4 frame is decoded the way realtime-js does, to event 'broadcast'
 * with payload `{type:'broadcast', event, payload, meta?}` (payload an ArrayBuffer when the
 * encoding byte is 0).
 */
export function decodeFrame(data, isBinary) {
  const buf = toBuffer(data)
  if (!isBinary) {
    const value = JSON.parse(buf.toString('utf8'))
    if (Array.isArray(value)) {
      const [join_ref, ref, topic, event, payload] = value
      return { format: 'v2', join_ref, ref, topic, event, payload }
    }
    return { format: 'v1', ...value }
  }

  const kind = buf[0]
  let offset
  const take = (len) => {
    const slice = buf.subarray(offset, offset + len)
    offset += len
    return slice
  }
  const str = (len) => take(len).toString('utf8')
  switch (kind) {
    case 0: {
      offset = 4
      const join_ref = str(buf[1])
      const topic = str(buf[2])
      const event = str(buf[3])
      return { format: 'binary:0', join_ref, ref: null, topic, event, payload: toArrayBuffer(buf.subarray(offset)) }
    }
    case 1: {
      offset = 5
      const join_ref = str(buf[1])
      const ref = str(buf[2])
      const topic = str(buf[3])
      const status = str(buf[4])
      const response = toArrayBuffer(buf.subarray(offset))
      return { format: 'binary:1', join_ref, ref, topic, event: 'phx_reply', payload: { status, response } }
    }
    case 2: {
      offset = 3
      const topic = str(buf[1])
      const event = str(buf[2])
      return { format: 'binary:2', join_ref: null, ref: null, topic, event, payload: toArrayBuffer(buf.subarray(offset)) }
    }
    case 4: {
      offset = 5
      const topic = str(buf[1])
      const userEvent = str(buf[2])
      const metadata = str(buf[3])
      const encoding = buf[4]
      const body = buf.subarray(offset)
      const payload = {
        type: 'broadcast',
        event: userEvent,
        payload: encoding === 1 ? JSON.parse(body.toString('utf8')) : toArrayBuffer(body),
      }
      if (metadata.length > 0) payload.meta = JSON.parse(metadata)
      return { format: 'binary:4', join_ref: null, ref: null, topic, event: 'broadcast', payload }
    }
    default:
      return { format: `binary:${kind}`, topic: null, event: null, payload: toArrayBuffer(buf) }
  }
}

/**
 * Decodes a frame the client sent. Text frames as above; binary ones (2.0.0 kind 0 push or
 * kind 3 user_broadcast_push) only as far as `{format, topic, event}`.
 */
export function decodeSentFrame(data) {
  if (typeof data === 'string') return decodeFrame(Buffer.from(data, 'utf8'), false)
  const buf = toBuffer(data)
  const kind = buf[0]
  if (kind === 0 || kind === 3) {
    // kind 0: join_ref, ref, topic, event lengths; kind 3: join_ref, ref, topic, user_event, metadata, encoding
    const header = kind === 0 ? 5 : 7
    let offset = header + buf[1] + buf[2]
    const topic = buf.subarray(offset, offset + buf[3]).toString('utf8')
    offset += buf[3]
    const event = buf.subarray(offset, offset + buf[4]).toString('utf8')
    return kind === 0
      ? { format: 'binary:0', topic, event }
      : { format: 'binary:3', topic, event: 'broadcast', userEvent: event }
  }
  return { format: `binary:${kind}`, topic: null, event: null }
}
