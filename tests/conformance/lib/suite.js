// The setup every test file shares: one `crier serve` for the file's suite, and a pool of
// clients that is emptied after each test.

import { before, after, afterEach } from 'node:test'

import { ClientPool } from './clients.js'
import { startServer } from './server.js'

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
    running = await startServer({ args })
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
