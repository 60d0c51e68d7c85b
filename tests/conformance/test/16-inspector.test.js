// Case 16: the live inspector page in a real browser (Debian's chromium driven by
// playwright-core): sign-in, the live overview, the channel list, watching a channel,
// sending a broadcast, joining as a user, private channels and capture status with a
// database, and a two-node cluster's nodes. Screenshots go to target/inspector/ (or
// $CRIER_INSPECTOR_SCREENSHOTS). Any console error or page error fails the suite.

import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, mkdirSync, existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

import { chromium } from 'playwright-core'

import { ClientPool, subscribeOk, send, uniqueName, phoenixJoin } from '../lib/clients.js'
import { startServer } from '../lib/server.js'
import { startCluster } from '../lib/cluster.js'
import { useServerWithDatabase } from '../lib/postgres.js'
import { Recorder } from '../lib/wait.js'

const CHROMIUM = process.env.CRIER_CHROMIUM ?? '/usr/bin/chromium'
const repo = (path) => fileURLToPath(new URL(`../../../${path}`, import.meta.url))
const SHOTS = process.env.CRIER_INSPECTOR_SCREENSHOTS ?? repo('target/inspector')
const shot = (page, name) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true })
/**
 * Chromium with one page, and every console error and page error it has, in `problems`.
 */
async function openBrowser(problems) {
  if (!existsSync(CHROMIUM)) throw new Error(`no chromium at ${CHROMIUM} (apt-get install chromium)`)
  mkdirSync(SHOTS, { recursive: true })
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
  const page = await context.newPage()
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`)
  })
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`))
  return { browser, page }
}

/** Long enough for a one-second overview tick on a busy CI machine. */
const UI_TIMEOUT_MS = 15_000

