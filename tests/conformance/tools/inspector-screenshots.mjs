// The inspector's screenshots in docs/: a server kept busy by 48 realtime-js clients in
// four rooms, watched for 75 s. Run from tests/conformance:
//   CRIER_BIN=../../target/debug/crier node tools/inspector-screenshots.mjs ../../docs/inspector.png
// (writes inspector.png, the overview, and inspector-channel.png, a watched channel).
import { chromium } from 'playwright-core'
import { startServer } from '../lib/server.js'
import { ClientPool, subscribeOk } from '../lib/clients.js'
const server = await startServer({ args: ['--max-events-per-second', '100000', '--max-connections', '1000'] })
const pool = new ClientPool()
const channels = []
for (let i = 0; i < 48; i++) {
  const client = pool.realtime(server)
  const room = ['lobby', 'game-7', 'cursors', 'chat:support'][i % 4]
  const ch = client.channel(room, { config: { presence: { key: `user-${i}` } } })
  await subscribeOk(ch)
  await ch.track({ online_at: new Date().toISOString() })
  channels.push(ch)
}
const start = Date.now()
const timer = setInterval(() => {
  const t = (Date.now() - start) / 1000
  const n = Math.round(6 + 5 * Math.sin(t / 8) + Math.random() * 3)
  for (let k = 0; k < n; k++) {
    const ch = channels[Math.floor(Math.random() * channels.length)]
    ch.send({ type: 'broadcast', event: 'cursor', payload: { x: Math.round(Math.random() * 800), y: Math.round(Math.random() * 600) } })
  }
}, 250)
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] })
const page = await (await browser.newContext({ viewport: { width: 1280, height: 860 } })).newPage()
await page.goto(`${server.httpUrl}/inspector`)
await page.fill('#key', server.token({ role: 'service_role' }))
await page.click('#sign-in-form button[type=submit]')
await page.waitForTimeout(75_000)
await page.screenshot({ path: process.argv[2] ?? '/tmp/inspector.png' })
await page.click('nav [data-tab=channels]')
await page.waitForTimeout(2500)
await page.click('#channel-table tr[data-channel="cursors"]')
await page.waitForTimeout(4000)
await page.screenshot({ path: (process.argv[2] ?? '/tmp/inspector.png').replace('.png', '-channel.png') })
clearInterval(timer)
await browser.close(); await pool.closeAll(); await server.stop()
