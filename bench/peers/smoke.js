'use strict';
// End-to-end smoke test of one benchmark peer, speaking its wire protocol directly:
// two subscribers and one publisher on topic "bench"; every subscriber must receive
// every published payload byte for byte, the publisher (not subscribed) nothing.
//
// Usage: node smoke.js <raw-ws|ws|socket.io|nats|all> [port]
// Exits 0 when delivery is right, 1 otherwise (with the reason on stderr). `all`
// checks every peer on its default port.

const WebSocket = require('ws');

const DEFAULT_PORTS = { 'raw-ws': 4701, ws: 4702, 'socket.io': 4703, nats: 4704 };
const TOPIC = 'bench';
const TIMEOUT_MS = 5000;

function open(url, onFrame) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.on('open', () => resolve(ws));
    ws.on('error', reject);
    ws.on('message', (data, isBinary) => onFrame(data, isBinary));
  });
}

/** A waiter: resolves when `test` holds of a received item. */
function inbox() {
  const items = [];
  const waiters = [];
  return {
    items,
    push(item) {
      items.push(item);
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i].test(item)) {
          waiters[i].resolve(item);
          waiters.splice(i, 1);
        }
      }
    },
    wait(test, what) {
      const found = items.find(test);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        waiters.push({ test, resolve });
        setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), TIMEOUT_MS).unref();
      });
    },
  };
}

// The raw text protocol of crier-rawws and ws-server.js.
async function rawClient(port) {
  const frames = inbox();
  const ws = await open(`ws://127.0.0.1:${port}/`, (data, isBinary) => {
    if (isBinary) frames.push({ bad: 'binary frame' });
    else frames.push(data.toString('utf8'));
  });
  const messages = inbox();
  const control = /^(ok |pong$|err )/;
  ws.on('message', (data, isBinary) => {
    const text = data.toString('utf8');
    if (!isBinary && !control.test(text)) messages.push(text);
  });
  return {
    messages,
    async ready() {
      ws.send('ping');
      await frames.wait((f) => f === 'pong', '"pong"');
      // A command the server does not know must not end the connection.
      ws.send('frobnicate');
      ws.send('ping');
      await frames.wait((f) => typeof f === 'string' && f.startsWith('err '), '"err ..." for an unknown command');
      await frames.wait(() => frames.items.filter((f) => f === 'pong').length >= 2, 'a second "pong"');
    },
    async subscribe(topic) {
      ws.send(`sub ${topic}`);
      await frames.wait((f) => f === `ok ${topic}`, `"ok ${topic}"`);
    },
    publish(topic, payload) {
      ws.send(`pub ${topic} ${payload}`);
    },
    close: () => ws.close(),
  };
}

