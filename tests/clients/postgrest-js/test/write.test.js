// Writes with returning: insert / upsert / update / delete, as tenant initech.
// Runs sequentially (node:test runs a file's tests in order).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { member, ok } from '../lib.js'

const initech = member('initech')

test('insert one with select() returning an embed', async () => {
  const res = await initech
    .from('metrics')
    .insert({ code: 'js_co2', name: 'CO2', unit: 't' })
    .select('code,name,units(name)')
  assert.equal(res.error, null, JSON.stringify(res.error))
  assert.equal(res.status, 201)
  assert.deepEqual(res.data, [{ code: 'js_co2', name: 'CO2', units: { name: 'tonnes' } }])
})

test('insert without select() returns no body', async () => {
  const res = await initech.from('metrics').insert({ code: 'js_min', name: 'Minimal', unit: 't' })
  assert.equal(res.error, null, JSON.stringify(res.error))
  assert.equal(res.status, 201)
  assert.equal(res.data, null)
})

test('bulk insert with select().single() on one row / order on many', async () => {
  const one = ok(
    await initech.from('metrics').insert([{ code: 'js_one', name: 'One', unit: 'm3' }]).select('code,unit').single(),
  )
  assert.deepEqual(one, { code: 'js_one', unit: 'm3' })
  const many = ok(
    await initech
      .from('metrics')
      .insert([
        { code: 'js_b1', name: 'B1', unit: 't' },
        { code: 'js_b2', name: 'B2', unit: 'MWh' },
      ])
      .select('code,unit'),
  )
  assert.deepEqual(
    many.sort((a, b) => a.code.localeCompare(b.code)),
    [
      { code: 'js_b1', unit: 't' },
      { code: 'js_b2', unit: 'MWh' },
    ],
  )
})

test('bulk insert with differing keys and defaultToNull: false (missing=default)', async () => {
  const org = ok(await initech.from('organisations').select('id').is('parent_org_id', null).single()).id
  const rows = ok(
    await initech
      .from('reporting_entities')
      .insert(
        [
          { name: 'JS site A', organisation_id: org },
          { name: 'JS site B', organisation_id: org, kind: 'office' },
        ],
        { defaultToNull: false },
      )
      .select('name,kind,organisations(name)'),
  )
  assert.deepEqual(
    rows.sort((a, b) => a.name.localeCompare(b.name)),
    [
      { name: 'JS site A', kind: 'site', organisations: { name: 'Initech Software' } },
      { name: 'JS site B', kind: 'office', organisations: { name: 'Initech Software' } },
    ],
  )
})

test('insert with count: exact', async () => {
  const res = await initech
    .from('metrics')
    .insert([{ code: 'js_c1', name: 'C1', unit: 't' }, { code: 'js_c2', name: 'C2', unit: 't' }], { count: 'exact' })
    .select('code')
  assert.equal(res.error, null, JSON.stringify(res.error))
  assert.equal(res.count, 2)
  assert.equal(res.data.length, 2)
})

test('unique violation is 23505 / 409', async () => {
  const res = await initech.from('metrics').insert({ code: 'js_co2', name: 'again', unit: 't' }).select()
  assert.equal(res.data, null)
  assert.equal(res.status, 409)
  assert.equal(res.error?.code, '23505')
  assert.match(res.error.message, /duplicate key/)
})

test('foreign key violation is 23503 / 409', async () => {
  const res = await initech
    .from('reporting_entities')
    .insert({ name: 'orphan', organisation_id: 999999999 })
    .select()
  assert.equal(res.status, 409)
  assert.equal(res.error?.code, '23503')
})

test('upsert merge-duplicates with onConflict', async () => {
  const res = await initech
    .from('metrics')
    .upsert({ code: 'js_co2', name: 'CO2 merged', unit: 't' }, { onConflict: 'tenant_id,code' })
    .select('code,name')
  const rows = ok(res)
  assert.deepEqual(rows, [{ code: 'js_co2', name: 'CO2 merged' }])
  // the row existed: merged, nothing inserted, 200 (PostgREST v12)
  assert.equal(res.status, 200)
  const again = ok(await initech.from('metrics').select('name').eq('code', 'js_co2').single())
  assert.equal(again.name, 'CO2 merged')
})

