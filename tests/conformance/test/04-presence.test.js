// Case 4: presence with realtime-js. Two clients track; both converge on a state with both
// keys, see join events, and the survivor gets a leave when the other goes away.

import { describe, it } from 'node:test'
import assert from 'node:assert/strict'

import { VSNS, subscribeOk, tapOf, uniqueName } from '../lib/clients.js'
import { useServer } from '../lib/suite.js'
import { Recorder } from '../lib/wait.js'

const keysOf = (state) => Object.keys(state).sort()

describe('presence', () => {
  const { server, pool } = useServer()

  /** A client on `name` with presence key `key`, recording sync/join/leave events. */
  async function presenceMember(vsn, name, key) {
    const client = pool.realtime(server, { vsn })
    const events = new Recorder('presence event')
    const channel = client
      .channel(name, { config: { presence: { key } } })
      .on('presence', { event: 'sync' }, () => events.push({ event: 'sync' }))
      .on('presence', { event: 'join' }, events.push)
      .on('presence', { event: 'leave' }, events.push)
    await subscribeOk(channel)
    return { client, channel, events }
  }

  /** Resolves once `member`'s presence state has exactly `keys`. */
  function stateHas(member, keys, what) {
    return member.events.waitUntil(
      () => keysOf(member.channel.presenceState()).join() === [...keys].sort().join(),
      what
    )
  }

  const leaveModes = {
    disconnect: (pool, member) => pool.closeRealtime(member.client),
    removeChannel: async (_pool, member) => {
      assert.equal(await member.client.removeChannel(member.channel), 'ok')
    },
  }

  for (const vsn of VSNS) {
    for (const [mode, leave] of Object.entries(leaveModes)) {
      it(`vsn ${vsn}: track, sync, join, and leave on ${mode}`, async () => {
        const name = uniqueName('presence')
        const alice = await presenceMember(vsn, name, 'alice')
        const bob = await presenceMember(vsn, name, 'bob')

        assert.equal(await alice.channel.track({ name: 'Alice', online_at: 1 }), 'ok')
        assert.equal(await bob.channel.track({ name: 'Bob', online_at: 2 }), 'ok')

        await stateHas(alice, ['alice', 'bob'], 'alice to see both keys')
        await stateHas(bob, ['alice', 'bob'], 'bob to see both keys')

        for (const member of [alice, bob]) {
          const state = member.channel.presenceState()
          assert.equal(state.alice.length, 1)
          assert.equal(state.alice[0].name, 'Alice')
          assert.equal(state.alice[0].online_at, 1)
          assert.equal(typeof state.alice[0].presence_ref, 'string')
          assert.equal(state.bob.length, 1)
          assert.equal(state.bob[0].name, 'Bob')
        }

        const bobJoinSeenByAlice = alice.events.items.find((e) => e.event === 'join' && e.key === 'bob')
        assert.ok(bobJoinSeenByAlice, `alice saw no join for bob: ${alice.events.describe()}`)
        assert.equal(bobJoinSeenByAlice.newPresences.length, 1)
        assert.equal(bobJoinSeenByAlice.newPresences[0].name, 'Bob')
        assert.ok(
          bob.events.items.some((e) => e.event === 'join' && e.key === 'alice'),
          `bob saw no join for alice: ${bob.events.describe()}`
        )
        assert.ok(
          alice.events.items.some((e) => e.event === 'join' && e.key === 'alice'),
          'the tracker gets its own join too'
        )

        // The server sent presence_state before any presence_diff on each socket.
        for (const member of [alice, bob]) {
          const presenceFrames = tapOf(member.client)
            .frames.items.filter((f) => f.topic === `realtime:${name}` && f.event.startsWith('presence_'))
            .map((f) => f.event)
          assert.equal(presenceFrames[0], 'presence_state', JSON.stringify(presenceFrames))
          assert.ok(presenceFrames.includes('presence_diff'), JSON.stringify(presenceFrames))
        }

        await leave(pool, bob)

        const left = await alice.events.waitFor(
          (e) => e.event === 'leave' && e.key === 'bob',
          'a leave event for bob at alice'
        )
        assert.equal(left.leftPresences.length, 1)
        assert.equal(left.leftPresences[0].name, 'Bob')
        await stateHas(alice, ['alice'], 'alice to see only herself')
        assert.ok(
          !alice.events.items.some((e) => e.event === 'leave' && e.key === 'alice'),
          'alice never left'
        )
      })
    }
  }

  it('vsn 2.0.0: a late joiner gets the existing presences in its initial state', async () => {
    const name = uniqueName('presence-late')
    const first = await presenceMember('2.0.0', name, 'first')
    assert.equal(await first.channel.track({ n: 1 }), 'ok')
    await stateHas(first, ['first'], 'first to see itself')

    const late = await presenceMember('2.0.0', name, 'late')
    await stateHas(late, ['first'], 'the late joiner to see the existing presence')
    const state = tapOf(late.client).frames.items.find(
      (f) => f.topic === `realtime:${name}` && f.event === 'presence_state'
    )
    assert.deepEqual(Object.keys(state.payload), ['first'])
    assert.equal(state.payload.first.metas.length, 1)
    assert.equal(state.payload.first.metas[0].n, 1)
    assert.equal(typeof state.payload.first.metas[0].phx_ref, 'string')
  })
})
