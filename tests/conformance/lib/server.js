// Spawns a real `crier serve` process on an OS-assigned port and stops it again.
//
// The binary comes from $CRIER_BIN, or ../../target/debug/crier relative to
// tests/conformance (build it with `cargo build -p crier` in the repo root).
// Set CRIER_LOG=1 to copy the server's stderr to this process's stderr.

import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { randomBytes } from 'node:crypto'

import { mintToken } from './jwt.js'

const CONFORMANCE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..')

export const CRIER_BIN = process.env.CRIER_BIN
  ? resolve(CONFORMANCE_DIR, process.env.CRIER_BIN)
  : resolve(CONFORMANCE_DIR, '../../target/debug/crier')

const STARTUP_TIMEOUT_MS = 10_000
const STOP_TIMEOUT_MS = 5_000
const LOG_LINES_KEPT = 300

/** Every server started by this process, killed on exit as a last resort. */
const running = new Set()
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

/**
 * Starts `crier serve --bind 127.0.0.1 --port 0 --jwt-secret <secret> ...args`.
 *
 * @param {object} [opts]
 * @param {string[]} [opts.args] extra flags, e.g. ['--max-joins-per-second', '10000']
 * @param {string} [opts.secret] the JWT secret (random by default)
 * @returns {Promise<CrierServer>}
 */
export async function startServer({ args = [], secret = randomBytes(24).toString('hex') } = {}) {
  if (!existsSync(CRIER_BIN)) {
    throw new Error(
      `crier binary not found at ${CRIER_BIN}; run \`cargo build -p crier\` in the repo root or set CRIER_BIN`
    )
  }
  const argv = ['serve', '--bind', '127.0.0.1', '--port', '0', '--jwt-secret', secret, ...args]
  const child = spawn(CRIER_BIN, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
  running.add(child)

  const log = []
  const keep = (line) => {
    log.push(line)
    if (log.length > LOG_LINES_KEPT) log.shift()
  }
  const exited = new Promise((resolveExit) => {
    child.once('exit', (code, signal) => {
      running.delete(child)
      resolveExit({ code, signal })
    })
  })

  let stderrTail = ''
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (chunk) => {
    if (process.env.CRIER_LOG) process.stderr.write(chunk)
    const lines = (stderrTail + chunk).split('\n')
    stderrTail = lines.pop()
    lines.forEach(keep)
  })

  const port = await new Promise((resolvePort, reject) => {
    let stdout = ''
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`crier did not print its listening line within ${STARTUP_TIMEOUT_MS} ms`))
    }, STARTUP_TIMEOUT_MS)
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk) => {
      if (stdout === null) return
      stdout += chunk
      const newline = stdout.indexOf('\n')
      if (newline === -1) return
      const first = stdout.slice(0, newline)
      stdout = null
      clearTimeout(timer)
      const match = /listening on [^\s]*:(\d+)\b/.exec(first)
      if (match) resolvePort(Number(match[1]))
      else reject(new Error(`unexpected first line from crier: ${JSON.stringify(first)}`))
    })
    exited.then(({ code, signal }) => {
      clearTimeout(timer)
      reject(
        new Error(
          `crier exited during startup (code ${code}, signal ${signal}):\n${log.join('\n')}`
        )
      )
    })
  })
  // Keep draining stdout so the pipe never fills.
  child.stdout.resume()

  return {
    port,
    secret,
    /** WebSocket endpoint as realtime-js and phoenix.js expect it (they append /websocket). */
    wsUrl: `ws://127.0.0.1:${port}/socket`,
    httpUrl: `http://127.0.0.1:${port}`,
    /** A token for `role` anon, valid for an hour unless told otherwise. */
    token(opts) {
      return mintToken(secret, opts)
    },
    /** The last lines the server wrote to stderr, for failure messages. */
    logTail(lines = 40) {
      return log.slice(-lines).join('\n')
    },
    get exitCode() {
      return child.exitCode
    },
    /** SIGTERM, then SIGKILL if the process has not exited within 5 s. */
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
      await exited
      clearTimeout(timer)
    },
  }
}
