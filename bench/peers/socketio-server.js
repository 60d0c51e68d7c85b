'use strict';
// socket.io 4.8 peer for `crier bench`: rooms are topics.
//
// Usage: node socketio-server.js [--port 4703]
// Prints "listening on 127.0.0.1:PORT" once ready.
//
// Events (default namespace "/"):
//   client emits "sub", topic            -> socket joins room <topic>, server emits "ok", topic
//   client emits "pub", topic, payload   -> io.to(topic).emit("m", payload)
//                                           (everyone in the room, the sender included)
//
// What a raw WebSocket client sees, verified against this server (see README.md):
//
//   connect  ws://127.0.0.1:PORT/socket.io/?EIO=4&transport=websocket
//   S->C  0{"sid":"<20 chars>","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}
//   C->S  40                                  (connect to namespace "/")
//   S->C  40{"sid":"<20 chars>"}              (namespace connected; a different sid)
//   C->S  42["sub","bench"]
//   S->C  42["ok","bench"]
//   C->S  42["pub","bench",{"any":"json"}]
//   S->C  42["m",{"any":"json"}]              (to every socket in room "bench")
//   S->C  2                                   (engine.io ping, every pingInterval)
//   C->S  3                                   (pong; without it the server closes the
//                                              socket pingInterval+pingTimeout later)
//
// Every packet is one text frame; none is batched with another over WebSocket. A frame
// that is not an engine.io packet closes the socket (1005); one over 1 MB closes it (1009).

const { createServer } = require('http');
const { Server } = require('socket.io');
const { portArg } = require('./args');

const port = portArg(process.argv.slice(2), 4703);

const httpServer = createServer((req, res) => {
  res.writeHead(404).end();
});

const io = new Server(httpServer, {
  // The benchmark speaks WebSocket only: no long-polling handshake.
  transports: ['websocket'],
  // Compression would make the benchmark measure zlib, not the server.
  perMessageDeflate: false,
  // pingInterval (25 s) and pingTimeout (20 s) stay at their defaults.
});

io.on('connection', (socket) => {
  socket.on('sub', (topic) => {
    if (typeof topic !== 'string' || topic === '') return;
    socket.join(topic);
    socket.emit('ok', topic);
  });
  socket.on('pub', (topic, payload) => {
    if (typeof topic !== 'string') return;
    io.to(topic).emit('m', payload);
  });
});

httpServer.on('error', (err) => {
  console.error(`socketio-server: ${err.message}`);
  process.exit(1);
});

httpServer.listen(port, '127.0.0.1', () => {
  console.log(`listening on 127.0.0.1:${httpServer.address().port}`);
});
