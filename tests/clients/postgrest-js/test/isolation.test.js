// Tenant isolation through the client: two tenants' tokens see disjoint rows.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { member, ok } from '../lib.js'

const ids = (rows) => new Set(rows.map((r) => JSON.stringify(r)))
const tenantsOf = (rows) => [...new Set(rows.map((r) => r.tenant_id))]

for (const table of ['metrics', 'organisations', 'reporting_entities', 'notes']) {
  test(`${table}: globex and initech see disjoint rows`, async () => {
    const sel = 'id,tenant_id'
    const g = ok(await member('globex').from(table).select(sel))
    const other = table === 'notes' ? 'acme' : 'initech'
    const i = ok(await member(other).from(table).select(sel))
    assert.ok(g.length > 0 && i.length > 0)
    assert.equal(tenantsOf(g).length, 1)
    assert.equal(tenantsOf(i).length, 1)
    assert.notEqual(tenantsOf(g)[0], tenantsOf(i)[0])
    const gi = ids(g)
    assert.ok(i.every((r) => !gi.has(JSON.stringify(r))))
  })
}

test('same query, two tenants, same shape, different data', async () => {
  const q = (t) => member(t).from('data_points').select('*', { count: 'exact', head: true })
  const [g, i] = await Promise.all([q('globex'), q('initech')])
  assert.equal(g.count, 240)
  assert.equal(i.count, 240)
  const names = async (t) => ok(await member(t).from('organisations').select('name').order('name')).map((r) => r.name)
  assert.deepEqual(await names('globex'), ['Globex Energy', 'Globex Energy Operations'])
  assert.deepEqual(await names('initech'), ['Initech Software', 'Initech Software Operations'])
})

test('a parent tenant sees its subsidiary (hierarchical), not vice versa', async () => {
  const acme = ok(await member('acme').from('organisations').select('name'))
  const eu = ok(await member('acme-europe').from('organisations').select('name'))
  assert.equal(acme.length, 4)
  assert.equal(eu.length, 2)
  assert.ok(eu.every((r) => r.name.startsWith('Acme Europe')))
})

test('a token without tenant sees no managed rows', async () => {
  const rows = ok(await member(undefined).from('metrics').select('id'))
  assert.deepEqual(rows, [])
})

test('filtering on another tenant\'s id returns nothing; writes cannot cross', async () => {
  const gTenant = ok(await member('globex').from('metrics').select('tenant_id').limit(1).single()).tenant_id
  const seen = ok(await member('initech').from('metrics').select('id').eq('tenant_id', gTenant))
  assert.deepEqual(seen, [])
  const upd = ok(
    await member('initech').from('metrics').update({ name: 'hijacked' }).eq('tenant_id', gTenant).select(),
  )
  assert.deepEqual(upd, [])
  const del = ok(await member('initech').from('notes').delete().eq('tenant_id', gTenant).select())
  assert.deepEqual(del, [])
  const after = ok(await member('globex').from('metrics').select('id').eq('name', 'hijacked'))
  assert.deepEqual(after, [])
})

test('interleaved concurrent requests stay in their tenant', async () => {
  const jobs = []
  for (let k = 0; k < 20; k++) {
    const t = k % 2 ? 'globex' : 'initech'
    jobs.push(
      member(t)
        .from('organisations')
        .select('name')
        .then((r) => ({ t, names: ok(r).map((x) => x.name) })),
    )
  }
  for (const { t, names } of await Promise.all(jobs)) {
    const prefix = t === 'globex' ? 'Globex' : 'Initech'
    assert.ok(names.length === 2 && names.every((n) => n.startsWith(prefix)), `${t}: ${names}`)
  }
})
