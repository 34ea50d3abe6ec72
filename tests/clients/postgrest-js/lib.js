// Shared helpers: the proxy URL and JWT secret come from run.sh's environment.
import { createHmac } from 'node:crypto'
import { PostgrestClient } from '@supabase/postgrest-js'

export const URL = process.env.TENANCY_PROXY_URL
export const SECRET = process.env.TENANCY_JWT_SECRET
if (!URL || !SECRET) {
  throw new Error('TENANCY_PROXY_URL and TENANCY_JWT_SECRET must be set (use run.sh)')
}

const b64url = (buf) => Buffer.from(buf).toString('base64url')

/** An HS256 JWT signed with the proxy's secret. */
export function jwt(claims, secret = SECRET) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))
  const body = b64url(JSON.stringify(claims))
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url')
  return `${head}.${body}.${sig}`
}

const now = () => Math.floor(Date.now() / 1000)

/** A tenancy_member token for a tenant (slug or uuid); no tenant when undefined. */
export function memberToken(tenant) {
  const claims = { role: 'tenancy_member', exp: now() + 600 }
  if (tenant !== undefined) claims.tenant_id = tenant
  return jwt(claims)
}

/** A PostgrestClient; with a token, it is sent as a bearer on every request. */
export function client(token) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {}
  return new PostgrestClient(URL, { headers })
}

/** A client acting as a member of `tenant`. */
export const member = (tenant) => client(memberToken(tenant))

/** Fails with the PostgREST error when a response has one. */
export function ok(res) {
  if (res.error) {
    const e = new Error(`unexpected error (HTTP ${res.status}): ${JSON.stringify(res.error)}`)
    e.response = res
    throw e
  }
  return res.data
}
