// The inspector page. Everything it shows comes over an ordinary Crier socket: the
// `crier:inspector` channel pushes an overview each second and answers `channels`
// requests; a watched channel is joined like any client would join it; broadcasts are
// sent through the REST API. No figure is in the page itself, so a visitor without an
// admin key sees the sign-in form and nothing else.

import { Socket, Presence } from './phoenix.mjs'

const KEY_STORE = 'crier-inspector-key'
const INSPECTOR_TOPIC = 'crier:inspector'
const CHANNELS_EVERY_MS = 2000
const TAIL_ROWS = 200

const $ = (id) => document.getElementById(id)
const number = new Intl.NumberFormat('en', { maximumFractionDigits: 1 })

const state = {
  key: null,
  socket: null,
  inspector: null,
  samples: [],
  chart: null,
  tab: 'overview',
  channelsTimer: null,
  watched: null,
  paused: false,
  held: [],
  tail: [],
  user: null,
}

// ---- formatting ----------------------------------------------------------------------

function fmt(value) {
  if (value === null || value === undefined) return '–'
  return number.format(value)
}

function bytes(value) {
  if (value === null || value === undefined) return '–'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit += 1
  }
  return `${number.format(value)} ${units[unit]}`
}

function seconds(value) {
  if (value === null || value === undefined) return '–'
  if (value < 1) return `${number.format(value * 1000)} ms`
  return `${number.format(value)} s`
}

function duration(total) {
  const h = Math.floor(total / 3600)
  const m = Math.floor((total % 3600) / 60)
  const s = total % 60
  return h ? `${h}h ${m}m` : m ? `${m}m ${s}s` : `${s}s`
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) {
    if (name === 'class') node.className = value
    else if (name.startsWith('data-')) node.setAttribute(name, value)
    else node[name] = value
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : String(child))
  }
  return node
}

function socketUrl() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws'
  return `${scheme}://${location.host}/socket`
}

function setStatus(text, kind) {
  const status = $('status')
  status.textContent = text
  status.className = `status ${kind ?? ''}`
}

// ---- sign-in -------------------------------------------------------------------------

async function checkKey(key) {
  const response = await fetch('/inspector/sign-in', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ key }),
  })
  return response.json()
}

function showSignIn(reason = '') {
  $('sign-in').hidden = false
  $('tabs').hidden = true
  for (const tab of document.querySelectorAll('.tab')) tab.hidden = true
  $('sign-in-error').textContent = reason
  setStatus('')
}

async function signIn(key) {
  let verdict
  try {
    verdict = await checkKey(key)
  } catch (error) {
    return showSignIn(`The server did not answer: ${error.message}`)
  }
  if (!verdict.ok) {
    sessionStorage.removeItem(KEY_STORE)
    return showSignIn(verdict.reason)
  }
  sessionStorage.setItem(KEY_STORE, key)
  state.key = key
  connect(key)
}

function signOut(reason = '') {
  stopWatching()
  leaveAsUser()
  clearInterval(state.channelsTimer)
  state.channelsTimer = null
  state.inspector?.leave()
  state.socket?.disconnect()
  state.socket = null
  state.inspector = null
  state.key = null
  sessionStorage.removeItem(KEY_STORE)
  showSignIn(reason)
}

function connect(key) {
  const socket = new Socket(socketUrl(), { params: { apikey: key } })
  // Callbacks of a socket signed out of (or replaced) must not touch the page.
  const current = () => state.socket === socket
  socket.onOpen(() => current() && setStatus('connected', 'live'))
  socket.onClose(() => current() && setStatus('reconnecting…', 'down'))
  socket.connect()
  const inspector = socket.channel(INSPECTOR_TOPIC, {})
  inspector.on('overview', (overview) => {
    addSample(overview.sample)
    renderOverview(overview)
  })
  // The server closes the channel when the key expires: back to the form, with why.
  inspector.on('system', ({ message }) => current() && signOut(message))
  inspector
    .join()
    .receive('ok', (welcome) => {
      $('sign-in').hidden = true
      $('tabs').hidden = false
      showTab(state.tab)
      state.samples = welcome.samples ?? []
      drawChart()
      if (welcome.overview) renderOverview(welcome.overview)
    })
    .receive('error', ({ reason }) => current() && signOut(reason))
    .receive('timeout', () => current() && setStatus('no answer yet, retrying…', 'down'))
  state.socket = socket
  state.inspector = inspector
}

