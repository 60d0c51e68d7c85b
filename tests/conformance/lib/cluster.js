// Two `crier serve` nodes on one private `redis-server`, presented as one server whose
// WebSocket and HTTP addresses alternate between the nodes: each client a test creates
// connects to the other node than the one before, so a sender and its receiver sit on
// different nodes. Used when CRIER_CONFORMANCE_CLUSTER=1 (see lib/suite.js).
//
// redis-server comes from $CRIER_REDIS_SERVER or PATH (`apt-get install redis-server`;
// scripts/test installs it).

import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { randomBytes } from 'node:crypto'

import { startServer } from './server.js'

const REDIS_BIN = process.env.CRIER_REDIS_SERVER || 'redis-server'
const REDIS_STARTUP_TIMEOUT_MS = 10_000

/** A free loopback port (redis-server needs one given). */
function freePort() {
  return new Promise((resolvePort, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address()
      probe.close(() => resolvePort(port))
    })
  })
}

/** Starts a redis-server that keeps nothing on disk; resolves once it accepts connections. */
async function startRedis() {
  const port = await freePort()
  const child = spawn(
    REDIS_BIN,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'pipe', 'pipe'] }
  )
  process.on('exit', () => child.kill('SIGKILL'))
  await new Promise((resolveReady, reject) => {
    let out = ''
    const timer = setTimeout(
      () => reject(new Error(`redis-server did not start within ${REDIS_STARTUP_TIMEOUT_MS} ms:\n${out}`)),
      REDIS_STARTUP_TIMEOUT_MS
    )
    child.once('error', (err) => {
      clearTimeout(timer)
      reject(new Error(`cannot run ${REDIS_BIN} (apt-get install redis-server): ${err.message}`))
    })
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk) => {
      out += chunk
      if (out.includes('Ready to accept connections')) {
        clearTimeout(timer)
        child.stdout.resume()
        resolveReady()
      }
    })
  })
  return {
    url: `redis://127.0.0.1:${port}`,
    stop() {
      child.kill('SIGKILL')
    },
  }
}

/**
 * Starts Redis and two nodes with the same secret and `args`.
 *
 * @param {object} [opts]
 * @param {string[]} [opts.args] extra `crier serve` flags for both nodes
 */
export async function startCluster({ args = [] } = {}) {
  const redis = await startRedis()
  const secret = randomBytes(24).toString('hex')
  const nodes = []
  try {
    for (const name of ['node-a', 'node-b']) {
      nodes.push(
        await startServer({ secret, args: ['--redis-url', redis.url, '--node-name', name, ...args] })
      )
    }
  } catch (err) {
    await Promise.all(nodes.map((node) => node.stop()))
    redis.stop()
    throw err
  }
  let next = 0
  const pick = () => nodes[next++ % nodes.length]
  return {
    nodes,
    secret,
    get port() {
      return pick().port
    },
    /** The next node's WebSocket endpoint: consecutive clients land on different nodes. */
    get wsUrl() {
      return pick().wsUrl
    },
    /** The next node's HTTP address. */
    get httpUrl() {
      return pick().httpUrl
    },
    token(opts) {
      return nodes[0].token(opts)
    },
    logTail(lines = 40) {
      return nodes.map((node, i) => `--- node ${i}\n${node.logTail(lines)}`).join('\n')
    },
    get exitCode() {
      return nodes.find((node) => node.exitCode !== null)?.exitCode ?? null
    },
    async stop() {
      await Promise.all(nodes.map((node) => node.stop()))
      redis.stop()
    },
  }
}
