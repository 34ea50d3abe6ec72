// The OpenAPI (Swagger 2.0) description at `/`, checked by an independent
// validator (@apidevtools/swagger-parser: the Swagger 2.0 JSON schema plus
// its semantic rules, e.g. unique operation parameters, resolvable $refs),
// the way Swagger UI and code generators consume it. Then every GET path it
// lists is called: a described endpoint must answer, not fail.
import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import SwaggerParser from '@apidevtools/swagger-parser'
import { URL, jwt, memberToken } from '../lib.js'

const now = () => Math.floor(Date.now() / 1000)
const admin = jwt({ role: 'tenancy_admin', tenant_id: 'acme', exp: now() + 600 })

async function describeApi(token, profile) {
  const headers = { Accept: 'application/openapi+json' }
  if (token) headers.Authorization = `Bearer ${token}`
  if (profile) headers['Accept-Profile'] = profile
  const res = await fetch(`${URL}/`, { headers })
  assert.equal(res.status, 200, await res.clone().text())
  assert.match(res.headers.get('content-type'), /^application\/openapi\+json/)
  return res.json()
}

const cases = [
  ['anonymous', undefined, undefined],
  ['a tenant member', memberToken('acme'), undefined],
  ['a tenant admin', admin, undefined],
  ['a tenant admin, the tenancy schema', admin, 'tenancy'],
]

describe('OpenAPI description', () => {
  for (const [who, token, profile] of cases) {
    test(`is valid Swagger 2.0 for ${who}`, async () => {
      const doc = await describeApi(token, profile)
      // validate() mutates its argument (dereferences); keep the original
      const api = await SwaggerParser.validate(structuredClone(doc))
      assert.equal(api.swagger, '2.0')
      assert.ok(Object.keys(api.paths).length > 1, 'at least one path besides /')
    })
  }

  test('describes what the caller may see, and each described read answers', async () => {
    const anonDoc = await describeApi()
    const memberDoc = await describeApi(memberToken('acme'))
    // the member may read tenant-managed tables the anonymous role may not
    assert.ok(!('/notes' in anonDoc.paths), 'anon must not see /notes')
    assert.ok('/notes' in memberDoc.paths, 'member sees /notes')
    assert.ok('/rpc/add' in memberDoc.paths)
    let called = 0
    for (const [path, ops] of Object.entries(memberDoc.paths)) {
      if (path === '/' || !ops.get) continue
      // functions with required arguments would 4xx without them: skip those
      const required = (ops.get.parameters ?? []).some((p) => p.required && p.in === 'query')
      if (required) continue
      const res = await fetch(`${URL}${path}?limit=1`, {
        headers: { Authorization: `Bearer ${memberToken('acme')}` },
      })
      assert.ok(res.status < 400, `${path}: HTTP ${res.status} ${await res.text()}`)
      called++
    }
    assert.ok(called >= 5, `only ${called} described reads called`)
  })

  test('the tenancy schema lists the extension functions an admin may call', async () => {
    const doc = await describeApi(admin, 'tenancy')
    assert.ok('/rpc/current_tenant' in doc.paths, Object.keys(doc.paths).join(' '))
    assert.ok(doc.paths['/rpc/current_tenant'].post, 'functions are POSTable')
  })
})