// ---- tabs ----------------------------------------------------------------------------

function showTab(name) {
  state.tab = name
  for (const tab of document.querySelectorAll('.tab')) tab.hidden = tab.id !== name
  for (const button of document.querySelectorAll('nav [data-tab]')) {
    button.classList.toggle('active', button.dataset.tab === name)
  }
  clearInterval(state.channelsTimer)
  state.channelsTimer = null
  if (name === 'channels') {
    requestChannels()
    state.channelsTimer = setInterval(requestChannels, CHANNELS_EVERY_MS)
  }
  if (name === 'overview') drawChart()
}

// ---- overview ------------------------------------------------------------------------

function figure(name, label, value) {
  return element(
    'div',
    { class: 'figure', 'data-figure': name },
    element('div', { class: 'value' }, value),
    element('div', { class: 'label' }, label)
  )
}

function renderOverview(overview) {
  const { sample, totals } = overview
  const figures = [
    figure('connections', 'Connections', fmt(sample.connections)),
    figure('channels', 'Channels joined', fmt(overview.channels)),
    figure('topics', 'Topics', fmt(overview.topics)),
    figure('messages-in', 'Messages in / s', fmt(sample.messages_in)),
    figure('messages-out', 'Messages out / s', fmt(sample.messages_out)),
    figure('bytes-out', 'Sent / s', bytes(sample.bytes_out)),
    figure('queued', 'Queued for sockets', bytes(overview.queued_bytes)),
    figure('slow-consumers', 'Slow-consumer disconnects', fmt(totals.slow_consumer_disconnects)),
    figure('rate-limited', 'Rate-limit trips', fmt(totals.rate_limited)),
    figure('connect-rejections', 'Connects refused', fmt(totals.connect_rejections)),
    figure('join-errors', 'Joins refused', fmt(totals.join_errors)),
    figure('uptime', `Uptime (v${overview.version})`, duration(overview.uptime_seconds)),
  ]
  if (overview.history) {
    const { messages, bytes: kept, topics } = overview.history
    figures.push(figure('history', `Kept for resume: ${bytes(kept)}, ${fmt(topics)} topics`, fmt(messages)))
  }
  $('figures').replaceChildren(...figures)
  renderCapture(overview.postgres_changes, sample)
  renderCluster(overview.cluster)
}

function definitions(pairs) {
  const list = element('dl', { class: 'kv' })
  for (const [term, value, kind] of pairs) {
    list.append(element('dt', {}, term), element('dd', kind ? { class: kind } : {}, value))
  }
  return list
}

function renderCapture(capture, sample) {
  const card = $('capture')
  if (!capture) return
  const stateKind = capture.state === 'connecting' ? 'bad' : 'good'
  card.replaceChildren(
    element('h2', {}, 'Postgres changes'),
    definitions([
      ['State', capture.state, stateKind],
      ['Slot', capture.slot],
      ['Lag', bytes(capture.lag_bytes)],
      ['Last commit to delivery', seconds(capture.lag_seconds)],
      ['Changes / s', fmt(sample.changes)],
      ['Captured', fmt(capture.captured)],
      ['Reconnects', fmt(capture.reconnects)],
    ])
  )
}

function renderCluster(cluster) {
  const card = $('cluster')
  if (!cluster) return
  const rows = cluster.nodes.map((node) =>
    element('tr', { 'data-node': node.name },
      element('td', {}, node.name),
      element('td', {}, fmt(node.connections)),
      element('td', {}, fmt(node.presence_entries)),
      element('td', { class: 'good' },
        node.renewed_ms_ago === null ? 'live' : `live, renewed ${seconds(node.renewed_ms_ago / 1000)} ago`))
  )
  card.replaceChildren(
    element('h2', {}, `Cluster: ${cluster.nodes.length} ${cluster.nodes.length === 1 ? 'node' : 'nodes'}`),
    definitions([['Redis', cluster.connected ? 'connected' : 'unreachable', cluster.connected ? 'good' : 'bad']]),
    element('table', {},
      element('thead', {}, element('tr', {}, element('th', {}, 'Node'), element('th', {}, 'Connections'),
        element('th', {}, 'Presences'), element('th', {}, 'Lease'))),
      element('tbody', {}, ...rows))
  )
}

