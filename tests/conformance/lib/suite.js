// The setup every test file shares: one `crier serve` for the file's suite, and a pool of
// clients that is emptied after each test.

import { before, after, afterEach } from 'node:test'

import { ClientPool } from './clients.js'
import { startCluster } from './cluster.js'
import { startServer } from './server.js'

/** CRIER_CONFORMANCE_CLUSTER=1: every suite runs against two nodes on one Redis instead. */
export const CLUSTER = Boolean(process.env.CRIER_CONFORMANCE_CLUSTER)

/**
 * Registers the hooks in the current `describe` and returns `{ server, pool }`.
 *
 * `server` stands in for the server started in `before()`: tests use it as the server
 * itself (`server.token()`, `pool.realtime(server, ...)`), because it forwards every
 * property to the running server.
 *
 * @param {object} [opts]
 * @param {string[]} [opts.args] extra `crier serve` flags
 */
export function useServer({ args = [] } = {}) {
  let running
  const pool = new ClientPool()
  before(async () => {
    running = CLUSTER ? await startCluster({ args }) : await startServer({ args })
  })
  afterEach(() => pool.closeAll())
  after(() => running?.stop())
  const server = new Proxy(
    {},
    {
      get(_, property) {
        if (!running) throw new Error('the server is used before before() started it')
        const value = running[property]
        return typeof value === 'function' ? value.bind(running) : value
      },
    }
  )
  return { server, pool }
}