test('upsert bulk: one new, one existing', async () => {
  const res = await initech
    .from('metrics')
    .upsert(
      [
        { code: 'js_co2', name: 'CO2 v3', unit: 't' },
        { code: 'js_new', name: 'New', unit: 'pct' },
      ],
      { onConflict: 'tenant_id,code' },
    )
    .select('code,name')
  const rows = ok(res)
  // one row inserted: 201
  assert.equal(res.status, 201)
  assert.deepEqual(
    rows.sort((a, b) => a.code.localeCompare(b.code)),
    [
      { code: 'js_co2', name: 'CO2 v3' },
      { code: 'js_new', name: 'New' },
    ],
  )
})

test('upsert ignoreDuplicates returns nothing for an existing row', async () => {
  const rows = ok(
    await initech
      .from('metrics')
      .upsert({ code: 'js_co2', name: 'ignored', unit: 't' }, { onConflict: 'tenant_id,code', ignoreDuplicates: true })
      .select('code,name'),
  )
  assert.deepEqual(rows, [])
  const row = ok(await initech.from('metrics').select('name').eq('code', 'js_co2').single())
  assert.equal(row.name, 'CO2 v3')
})

test('update with filters and select()', async () => {
  const res = await initech
    .from('metrics')
    .update({ name: 'patched' })
    .in('code', ['js_b1', 'js_b2'])
    .select('code,name')
  assert.equal(res.error, null, JSON.stringify(res.error))
  assert.equal(res.status, 200)
  assert.deepEqual(
    res.data.sort((a, b) => a.code.localeCompare(b.code)),
    [
      { code: 'js_b1', name: 'patched' },
      { code: 'js_b2', name: 'patched' },
    ],
  )
})

test('update matching nothing returns []', async () => {
  const rows = ok(await initech.from('metrics').update({ name: 'x' }).eq('code', 'nope').select())
  assert.deepEqual(rows, [])
})

test('update().single() on two rows is PGRST116 and changes nothing', async () => {
  const res = await initech
    .from('metrics')
    .update({ name: 'never' })
    .in('code', ['js_b1', 'js_b2'])
    .select('code')
    .single()
  assert.equal(res.error?.code, 'PGRST116')
  const rows = ok(await initech.from('metrics').select('code').eq('name', 'never'))
  assert.deepEqual(rows, [])
})

test('update with count: exact', async () => {
  const res = await initech.from('metrics').update({ name: 'Minimal' }, { count: 'exact' }).eq('code', 'js_min')
  assert.equal(res.error, null, JSON.stringify(res.error))
  assert.equal(res.count, 1)
})

test('update without select() returns 204 and no body', async () => {
  const res = await initech.from('metrics').update({ name: 'quiet' }).eq('code', 'js_min')
  assert.equal(res.error, null, JSON.stringify(res.error))
  assert.equal(res.status, 204)
  assert.equal(res.data, null)
})

test('delete with select() returns the deleted rows', async () => {
  const rows = ok(await initech.from('metrics').delete().eq('code', 'js_b2').select('code,name'))
  assert.deepEqual(rows, [{ code: 'js_b2', name: 'patched' }])
  const left = ok(await initech.from('metrics').select('code').like('code', 'js_b%'))
  assert.deepEqual(left, [{ code: 'js_b1' }])
})

test('delete without select() returns 204', async () => {
  const res = await initech.from('metrics').delete().eq('code', 'js_b1')
  assert.equal(res.error, null, JSON.stringify(res.error))
  assert.equal(res.status, 204)
  const left = ok(await initech.from('metrics').select('code').like('code', 'js_b%'))
  assert.deepEqual(left, [])
})

test('delete with count: exact', async () => {
  const res = await initech.from('metrics').delete({ count: 'exact' }).in('code', ['js_c1', 'js_c2'])
  assert.equal(res.error, null, JSON.stringify(res.error))
  assert.equal(res.count, 2)
})