function addSample(sample) {
  state.samples.push(sample)
  if (state.samples.length > 300) state.samples.shift()
  drawChart()
}

function chartData() {
  const samples = state.samples
  return [
    samples.map((s) => s.t),
    samples.map((s) => s.messages_in),
    samples.map((s) => s.messages_out),
  ]
}

function drawChart() {
  if (state.tab !== 'overview' || $('overview').hidden) return
  const holder = $('chart')
  const width = Math.max(300, holder.clientWidth)
  if (!state.chart) {
    state.chart = new uPlot(
      {
        width,
        height: 220,
        series: [
          {},
          { label: 'in / s', stroke: '#2563eb', width: 1.5, points: { show: false } },
          { label: 'out / s', stroke: '#16a34a', width: 1.5, points: { show: false } },
        ],
        axes: [{}, { size: 60 }],
      },
      chartData(),
      holder
    )
    return
  }
  if (state.chart.width !== width) state.chart.setSize({ width, height: 220 })
  state.chart.setData(chartData())
}

// ---- channels ------------------------------------------------------------------------

function requestChannels() {
  if (!state.inspector) return
  state.inspector
    .push('channels', { search: $('search').value, limit: 200 })
    .receive('ok', renderChannels)
}

function renderChannels(list) {
  $('channel-count').textContent = `${fmt(list.matched)} of ${fmt(list.total)} topics`
  const rows = list.channels.map((channel) => {
    const name = element('td', {}, channel.name)
    if (channel.private) name.append(element('span', { class: 'tag' }, 'private'))
    const row = element('tr', { 'data-channel': channel.name }, name,
      element('td', {}, fmt(channel.subscribers)), element('td', {}, fmt(channel.presences)),
      element('td', {}, fmt(channel.rate)))
    row.addEventListener('click', () => watch(channel.name, channel.private))
    return row
  })
  $('channel-table').tBodies[0].replaceChildren(...rows)
}

function watch(name, isPrivate) {
  stopWatching()
  const channel = state.socket.channel(`realtime:${name}`, {
    config: { broadcast: { self: false, ack: false }, presence: { key: '', enabled: true }, private: isPrivate },
  })
  const presence = new Presence(channel)
  presence.onSync(() => renderPresence(presence))
  channel.on('broadcast', addTail)
  channel
    .join()
    .receive('ok', () => { $('channel-state').textContent = 'watching' })
    .receive('error', ({ reason }) => { $('channel-state').textContent = `cannot watch: ${reason}` })
  state.watched = { name, isPrivate, channel }
  state.tail = []
  state.held = []
  $('channel').hidden = false
  $('channel-name').textContent = isPrivate ? `${name} (private)` : name
  $('channel-state').textContent = 'joining…'
  $('presence-list').replaceChildren(element('li', { class: 'muted' }, 'nobody'))
  $('tail-json').hidden = true
  renderTail()
}

function stopWatching() {
  state.watched?.channel.leave()
  state.watched = null
  $('channel').hidden = true
}

function renderPresence(presence) {
  const items = presence.list((key, { metas }) =>
    element('li', { 'data-presence': key }, `${key || '(no key)'}  ${JSON.stringify(metas.map(({ phx_ref, ...meta }) => meta))}`)
  )
  $('presence-list').replaceChildren(...(items.length ? items : [element('li', { class: 'muted' }, 'nobody')]))
}

function addTail(message) {
  const entry = { at: new Date(), message }
  if (state.paused) {
    state.held.push(entry)
  } else {
    state.tail.unshift(entry)
    state.tail.length = Math.min(state.tail.length, TAIL_ROWS)
  }
  renderTail()
}

function renderTail() {
  const rows = state.tail.map(({ at, message }) => {
    const payload = JSON.stringify(message.payload) ?? ''
    const row = element('tr', { 'data-event': message.event ?? '' },
      element('td', {}, at.toLocaleTimeString()),
      element('td', {}, message.event ?? ''),
      element('td', {}, message.meta?.offset ?? '–'),
      element('td', {}, bytes(new TextEncoder().encode(payload).length)),
      element('td', { class: 'preview' }, payload.slice(0, 160)))
    row.addEventListener('click', () => {
      const view = $('tail-json')
      view.textContent = JSON.stringify(message, null, 2)
      view.hidden = false
    })
    return row
  })
  $('tail').tBodies[0].replaceChildren(...rows)
  $('tail-count').textContent = state.paused ? `paused, ${state.held.length} held` : `${state.tail.length} shown`
}

