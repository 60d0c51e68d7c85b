'use strict';
// Node `ws` peer for `crier bench`: the raw text protocol, the same as crier-rawws.
//
//   sub <topic>            -> "ok <topic>"
//   pub <topic> <payload>  -> "<payload>" to every socket subscribed to <topic>
//   ping                   -> "pong"
//   anything else          -> "err <reason>" (socket stays open)
//
// Any path is accepted. Usage: node ws-server.js [--port 4702]
// Prints "listening on 127.0.0.1:PORT" once ready.

const { WebSocketServer } = require('ws');
const { portArg } = require('./args');

const port = portArg(process.argv.slice(2), 4702);

/** topic -> Set of sockets subscribed to it */
const topics = new Map();

function subscribe(ws, topic) {
  let members = topics.get(topic);
  if (!members) {
    members = new Set();
    topics.set(topic, members);
  }
  members.add(ws);
  ws.topics.add(topic);
}

function unsubscribeAll(ws) {
  for (const topic of ws.topics) {
    const members = topics.get(topic);
    if (!members) continue;
    members.delete(ws);
    if (members.size === 0) topics.delete(topic);
  }
  ws.topics.clear();
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  // Compression would make the benchmark measure zlib, not the server.
  perMessageDeflate: false,
  // Same frame limit as Crier and crier-rawws.
  maxPayload: 5_000_000,
  // Every path is accepted, like crier-rawws.
});

wss.on('connection', (ws) => {
  ws.topics = new Set();
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      ws.send('err binary frames are not understood');
      return;
    }
    const text = data.toString('utf8');
    if (text === 'ping') {
      ws.send('pong');
    } else if (text.startsWith('sub ')) {
      const topic = text.slice(4);
      if (topic === '') return ws.send('err usage: sub <topic>');
      subscribe(ws, topic);
      ws.send(`ok ${topic}`);
    } else if (text.startsWith('pub ')) {
      const space = text.indexOf(' ', 4);
      if (space <= 4) return ws.send('err usage: pub <topic> <payload>');
      const members = topics.get(text.slice(4, space));
      if (!members) return;
      // One string for every subscriber; ws frames it per socket.
      const payload = text.slice(space + 1);
      for (const member of members) {
        if (member.readyState === member.OPEN) member.send(payload);
      }
    } else {
      ws.send('err unknown command');
    }
  });
  ws.on('close', () => unsubscribeAll(ws));
  // A reset connection emits 'error' then 'close'; without a listener 'error' would throw.
  ws.on('error', () => {});
});

wss.on('listening', () => {
  console.log(`listening on 127.0.0.1:${wss.address().port}`);
});

wss.on('error', (err) => {
  console.error(`ws-server: ${err.message}`);
  process.exit(1);
});
