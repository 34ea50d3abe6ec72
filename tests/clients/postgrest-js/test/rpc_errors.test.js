// rpc() and error reporting.
import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { client, jwt, member, ok } from '../lib.js'

const anon = client()
const globex = member('globex')

describe('rpc', () => {
  test('scalar function via POST (anonymous)', async () => {
    assert.equal(ok(await anon.rpc('add', { a: 1, b: 5 })), 6)
  })

  test('scalar function via GET with a default argument', async () => {
    assert.equal(ok(await anon.rpc('add', { a: 40 }, { get: true })), 42)
  })

  test('function reading a managed table sees the tenant', async () => {
    assert.equal(ok(await globex.rpc('metric_count')), 5)
  })

  test('set-returning function with select/order/limit', async () => {
    const rows = ok(
      await globex.rpc('entities_of', { k: 'office' }).select('name').order('name', { ascending: false }).limit(1),
    )
    assert.deepEqual(rows, [{ name: 'Globex Energy site 4' }])
  })

  test('set-returning function with filters', async () => {
    const rows = ok(await globex.rpc('entities_of', { k: 'office' }).select('name,kind').like('name', '%site 1'))
    assert.deepEqual(rows, [{ name: 'Globex Energy site 1', kind: 'office' }])
  })

  test('rpc with count: exact and head', async () => {
    const res = await globex.rpc('entities_of', { k: 'office' }, { count: 'exact', head: true })
    assert.equal(res.error, null, JSON.stringify(res.error))
    assert.equal(res.count, 2)
  })

  test('volatile function returning a composite, with single()', async () => {
    const row = ok(
      await member('initech').rpc('new_metric', { code: 'js_rpc', name: 'From RPC' }).select('code,name,unit').single(),
    )
    assert.deepEqual(row, { code: 'js_rpc', name: 'From RPC', unit: 't' })
  })

  test('RAISE with an errcode and hint', async () => {
    const res = await anon.rpc('fail', { code: 'P0001' })
    assert.equal(res.status, 400)
    assert.equal(res.error?.code, 'P0001')
    assert.equal(res.error.message, 'failed on purpose')
    assert.equal(res.error.hint, 'a hint')
  })

  test('unknown function is PGRST202 / 404', async () => {
    const res = await anon.rpc('no_such_fn', { x: 1 })
    assert.equal(res.status, 404)
    assert.equal(res.error?.code, 'PGRST202')
  })

  test('PGRST202 in PostgREST words, with a hint to the closest function', async () => {
    const res = await anon.rpc('ad', { a: 1 })
    assert.equal(res.status, 404)
    assert.deepEqual(res.error, {
      code: 'PGRST202',
      details:
        'Searched for the function esg.ad with parameter a or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.',
      hint: 'Perhaps you meant to call the function esg.add',
      message: 'Could not find the function esg.ad(a) in the schema cache',
    })
  })

  test('overloads that fit equally are PGRST203 / 300, listing them', async () => {
    const res = await anon.rpc('pick')
    assert.equal(res.status, 300)
    assert.equal(res.error?.code, 'PGRST203')
    assert.equal(
      res.error?.message,
      'Could not choose the best candidate function between: esg.pick(), esg.pick( => text)',
    )
  })

  test("an unnamed parameter is reached by the key '' and gets the whole body", async () => {
    assert.equal(ok(await anon.rpc('pick', { '': 'x' })), 'got {"":"x"}')
  })
})

describe('errors', () => {
  test('unknown column in select is 42703', async () => {
    const res = await globex.from('metrics').select('nope')
    assert.equal(res.data, null)
    assert.equal(res.status, 400)
    assert.equal(res.error?.code, '42703')
  })

  test('unknown column in a filter is 42703', async () => {
    const res = await globex.from('metrics').select('code').eq('nope', 1)
    assert.equal(res.status, 400)
    assert.equal(res.error?.code, '42703')
  })

  test('unknown column in an insert is PGRST204', async () => {
    const res = await globex.from('metrics').insert({ nope: 1 }).select()
    assert.equal(res.status, 400)
    assert.equal(res.error?.code, 'PGRST204')
  })

  test('unknown table is PGRST205 / 404', async () => {
    const res = await globex.from('no_such_table').select()
    assert.equal(res.status, 404)
    assert.equal(res.error?.code, 'PGRST205')
  })

  test('embedding without a relationship is PGRST200', async () => {
    const res = await globex.from('units').select('code,notes(title)')
    assert.equal(res.status, 400)
    assert.equal(res.error?.code, 'PGRST200')
  })

  test('invalid input syntax is 22P02', async () => {
    const res = await globex.from('metrics').select('code').eq('id', 'abc')
    assert.equal(res.status, 400)
    assert.equal(res.error?.code, '22P02')
  })

  test('malformed filter operator is PGRST100', async () => {
    const res = await globex.from('metrics').select('code').filter('code', 'bogus', 'x')
    assert.equal(res.status, 400)
    assert.equal(res.error?.code, 'PGRST100')
  })

  test('anonymous read of a managed table is 42501 / 401', async () => {
    const res = await anon.from('metrics').select('code')
    assert.equal(res.status, 401)
    assert.equal(res.error?.code, '42501')
  })

  test('JWT with a bad signature is PGRST301 / 401', async () => {
    const bad = client(jwt({ role: 'tenancy_member', tenant_id: 'globex' }, 'another-secret-another-secret-another'))
    const res = await bad.from('units').select()
    assert.equal(res.status, 401)
    assert.equal(res.error?.code, 'PGRST301')
  })

  test('expired JWT is PGRST303 / 401', async () => {
    const expired = client(jwt({ role: 'tenancy_member', tenant_id: 'globex', exp: Math.floor(Date.now() / 1000) - 3600 }))
    const res = await expired.from('units').select()
    assert.equal(res.status, 401)
    assert.equal(res.error?.code, 'PGRST303')
  })

  test('errors carry message/details/hint fields', async () => {
    const res = await globex.from('metrics').select('nope')
    for (const k of ['code', 'message', 'details', 'hint']) assert.ok(k in res.error, `missing ${k}`)
  })

  test('throwOnError() rejects with the PostgREST error', async () => {
    await assert.rejects(
      async () => await globex.from('metrics').select('nope').throwOnError(),
      (e) => e.code === '42703',
    )
  })
})