describe('inspector page', () => {
  const pool = new ClientPool()
  const problems = []
  let server
  let browser
  let page

  before(async () => {
    server = await startServer()
    ;({ browser, page } = await openBrowser(problems))
  })

  after(async () => {
    await pool.closeAll()
    await browser?.close()
    await server?.stop()
  })

  const serviceKey = () => server.token({ role: 'service_role' })
  const figure = (name) => page.locator(`[data-figure="${name}"] .value`)

  /** Waits, in the page, until the figure `name` shows `value`. */
  function figureReads(name, value) {
    return page.waitForFunction(
      ([name, value]) => document.querySelector(`[data-figure="${name}"] .value`)?.textContent === value,
      [name, String(value)],
      { timeout: UI_TIMEOUT_MS }
    )
  }

  it('embeds the npm packages’ files unchanged', () => {
    const pairs = [
      ['node_modules/uplot/dist/uPlot.iife.min.js', 'uPlot.iife.min.js'],
      ['node_modules/uplot/dist/uPlot.min.css', 'uPlot.min.css'],
      ['node_modules/phoenix/priv/static/phoenix.mjs', 'phoenix.mjs'],
    ]
    for (const [npm, vendored] of pairs) {
      const theirs = readFileSync(new URL(`../${npm}`, import.meta.url))
      const ours = readFileSync(repo(`crates/crier-server/inspector/vendor/${vendored}`))
      assert.ok(theirs.equals(ours), `${vendored} differs from ${npm}`)
    }
  })

  it('shows nothing but the sign-in form without a key, or with a wrong one', async () => {
    await page.goto(`${server.httpUrl}/inspector`)
    await page.locator('#sign-in-form').waitFor()
    assert.equal(await page.locator('#tabs').isVisible(), false)
    assert.equal(await page.locator('#overview').isVisible(), false)
    assert.equal(await page.locator('.figure').count(), 0)

    await page.fill('#key', 'not-a-token')
    await page.click('#sign-in-form button[type=submit]')
    await page.locator('#sign-in-error:not(:empty)').waitFor({ timeout: UI_TIMEOUT_MS })
    assert.equal(await page.locator('.figure').count(), 0)

    await page.fill('#key', server.token())
    await page.click('#sign-in-form button[type=submit]')
    await page.locator('#sign-in-error', { hasText: 'role anon' }).waitFor({ timeout: UI_TIMEOUT_MS })
    assert.equal(await page.locator('#overview').isVisible(), false)
    assert.equal(await page.locator('.figure').count(), 0)
    await shot(page, 'sign-in-refused')
  })

  it('refuses the inspector channel to a token without an admin role', async () => {
    const socket = pool.phoenix(server)
    await assert.rejects(
      phoenixJoin(socket.channel('crier:inspector', {})),
      /Unauthorized: The inspector needs the service role key/
    )
    const admin = pool.phoenix(server, { token: serviceKey() })
    const welcome = await phoenixJoin(admin.channel('crier:inspector', {}))
    assert.ok(Array.isArray(welcome.samples), JSON.stringify(welcome))
    await pool.closePhoenix(socket)
    await pool.closePhoenix(admin)
  })

  let room
  const clients = []

  it('signs in, and the connection count follows clients as they connect', async () => {
    await page.fill('#key', serviceKey())
    await page.click('#sign-in-form button[type=submit]')
    await figure('connections').waitFor({ timeout: UI_TIMEOUT_MS })
    assert.equal(await page.locator('#sign-in').isVisible(), false)
    const before = Number(await figure('connections').textContent())
    assert.ok(before >= 1, `the inspector's own socket counts: ${before}`)

    room = uniqueName('inspected')
    for (const name of ['alice', 'bob', 'carol']) {
      const client = pool.realtime(server)
      const received = new Recorder('broadcast')
      const channel = client
        .channel(room, { config: { presence: { key: name } } })
        .on('broadcast', { event: '*' }, received.push)
      await subscribeOk(channel)
      clients.push({ name, client, channel, received })
    }
    await figureReads('connections', before + 3)
    await page.locator('#chart canvas').waitFor()
    await shot(page, 'overview')
  })

  it('lists the channel, opens it, and shows its presences and a broadcast as it arrives', async () => {
    await page.click('nav [data-tab=channels]')
    await page.fill('#search', room)
    const row = page.locator(`#channel-table tr[data-channel="${room}"]`)
    await row.waitFor({ timeout: UI_TIMEOUT_MS })
    assert.equal(await row.locator('td').nth(1).textContent(), '3')
    await row.click()
    await page.locator('#channel-state', { hasText: 'watching' }).waitFor({ timeout: UI_TIMEOUT_MS })

    await clients[0].channel.track({ status: 'online' })
    await page.locator('[data-presence="alice"]').waitFor({ timeout: UI_TIMEOUT_MS })

    await send(clients[1].channel, { type: 'broadcast', event: 'from-bob', payload: { text: 'hello inspector' } })
    const tailRow = page.locator('#tail tr[data-event="from-bob"]')
    await tailRow.waitFor({ timeout: UI_TIMEOUT_MS })
    assert.match(await tailRow.textContent(), /hello inspector/)
    await tailRow.click()
    assert.deepEqual(JSON.parse(await page.locator('#tail-json').textContent()).payload, { text: 'hello inspector' })

    await page.click('#tail-pause')
    await send(clients[1].channel, { type: 'broadcast', event: 'while-paused', payload: {} })
    await page.locator('#tail-count', { hasText: '1 held' }).waitFor({ timeout: UI_TIMEOUT_MS })
    assert.equal(await page.locator('#tail tr[data-event="while-paused"]').count(), 0)
    await page.click('#tail-pause')
    await page.locator('#tail tr[data-event="while-paused"]').waitFor()
    await shot(page, 'channel')
  })

  it('sends a broadcast (JSON, then text) that every client receives', async () => {
    await page.fill('#send-event', 'from-inspector')
    await page.selectOption('#send-kind', 'json')
    await page.fill('#send-payload', '{"n": 7}')
    await page.click('#send-form button[type=submit]')
    for (const { received } of clients) {
      const got = await received.waitFor((m) => m.event === 'from-inspector', 'the inspector broadcast', UI_TIMEOUT_MS)
      assert.deepEqual(got.payload, { n: 7 })
    }
    await page.locator('#send-result', { hasText: 'Sent (202)' }).waitFor()

    await page.fill('#send-event', 'text-from-inspector')
    await page.selectOption('#send-kind', 'text')
    await page.fill('#send-payload', 'plain words')
    await page.click('#send-form button[type=submit]')
    const got = await clients[2].received.waitFor((m) => m.event === 'text-from-inspector', 'the text broadcast', UI_TIMEOUT_MS)
    assert.equal(got.payload, 'plain words')

    await page.selectOption('#send-kind', 'json')
    await page.fill('#send-payload', '{not json')
    await page.click('#send-form button[type=submit]')
    await page.locator('#send-result', { hasText: 'Not JSON' }).waitFor()
  })

  it('joins as a user with a chosen token and sees what that user sees', async () => {
    await page.click('nav [data-tab=join-as]')
    await page.fill('#join-token', server.token({ ttl: -60 }))
    await page.fill('#join-topic', room)
    await page.click('#join-form button[type=submit]')
    await page.locator('#join-state', { hasText: 'refused' }).waitFor({ timeout: UI_TIMEOUT_MS })

    await page.fill('#join-token', server.token({ sub: 'user-1' }))
    await page.click('#join-form button[type=submit]')
    await page.locator('#join-state', { hasText: 'joined' }).waitFor({ timeout: UI_TIMEOUT_MS })
    await send(clients[2].channel, { type: 'broadcast', event: 'seen-by-user', payload: { from: 'carol' } })
    await page.locator('#join-log li', { hasText: 'seen-by-user' }).waitFor({ timeout: UI_TIMEOUT_MS })
    await shot(page, 'join-as')
    await page.click('#join-leave')
  })

  it('goes back to the sign-in form, saying why, when the key expires', async () => {
    await page.click('#sign-out')
    await page.fill('#key', server.token({ role: 'service_role', ttl: 3 }))
    await page.click('#sign-in-form button[type=submit]')
    await page.locator('#tabs').waitFor({ timeout: UI_TIMEOUT_MS })
    await page.locator('#sign-in-error', { hasText: 'Token has expired' }).waitFor({ timeout: UI_TIMEOUT_MS })
    assert.equal(await page.locator('#tabs').isVisible(), false)
    assert.equal(await page.locator('.tab:visible').count(), 0)
    await page.fill('#key', serviceKey())
    await page.click('#sign-in-form button[type=submit]')
    await page.locator('#tabs').waitFor({ timeout: UI_TIMEOUT_MS })
  })

  it('signs out to the bare form, and stays signed out after a reload', async () => {
    await page.click('#sign-out')
    await page.locator('#sign-in-form').waitFor()
    await page.reload()
    await page.locator('#sign-in-form').waitFor()
    assert.equal(await page.locator('.figure').count(), 0)
  })

  it('wrote no console error and threw no page error', () => {
    assert.deepEqual(problems, [])
  })
})

