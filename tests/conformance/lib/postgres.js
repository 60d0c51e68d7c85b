// A private PostgreSQL for the postgres_changes tests, and a `crier serve` capturing from it.
//
// The database comes from `crier-test-postgres` (crates/crier-testkit): a fresh cluster with
// `wal_level = logical` on a free loopback port, whose `postgres://` URL the binary prints on
// its first stdout line; it stops and removes the cluster when its stdin closes (so also when
// this process dies). The binary comes from $CRIER_TEST_POSTGRES_BIN, or
// ../../target/debug/crier-test-postgres relative to tests/conformance (build it with
// `cargo build -p crier-testkit` in the repo root). It needs the PostgreSQL server binaries
// (apt-get install postgresql, or CRIER_PG_BINDIR).
//
// SQL runs through `psql` from the same binaries, one process per call.

import { spawn, execFile } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { before, after, afterEach } from 'node:test'

import { ClientPool } from './clients.js'
import { startServer } from './server.js'

const CONFORMANCE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..')

export const TEST_POSTGRES_BIN = process.env.CRIER_TEST_POSTGRES_BIN
  ? resolve(CONFORMANCE_DIR, process.env.CRIER_TEST_POSTGRES_BIN)
  : resolve(CONFORMANCE_DIR, '../../target/debug/crier-test-postgres')

/** initdb and a server start; the binary waits up to 60 s for the start itself. */
const STARTUP_TIMEOUT_MS = 60_000
const STOP_TIMEOUT_MS = 10_000
const PSQL_TIMEOUT_MS = 30_000

/** `psql` from $CRIER_PG_BINDIR, else the newest /usr/lib/postgresql/<version>/bin, else PATH. */
function findPsql() {
  if (process.env.CRIER_PG_BINDIR) return join(process.env.CRIER_PG_BINDIR, 'psql')
  let versions = []
  try {
    versions = readdirSync('/usr/lib/postgresql')
      .filter((v) => /^\d+$/.test(v) && existsSync(`/usr/lib/postgresql/${v}/bin/psql`))
      .sort((a, b) => Number(a) - Number(b))
  } catch {
    // no Debian layout
  }
  return versions.length ? `/usr/lib/postgresql/${versions.at(-1)}/bin/psql` : 'psql'
}

const PSQL = findPsql()

/**
 * Starts a private PostgreSQL.
 *
 * @returns {Promise<{url: string, sql: (text: string) => Promise<string>, stop: () => Promise<void>}>}
 */
export async function startPostgres() {
  if (!existsSync(TEST_POSTGRES_BIN)) {
    throw new Error(
      `crier-test-postgres not found at ${TEST_POSTGRES_BIN}; run \`cargo build -p crier-testkit\` in the repo root or set CRIER_TEST_POSTGRES_BIN`
    )
  }
  // stdin stays open: closing it is the stop signal.
  const child = spawn(TEST_POSTGRES_BIN, [], { stdio: ['pipe', 'pipe', 'pipe'] })
  const exited = new Promise((resolveExit) =>
    child.once('exit', (code, signal) => resolveExit({ code, signal }))
  )
  let stderr = ''
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (chunk) => {
    stderr += chunk
  })

  const url = await new Promise((resolveUrl, reject) => {
    let stdout = ''
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`crier-test-postgres printed no URL within ${STARTUP_TIMEOUT_MS} ms`))
    }, STARTUP_TIMEOUT_MS)
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk) => {
      if (stdout === null) return
      stdout += chunk
      const newline = stdout.indexOf('\n')
      if (newline === -1) return
      const first = stdout.slice(0, newline).trim()
      stdout = null
      clearTimeout(timer)
      if (first.startsWith('postgres://')) resolveUrl(first)
      else reject(new Error(`unexpected first line from crier-test-postgres: ${JSON.stringify(first)}`))
    })
    exited.then(({ code, signal }) => {
      clearTimeout(timer)
      reject(new Error(`crier-test-postgres exited (code ${code}, signal ${signal}): ${stderr}`))
    })
  })
  child.stdout.resume()

  return {
    url,
    /**
     * Runs `text` (one or more statements, stopping at the first error) as the superuser and
     * resolves with psql's unaligned, tuples-only output once it has committed.
     */
    sql(text) {
      return new Promise((resolveSql, reject) => {
        execFile(
          PSQL,
          ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', text],
          { timeout: PSQL_TIMEOUT_MS },
          (error, stdout, errOut) => {
            if (error) reject(new Error(`psql failed: ${errOut || error.message}\nSQL: ${text}`))
            else resolveSql(stdout)
          }
        )
      })
    },
    /** Closes the binary's stdin, which stops and removes the cluster. */
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.stdin.end()
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
      await exited
      clearTimeout(timer)
    },
  }
}

/**
 * Like `useServer` (lib/suite.js), with a private PostgreSQL behind the server: `before()`
 * starts the database, runs `schema` on it, then starts
 * `crier serve --database-url <url> --cdc-resume-grace 0s ...args`. One database and one
 * server per test file.
 *
 * Returns `{ server, pool, db }`; `db.sql(text)` runs SQL as the superuser.
 *
 * @param {object} opts
 * @param {string} [opts.schema] SQL run before the server starts
 * @param {string[]} [opts.args] extra `crier serve` flags
 */
export function useServerWithDatabase({ schema = '', args = [] } = {}) {
  let postgres
  let running
  const pool = new ClientPool()
  before(async () => {
    postgres = await startPostgres()
    if (schema) await postgres.sql(schema)
    running = await startServer({
      args: ['--database-url', postgres.url, '--cdc-resume-grace', '0s', ...args],
    })
  })
  afterEach(() => pool.closeAll())
  after(async () => {
    await running?.stop()
    await postgres?.stop()
  })
  const forward = (what, get) =>
    new Proxy(
      {},
      {
        get(_, property) {
          const target = get()
          if (!target) throw new Error(`the ${what} is used before before() started it`)
          const value = target[property]
          return typeof value === 'function' ? value.bind(target) : value
        },
      }
    )
  return {
    server: forward('server', () => running),
    db: forward('database', () => postgres),
    pool,
  }
}