// socket.io 4 (engine.io v4) over a raw WebSocket.
async function socketioClient(port) {
  const frames = inbox();
  const messages = inbox();
  let ws;
  ws = await open(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`, (data, isBinary) => {
    const text = data.toString('utf8');
    if (isBinary) return frames.push({ bad: 'binary frame' });
    if (text === '2') return ws.send('3'); // engine.io ping -> pong
    frames.push(text);
    if (text.startsWith('42["m",')) messages.push(JSON.stringify(JSON.parse(text.slice(2))[1]));
  });
  return {
    messages,
    async ready() {
      const handshake = await frames.wait((f) => typeof f === 'string' && f.startsWith('0{'), 'the engine.io open packet');
      const info = JSON.parse(handshake.slice(1));
      if (typeof info.sid !== 'string' || info.pingInterval !== 25000) {
        throw new Error(`unexpected open packet ${handshake}`);
      }
      ws.send('40');
      await frames.wait((f) => typeof f === 'string' && f.startsWith('40{"sid":'), 'the namespace connect "40{...}"');
    },
    async subscribe(topic) {
      ws.send(`42${JSON.stringify(['sub', topic])}`);
      const ok = `42${JSON.stringify(['ok', topic])}`;
      await frames.wait((f) => f === ok, ok);
    },
    publish(topic, payload) {
      // The payload travels as a JSON value; receivers re-serialize it to compare.
      ws.send(`42${JSON.stringify(['pub', topic, JSON.parse(payload)])}`);
    },
    close: () => ws.close(),
  };
}

// The NATS client protocol over WebSocket: binary frames that together form a byte
// stream (an op may share a frame with others, or be split across frames).
async function natsClient(port) {
  const events = inbox();
  const messages = inbox();
  let buffer = Buffer.alloc(0);
  let ws;
  const parse = () => {
    for (;;) {
      const eol = buffer.indexOf('\r\n');
      if (eol < 0) return;
      const line = buffer.subarray(0, eol).toString('utf8');
      if (line.startsWith('MSG ')) {
        // MSG <subject> <sid> [reply-to] <#bytes>
        const parts = line.split(' ');
        const size = Number(parts[parts.length - 1]);
        if (buffer.length < eol + 2 + size + 2) return; // payload not all here yet
        const payload = buffer.subarray(eol + 2, eol + 2 + size).toString('utf8');
        buffer = buffer.subarray(eol + 2 + size + 2);
        messages.push(payload);
        continue;
      }
      buffer = buffer.subarray(eol + 2);
      if (line === 'PING') ws.send(Buffer.from('PONG\r\n'));
      else events.push(line);
    }
  };
  ws = await open(`ws://127.0.0.1:${port}/`, (data, isBinary) => {
    if (!isBinary) events.push('text frame (NATS sends binary)');
    buffer = Buffer.concat([buffer, data]);
    parse();
  });
  let sid = 0;
  let pings = 0;
  const roundTrip = async (what) => {
    // PONGs answer PINGs in order: wait for as many as we have sent.
    const want = ++pings;
    ws.send(Buffer.from('PING\r\n'));
    await events.wait(() => events.items.filter((e) => e === 'PONG').length >= want, `PONG after ${what}`);
    const err = events.items.find((e) => e.startsWith('-ERR'));
    if (err) throw new Error(`server said ${err}`);
  };
  return {
    messages,
    async ready() {
      await events.wait((e) => e.startsWith('INFO '), 'INFO');
      ws.send(Buffer.from('CONNECT {"verbose":false,"pedantic":false,"lang":"smoke","version":"0","protocol":1,"echo":true}\r\n'));
      await roundTrip('CONNECT');
    },
    async subscribe(topic) {
      ws.send(Buffer.from(`SUB ${topic} ${++sid}\r\n`));
      await roundTrip(`SUB ${topic}`);
    },
    publish(topic, payload) {
      ws.send(Buffer.from(`PUB ${topic} ${Buffer.byteLength(payload)}\r\n${payload}\r\n`));
    },
    close: () => ws.close(),
  };
}

const CLIENTS = { 'raw-ws': rawClient, ws: rawClient, 'socket.io': socketioClient, nats: natsClient };

async function smoke(peer, port) {
  const connect = CLIENTS[peer];
  const subscribers = [await connect(port), await connect(port)];
  const publisher = await connect(port);
  const clients = [...subscribers, publisher];
  try {
    await Promise.all(clients.map((c) => c.ready()));
    for (const s of subscribers) await s.subscribe(TOPIC);
    // A second topic on the first subscriber, as the benchmark's VUs have.
    await subscribers[0].subscribe(`${TOPIC}-2`);

    const payloads = [];
    for (let i = 0; i < 20; i++) {
      // Spaces and non-ASCII on purpose: payloads are delivered verbatim.
      payloads.push(JSON.stringify({ seq: i, t: Date.now(), text: `hello  bench ${i} é✓` }));
    }
    for (const p of payloads) publisher.publish(TOPIC, p);
    const other = JSON.stringify({ seq: 'other' });
    publisher.publish(`${TOPIC}-2`, other);

    for (const [n, s] of subscribers.entries()) {
      const last = n === 0 ? other : payloads[payloads.length - 1];
      await s.messages.wait((m) => m === last, `subscriber ${n + 1}'s last message`);
      const want = n === 0 ? [...payloads, other] : payloads;
      const got = s.messages.items;
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        throw new Error(`subscriber ${n + 1} got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
      }
    }
    // Let anything misrouted arrive before checking the publisher got nothing.
    await new Promise((r) => setTimeout(r, 100));
    if (publisher.messages.items.length > 0) {
      throw new Error(`the publisher (not subscribed) got ${publisher.messages.items.length} messages`);
    }
    console.log(`smoke ${peer} :${port}: ok (2 subscribers x ${payloads.length} messages, 2 topics)`);
  } finally {
    clients.forEach((c) => c.close());
  }
}

async function main() {
  const [peer, portArg] = process.argv.slice(2);
  const peers = peer === 'all' ? Object.keys(DEFAULT_PORTS) : [peer];
  if (!peer || peers.some((p) => !(p in CLIENTS))) {
    console.error('usage: node smoke.js <raw-ws|ws|socket.io|nats|all> [port]');
    process.exit(2);
  }
  let failed = false;
  for (const p of peers) {
    const port = Number(portArg || DEFAULT_PORTS[p]);
    try {
      await smoke(p, port);
    } catch (err) {
      failed = true;
      console.error(`smoke ${p} :${port}: FAILED: ${err.message}`);
    }
  }
  process.exit(failed ? 1 : 0);
}

main();
