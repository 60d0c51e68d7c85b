// HS256 JWTs signed with node:crypto, so tests can mint valid, short-lived and expired tokens.

import { createHmac } from 'node:crypto'

const b64url = (value) => Buffer.from(value).toString('base64url')

/** Signs `claims` with HS256 and returns the compact JWT. */
export function signJwt(secret, claims) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))
  const body = b64url(JSON.stringify(claims))
  const signature = createHmac('sha256', secret).update(`${header}.${body}`).digest('base64url')
  return `${header}.${body}.${signature}`
}

/**
 * A token with `role` and `exp` (unix seconds). `ttl` is in seconds from now and may be
 * negative for an already expired token; `exp` overrides it.
 */
export function mintToken(secret, { role = 'anon', ttl = 3600, exp, ...claims } = {}) {
  const now = Math.floor(Date.now() / 1000)
  return signJwt(secret, { role, iat: now, exp: exp ?? now + ttl, ...claims })
}

/** The `exp` claim of a JWT, in unix seconds (no verification). */
export function expOf(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')).exp
}
