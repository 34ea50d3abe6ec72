// @supabase/supabase-js pointed straight at the proxy: createClient(url, key)
// puts the API under /rest/v1 (Supabase's gateway strips it; so does the
// proxy) and sends the key as `apikey` and as the bearer token.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createClient } from '@supabase/supabase-js'
import ws from 'ws'
import { URL, jwt, memberToken, ok } from '../lib.js'

const options = {
  db: { schema: 'esg' },
  auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  // Node 20 has no WebSocket of its own; realtime is not used here
  realtime: { transport: ws },
}
const supabase = (key) => createClient(URL, key, options)
const globex = supabase(memberToken('globex'))
const initech = supabase(memberToken('initech'))

test('from().select() under /rest/v1 runs in the token\'s tenant', async () => {
  const names = async (c) => ok(await c.from('organisations').select('name').order('name')).map((r) => r.name)
  assert.deepEqual(await names(globex), ['Globex Energy', 'Globex Energy Operations'])
  assert.deepEqual(await names(initech), ['Initech Software', 'Initech Software Operations'])
})

test('embedding, filters, count and single through supabase-js', async () => {
  const res = await globex
    .from('reporting_entities')
    .select('name,organisations!inner(name)', { count: 'exact' })
    .eq('organisations.name', 'Globex Energy Operations')
    .order('name')
  assert.equal(res.error, null, JSON.stringify(res.error))
  assert.ok(res.data.length > 0)
  assert.equal(res.count, res.data.length)
  assert.ok(res.data.every((r) => r.organisations.name === 'Globex Energy Operations'))
  const one = ok(await globex.from('metrics').select('code').order('code').limit(1).single())
  assert.equal(typeof one.code, 'string')
})

test('rpc() under /rest/v1', async () => {
  assert.equal(ok(await globex.rpc('metric_count')), 5)
  assert.equal(ok(await globex.rpc('add', { a: 2, b: 3 })), 5)
})

test('insert, update and delete with returning under /rest/v1', async () => {
  const row = ok(
    await initech.from('notes').insert({ title: 'supabase-js note', body: 'via /rest/v1' }).select('id,title').single(),
  )
  assert.equal(row.title, 'supabase-js note')
  const upd = ok(await initech.from('notes').update({ body: 'changed' }).eq('id', row.id).select('body'))
  assert.deepEqual(upd, [{ body: 'changed' }])
  // another tenant cannot see or delete it
  const seen = ok(await globex.from('notes').select('id').eq('id', row.id))
  assert.deepEqual(seen, [])
  const del = await globex.from('notes').delete().eq('id', row.id).select('id')
  assert.deepEqual(del.data, [])
  const gone = ok(await initech.from('notes').delete().eq('id', row.id).select('id'))
  assert.deepEqual(gone, [{ id: row.id }])
})

test('errors keep PostgREST\'s shape under /rest/v1', async () => {
  const res = await globex.from('no_such_table').select()
  assert.equal(res.status, 404)
  assert.equal(res.error.code, 'PGRST205')
  // the default schema of supabase-js is `public`, which is not exposed here
  const pub = await createClient(URL, memberToken('globex'), { auth: options.auth, realtime: options.realtime }).from('metrics').select()
  assert.equal(pub.status, 406)
  assert.equal(pub.error.code, 'PGRST106')
})

test('a token signed with another secret is refused, whatever the apikey', async () => {
  const forged = jwt({ role: 'tenancy_member', tenant_id: 'globex' }, 'another-secret-of-thirty-two-chars!!')
  const res = await supabase(forged).from('organisations').select('name')
  assert.equal(res.status, 401)
  assert.equal(res.error.code, 'PGRST301')
})
