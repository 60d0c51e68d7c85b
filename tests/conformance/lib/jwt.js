// HS256 JWTs signed with node:crypto, so tests can mint valid, short-lived and expired tokens.

import { createHmac, createPrivateKey, sign } from 'node:crypto'

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

/**
 * Signs `claims` with the private JWK `jwk` (RSA → RS256, EC P-256 → ES256): what a
 * Supabase project with asymmetric keys hands its users. The header names the key's kid.
 */
export function signWithJwk(jwk, claims) {
  const alg = jwk.kty === 'RSA' ? 'RS256' : jwk.crv === 'P-256' ? 'ES256' : null
  if (!alg) throw new Error(`no test signer for ${jwk.kty} ${jwk.crv}`)
  const header = b64url(JSON.stringify({ alg, typ: 'JWT', kid: jwk.kid }))
  const body = b64url(JSON.stringify(claims))
  const key = createPrivateKey({ key: jwk, format: 'jwk' })
  // JWS wants ECDSA signatures as r || s, not DER.
  const options = alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key
  const signature = sign('sha256', Buffer.from(`${header}.${body}`), options).toString('base64url')
  return `${header}.${body}.${signature}`
}