describe('inspector page on a two-node cluster', () => {
  const pool = new ClientPool()
  const problems = []
  let cluster
  let browser
  let page

  before(async () => {
    cluster = await startCluster()
    ;({ browser, page } = await openBrowser(problems))
  })

  after(async () => {
    await pool.closeAll()
    await browser?.close()
    await cluster?.stop()
  })

  it('shows every node with its load, and sends to subscribers on the other node', async () => {
    const [nodeA, nodeB] = cluster.nodes
    await page.goto(`${nodeA.httpUrl}/inspector`)
    await page.fill('#key', nodeA.token({ role: 'service_role' }))
    await page.click('#sign-in-form button[type=submit]')
    await page.locator('#cluster h2', { hasText: 'Cluster: 2 nodes' }).waitFor({ timeout: UI_TIMEOUT_MS })
    await page.locator('[data-node="node-a"]').waitFor()

    const room = uniqueName('cluster-inspected')
    const received = new Recorder('broadcast')
    for (let i = 0; i < 2; i += 1) {
      const client = pool.realtime(nodeB)
      const channel = client.channel(room).on('broadcast', { event: '*' }, received.push)
      await subscribeOk(channel)
    }
    // Each node reports its connections with its lease, every 2 s.
    await page.waitForFunction(
      () => document.querySelector('[data-node="node-b"] td:nth-child(2)')?.textContent === '2',
      undefined,
      { timeout: UI_TIMEOUT_MS }
    )
    await page.locator('#cluster [data-node="node-b"]', { hasText: 'renewed' }).waitFor()
    await shot(page, 'cluster')

    // This node has no subscriber of the room: it is watched from here (which subscribes
    // this node), and a broadcast sent from here reaches the clients on the other node.
    await page.click('nav [data-tab=channels]')
    await page.fill('#search', room)
    await page.locator('#channel-count', { hasText: '0 of' }).waitFor({ timeout: UI_TIMEOUT_MS })
    await page.click('nav [data-tab=join-as]')
    await page.fill('#join-token', nodeA.token())
    await page.fill('#join-topic', room)
    await page.click('#join-form button[type=submit]')
    await page.locator('#join-state', { hasText: 'joined' }).waitFor({ timeout: UI_TIMEOUT_MS })
    await page.click('nav [data-tab=channels]')
    const row = page.locator(`#channel-table tr[data-channel="${room}"]`)
    await row.waitFor({ timeout: UI_TIMEOUT_MS })
    await row.click()
    await page.locator('#channel-state', { hasText: 'watching' }).waitFor({ timeout: UI_TIMEOUT_MS })
    await page.fill('#send-event', 'across-nodes')
    await page.fill('#send-payload', '{"from": "node-a"}')
    await page.click('#send-form button[type=submit]')
    const got = await received.waitForCount(2, 'the broadcast on both clients of node-b', UI_TIMEOUT_MS)
    for (const message of got) assert.deepEqual(message.payload, { from: 'node-a' })
    // The user joined on the other tab: what it saw is kept there.
    await page.locator('#join-log li', { hasText: 'across-nodes' }).waitFor({ state: 'attached', timeout: UI_TIMEOUT_MS })
  })

  it('wrote no console error and threw no page error', () => {
    assert.deepEqual(problems, [])
  })
})