function togglePause() {
  state.paused = !state.paused
  $('tail-pause').textContent = state.paused ? 'Resume' : 'Pause'
  if (!state.paused) {
    for (const entry of state.held) state.tail.unshift(entry)
    state.tail.length = Math.min(state.tail.length, TAIL_ROWS)
    state.held = []
  }
  renderTail()
}

async function send(event) {
  event.preventDefault()
  const result = $('send-result')
  if (!state.watched) return
  const text = $('send-payload').value
  let body
  if ($('send-kind').value === 'json') {
    try {
      JSON.parse(text)
    } catch (error) {
      result.textContent = `Not JSON: ${error.message}`
      return
    }
    body = text
  } else {
    body = JSON.stringify(text)
  }
  const { name, isPrivate } = state.watched
  const url = `/api/broadcast/${encodeURIComponent(name)}/events/${encodeURIComponent($('send-event').value)}` +
    (isPrivate ? '?private=true' : '')
  let response
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { apikey: state.key, 'content-type': 'application/json' },
      body,
    })
  } catch (error) {
    result.textContent = `Not sent: ${error.message}`
    return
  }
  if (response.ok) {
    result.textContent = `Sent (${response.status})`
  } else {
    const answer = await response.json().catch(() => ({}))
    result.textContent = `Refused (${response.status}): ${answer.error ?? answer.message ?? ''}`
  }
}

// ---- join as a user ------------------------------------------------------------------

function logLine(text) {
  const log = $('join-log')
  log.prepend(element('li', {}, `${new Date().toLocaleTimeString()}  ${text}`))
  while (log.children.length > TAIL_ROWS) log.lastChild.remove()
}

function joinAsUser(event) {
  event.preventDefault()
  leaveAsUser()
  const token = $('join-token').value.trim()
  const name = $('join-topic').value.trim()
  const isPrivate = $('join-private').checked
  const topic = `realtime:${name}`
  // The socket connects with the inspector's key; the join carries the user's token,
  // which is what every check of the channel then goes by.
  const socket = new Socket(socketUrl(), { params: { apikey: state.key } })
  socket.onMessage(({ topic: from, event: what, payload }) => {
    if (from === topic && what !== 'phx_reply') logLine(`${what}  ${JSON.stringify(payload)}`)
  })
  socket.connect()
  const channel = socket.channel(topic, {
    access_token: token,
    config: { broadcast: { self: false, ack: false }, presence: { key: '', enabled: true }, private: isPrivate },
  })
  channel
    .join()
    .receive('ok', (reply) => {
      $('join-state').textContent = `joined ${name} as this user`
      logLine(`joined  ${JSON.stringify(reply)}`)
    })
    .receive('error', ({ reason }) => {
      $('join-state').textContent = `refused: ${reason}`
      logLine(`join refused  ${reason}`)
      leaveAsUser()
    })
  $('join-state').textContent = 'joining…'
  state.user = { socket, channel }
}

function leaveAsUser() {
  if (!state.user) return
  state.user.channel.leave()
  state.user.socket.disconnect()
  state.user = null
}

// ---- wiring --------------------------------------------------------------------------

$('sign-in-form').addEventListener('submit', (event) => {
  event.preventDefault()
  signIn($('key').value.trim())
})
$('sign-out').addEventListener('click', () => signOut())
for (const button of document.querySelectorAll('nav [data-tab]')) {
  button.addEventListener('click', () => showTab(button.dataset.tab))
}
let searchTimer = null
$('search').addEventListener('input', () => {
  clearTimeout(searchTimer)
  searchTimer = setTimeout(requestChannels, 200)
})
$('channel-close').addEventListener('click', stopWatching)
$('tail-pause').addEventListener('click', togglePause)
$('send-form').addEventListener('submit', send)
$('join-form').addEventListener('submit', joinAsUser)
$('join-leave').addEventListener('click', () => {
  leaveAsUser()
  $('join-state').textContent = 'left'
})
window.addEventListener('resize', () => drawChart())

const saved = sessionStorage.getItem(KEY_STORE)
if (saved) signIn(saved)
else showSignIn()