describe('inspector page with a database: capture status and private channels', () => {
  const { server, db, pool } = useServerWithDatabase({
    schema: `
      create role anon nologin;
      create role authenticated nologin;
      create role service_role nologin bypassrls;
    `,
  })
  const problems = []
  let browser
  let page

  before(async () => {
    // After the server started: it created realtime.messages.
    await db.sql(`
      create policy members_read on realtime.messages for select to authenticated
        using (realtime.topic() like 'room-%');
      create policy members_write on realtime.messages for insert to authenticated
        with check (realtime.topic() like 'room-%');
    `)
    ;({ browser, page } = await openBrowser(problems))
  })

  after(async () => {
    await browser?.close()
  })

  const member = (sub) => server.token({ role: 'authenticated', sub })

  it('shows the slot streaming, watches a private channel, and joins it as a member and as a stranger', async () => {
    await page.goto(`${server.httpUrl}/inspector`)
    await page.fill('#key', server.token({ role: 'service_role' }))
    await page.click('#sign-in-form button[type=submit]')
    await page.locator('#capture dd.good', { hasText: 'streaming' }).waitFor({ timeout: UI_TIMEOUT_MS })
    await page.locator('#capture', { hasText: 'crier_realtime' }).waitFor()

    const name = uniqueName('room')
    const alice = pool.realtime(server, { token: member('alice') })
    const aliceChannel = alice.channel(name, { config: { private: true } })
    await subscribeOk(aliceChannel)

    // The inspector's service role reads every private channel (it bypasses the policies).
    await page.click('nav [data-tab=channels]')
    await page.fill('#search', name)
    const row = page.locator(`#channel-table tr[data-channel="${name}"]`)
    await row.locator('.tag', { hasText: 'private' }).waitFor({ timeout: UI_TIMEOUT_MS })
    await row.click()
    await page.locator('#channel-state', { hasText: 'watching' }).waitFor({ timeout: UI_TIMEOUT_MS })
    await send(aliceChannel, { type: 'broadcast', event: 'private-hello', payload: { from: 'alice' } })
    await page.locator('#tail tr[data-event="private-hello"]').waitFor({ timeout: UI_TIMEOUT_MS })

    await page.click('nav [data-tab=join-as]')
    await page.check('#join-private')
    await page.fill('#join-topic', name)
    await page.fill('#join-token', server.token())
    await page.click('#join-form button[type=submit]')
    await page
      .locator('#join-state', { hasText: 'You do not have permissions to read from this Channel topic' })
      .waitFor({ timeout: UI_TIMEOUT_MS })
    await page.fill('#join-token', member('bob'))
    await page.click('#join-form button[type=submit]')
    await page.locator('#join-state', { hasText: 'joined' }).waitFor({ timeout: UI_TIMEOUT_MS })
    await send(aliceChannel, { type: 'broadcast', event: 'for-members', payload: {} })
    await page.locator('#join-log li', { hasText: 'for-members' }).waitFor({ timeout: UI_TIMEOUT_MS })
    await shot(page, 'join-as-private')
  })

  it('wrote no console error and threw no page error', () => {
    assert.deepEqual(problems, [])
  })
})
