// Reads: select with embedding, every filter family, order/range/limit,
// count, single/maybeSingle, csv, explain.
import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { client, member, ok } from '../lib.js'

const globex = member('globex')
const codes = (rows) => rows.map((r) => r.code).sort()

describe('select with embedding', () => {
  test('many-to-one embed (data_points → metrics → units)', async () => {
    const rows = ok(
      await globex
        .from('data_points')
        .select('id,period,value,metrics(code,units(name))')
        .order('id')
        .limit(3),
    )
    assert.equal(rows.length, 3)
    for (const r of rows) {
      assert.deepEqual(Object.keys(r).sort(), ['id', 'metrics', 'period', 'value'])
      assert.equal(typeof r.metrics.code, 'string')
      assert.equal(typeof r.metrics.units.name, 'string')
      assert.match(r.period, /^2025-\d\d-01$/)
    }
  })

  test('one-to-many embed with referencedTable order and limit', async () => {
    const rows = ok(
      await globex
        .from('organisations')
        .select('name,reporting_entities(name)')
        .order('name')
        .order('name', { referencedTable: 'reporting_entities', ascending: false })
        .limit(1, { referencedTable: 'reporting_entities' }),
    )
    assert.deepEqual(rows, [
      { name: 'Globex Energy', reporting_entities: [{ name: 'Globex Energy site 4' }] },
      { name: 'Globex Energy Operations', reporting_entities: [{ name: 'Globex Energy site 3' }] },
    ])
  })

  test('inner embed with a filter on the embedded resource', async () => {
    const { data, count, error } = await globex
      .from('data_points')
      .select('value,metrics!inner(code)', { count: 'exact' })
      .eq('metrics.code', 'scope1')
      .limit(5)
    assert.equal(error, null)
    assert.equal(count, 48)
    assert.equal(data.length, 5)
    assert.ok(data.every((r) => r.metrics.code === 'scope1'))
  })

  test('aliases and casts', async () => {
    const rows = ok(await globex.from('metrics').select('c:code,id::text').eq('code', 'scope1'))
    assert.equal(rows.length, 1)
    assert.equal(rows[0].c, 'scope1')
    assert.equal(typeof rows[0].id, 'string')
  })
})

describe('filters', () => {
  const cases = [
    ['eq', (q) => q.eq('code', 'scope1'), ['scope1']],
    ['neq', (q) => q.neq('code', 'scope1'), ['energy', 'scope2', 'waste', 'water']],
    ['gt', (q) => q.gt('code', 'scope1'), ['scope2', 'waste', 'water']],
    ['gte', (q) => q.gte('code', 'scope1'), ['scope1', 'scope2', 'waste', 'water']],
    ['lt', (q) => q.lt('code', 'scope1'), ['energy']],
    ['lte', (q) => q.lte('code', 'scope1'), ['energy', 'scope1']],
    ['like %', (q) => q.like('code', 'scope%'), ['scope1', 'scope2']],
    ['like *', (q) => q.like('code', 'scope*'), ['scope1', 'scope2']],
    ['ilike', (q) => q.ilike('name', '%EMISSIONS'), ['scope1', 'scope2']],
    ['likeAnyOf', (q) => q.likeAnyOf('code', ['scope%', 'wa%']), ['scope1', 'scope2', 'waste', 'water']],
    ['ilikeAllOf', (q) => q.ilikeAllOf('name', ['%E%', '%2%']), ['scope2']],
    ['in', (q) => q.in('code', ['scope1', 'water', 'nope']), ['scope1', 'water']],
    ['in (quoted values)', (q) => q.in('name', ['Scope 1 emissions', 'a,b', 'x(y)']), ['scope1']],
    ['in (empty)', (q) => q.in('code', []), []],
    ['match (regex via filter)', (q) => q.filter('code', 'match', '^sc'), ['scope1', 'scope2']],
    ['match({...})', (q) => q.match({ code: 'scope1', unit: 'tCO2e' }), ['scope1']],
    ['or', (q) => q.or('code.eq.scope1,code.eq.water'), ['scope1', 'water']],
    ['or with nested and', (q) => q.or('code.eq.energy,and(code.like.scope*,name.ilike.*2*)'), ['energy', 'scope2']],
    ['not like', (q) => q.not('code', 'like', 'scope%'), ['energy', 'waste', 'water']],
    ['not in', (q) => q.not('code', 'in', '(scope1,scope2)'), ['energy', 'waste', 'water']],
    ['not eq + eq (AND)', (q) => q.not('code', 'eq', 'scope1').eq('unit', 'tCO2e'), ['scope2']],
    ['filter()', (q) => q.filter('unit', 'eq', 'MWh'), ['energy']],
  ]
  for (const [name, apply, expected] of cases) {
    test(name, async () => {
      const rows = ok(await apply(globex.from('metrics').select('code')))
      assert.deepEqual(codes(rows), expected)
    })
  }

  test('is null / not is null', async () => {
    const roots = ok(await globex.from('organisations').select('name').is('parent_org_id', null))
    assert.deepEqual(roots, [{ name: 'Globex Energy' }])
    const subs = ok(await globex.from('organisations').select('name').not('parent_org_id', 'is', null))
    assert.deepEqual(subs, [{ name: 'Globex Energy Operations' }])
  })

  test('array contains / containedBy / overlaps', async () => {
    const titles = (rows) => rows.map((r) => r.title).sort()
    assert.deepEqual(
      titles(ok(await globex.from('notes').select('title').contains('tags', ['audit']))),
      ['globex audit'],
    )
    assert.deepEqual(
      titles(ok(await globex.from('notes').select('title').containedBy('tags', ['water', 'energy', 'scope2']))),
      ['globex energy', 'globex water'],
    )
    assert.deepEqual(
      titles(ok(await globex.from('notes').select('title').overlaps('tags', ['water', 'scope1']))),
      ['globex audit', 'globex water'],
    )
  })

  test('jsonb contains / containedBy and -> / ->> paths', async () => {
    const titles = (rows) => rows.map((r) => r.title).sort()
    assert.deepEqual(
      titles(ok(await globex.from('notes').select('title').contains('attrs', { status: 'open' }))),
      ['globex audit', 'globex energy'],
    )
    assert.deepEqual(
      titles(
        ok(await globex.from('notes').select('title').containedBy('attrs', { status: 'closed', priority: 2, x: 1 })),
      ),
      ['globex water'],
    )
    const rows = ok(
      await globex.from('notes').select('title,status:attrs->>status,p:attrs->priority').eq('attrs->>status', 'closed'),
    )
    assert.deepEqual(rows, [{ title: 'globex water', status: 'closed', p: 2 }])
  })

  test('textSearch (plain, phrase, websearch, default)', async () => {
    const titles = async (q) => ok(await q).map((r) => r.title).sort()
    const notes = () => globex.from('notes').select('title')
    assert.deepEqual(await titles(notes().textSearch('fts', 'water')), ['globex water'])
    assert.deepEqual(
      await titles(notes().textSearch('fts', 'cold winter', { type: 'plain', config: 'english' })),
      ['globex energy'],
    )
    assert.deepEqual(
      await titles(notes().textSearch('fts', 'main plant', { type: 'phrase', config: 'english' })),
      ['globex audit'],
    )
    assert.deepEqual(
      await titles(notes().textSearch('fts', 'emissions or towers -cooling', { type: 'websearch', config: 'english' })),
      ['globex audit'],
    )
    assert.deepEqual(await titles(notes().not('fts', 'fts', 'water')), ['globex audit', 'globex energy'])
  })
})

describe('order / range / limit', () => {
  test('order desc + limit', async () => {
    const rows = ok(await globex.from('metrics').select('code').order('code', { ascending: false }).limit(2))
    assert.deepEqual(rows, [{ code: 'water' }, { code: 'waste' }])
  })

  test('range', async () => {
    const rows = ok(await globex.from('metrics').select('code').order('code').range(1, 2))
    assert.deepEqual(rows, [{ code: 'scope1' }, { code: 'scope2' }])
  })

  test('multiple orders and nullsFirst', async () => {
    const rows = ok(
      await globex
        .from('organisations')
        .select('name,parent_org_id')
        .order('parent_org_id', { ascending: false, nullsFirst: true })
        .order('name'),
    )
    assert.equal(rows[0].parent_org_id, null)
    assert.notEqual(rows[1].parent_org_id, null)
    const last = ok(
      await globex.from('organisations').select('name').order('parent_org_id', { nullsFirst: false }),
    )
    assert.equal(last[1].name, 'Globex Energy')
  })

  test('order on an embedded to-one column', async () => {
    const rows = ok(
      await globex
        .from('reporting_entities')
        .select('name,organisations(name)')
        .order('organisations(name)', { ascending: false })
        .order('name'),
    )
    assert.equal(rows.length, 4)
    assert.equal(rows[0].organisations.name, 'Globex Energy Operations')
    assert.equal(rows[3].organisations.name, 'Globex Energy')
  })
})

describe('count', () => {
  test("count: 'exact' with head", async () => {
    const res = await globex.from('data_points').select('*', { count: 'exact', head: true })
    assert.equal(res.error, null)
    assert.equal(res.count, 240)
    assert.equal(res.data, null)
  })

  test("count: 'exact' with a range", async () => {
    const res = await globex.from('metrics').select('code', { count: 'exact' }).order('code').range(0, 1)
    assert.equal(res.error, null)
    assert.equal(res.count, 5)
    assert.equal(res.data.length, 2)
    assert.ok([200, 206].includes(res.status), `status ${res.status}`)
  })

  test("count: 'exact' head with a filter", async () => {
    const res = await globex.from('data_points').select('*', { count: 'exact', head: true }).gt('value', 500)
    assert.equal(res.error, null)
    assert.ok(res.count > 0 && res.count < 240, `count ${res.count}`)
  })

  test("count: 'planned' / 'estimated' return a number", async () => {
    for (const count of ['planned', 'estimated']) {
      const res = await globex.from('metrics').select('code', { count, head: true })
      assert.equal(res.error, null, `${count}: ${JSON.stringify(res.error)}`)
      assert.equal(typeof res.count, 'number', `${count}: ${res.count}`)
    }
  })
})

describe('single / maybeSingle', () => {
  test('single() on one row returns an object', async () => {
    const row = ok(await globex.from('metrics').select('code,unit').eq('code', 'energy').single())
    assert.deepEqual(row, { code: 'energy', unit: 'MWh' })
  })

  test('single() on many rows is PGRST116', async () => {
    const res = await globex.from('metrics').select('code').single()
    assert.equal(res.data, null)
    assert.equal(res.error?.code, 'PGRST116')
    assert.equal(res.status, 406)
  })

  test('single() on zero rows is PGRST116', async () => {
    const res = await globex.from('metrics').select('code').eq('code', 'nope').single()
    assert.equal(res.error?.code, 'PGRST116')
  })

  test('maybeSingle() on zero rows is null without error', async () => {
    const res = await globex.from('metrics').select('code').eq('code', 'nope').maybeSingle()
    assert.equal(res.error, null)
    assert.equal(res.data, null)
  })

  test('maybeSingle() on one row returns it', async () => {
    const row = ok(await globex.from('metrics').select('code').eq('code', 'water').maybeSingle())
    assert.deepEqual(row, { code: 'water' })
  })

  test('maybeSingle() on many rows is an error', async () => {
    const res = await globex.from('metrics').select('code').maybeSingle()
    assert.equal(res.data, null)
    assert.equal(res.error?.code, 'PGRST116')
  })
})

describe('csv', () => {
  test('csv() of a reference table (anonymous)', async () => {
    const text = ok(await client().from('units').select('code,name').order('code').csv())
    assert.equal(typeof text, 'string')
    const lines = text.trim().split('\n')
    assert.equal(lines[0], 'code,name')
    assert.equal(lines.length, 6)
    assert.equal(lines[1], 'MWh,"megawatt hours"')
    // PostgREST's CSV: PostgreSQL's record quoting (a value with a space is quoted)
    assert.ok(lines.includes('tCO2e,"tonnes of CO2 equivalent"'))
  })

  test('csv() of one row with a text value', async () => {
    const text = ok(await globex.from('metrics').select('code').eq('code', 'scope1').csv())
    assert.equal(text.trim(), 'code\nscope1')
  })

  test('csv() keeps the select order of columns', async () => {
    const text = ok(await client().from('units').select('name,code').eq('code', 't').csv())
    assert.equal(text.trim(), 'name,code\ntonnes,t')
  })

  test('csv() renders arrays in PostgreSQL text form, quoted', async () => {
    const text = ok(await globex.from('notes').select('tags').eq('title', 'globex audit').csv())
    assert.equal(text.trim(), 'tags\n"{audit,scope1}"')
  })
})

describe('computed fields and relationships', () => {
  test('a computed field is selected, filtered and ordered like a column', async () => {
    const rows = ok(
      await globex.from('metrics').select('code,label').like('label', 'scope*').order('label', { ascending: false }),
    )
    assert.deepEqual(rows, [
      { code: 'scope2', label: 'scope2: Scope 2 emissions' },
      { code: 'scope1', label: 'scope1: Scope 1 emissions' },
    ])
    const star = ok(await globex.from('metrics').select('*').eq('code', 'water'))
    assert.equal(star[0].label, undefined)
  })

  test('computed relationships embed to-many and to-one (ROWS 1)', async () => {
    const rows = ok(
      await globex
        .from('metrics')
        .select('code,points(period,value),latest:latest_point(period)')
        .eq('code', 'scope1')
        .order('period', { referencedTable: 'points', ascending: false })
        .limit(2, { referencedTable: 'points' }),
    )
    assert.equal(rows.length, 1)
    assert.equal(rows[0].points.length, 2)
    assert.ok(rows[0].points[0].period >= rows[0].points[1].period)
    assert.equal(rows[0].latest.period, rows[0].points[0].period)
  })

  test('insert returns computed fields and relationships of the new row', async () => {
    const row = ok(
      await globex
        .from('metrics')
        .insert({ code: 'js-computed', name: 'From JS', unit: 't' })
        .select('code,label,points(id)')
        .single(),
    )
    assert.deepEqual(row, { code: 'js-computed', label: 'js-computed: From JS', points: [] })
    ok(await globex.from('metrics').delete().eq('label', 'js-computed: From JS'))
  })
})

// run.sh sets PGRST_DB_PLAN_ENABLED=1: PostgREST's numeric boolean
describe('explain (db-plan-enabled)', () => {
  test('the plan names an embedded table <table>_<n>, as PostgREST\'s statement does', async () => {
    const plan = ok(
      await globex.from('metrics').select('code,data_points!inner(value)').eq('code', 'scope1').explain()
    )
    assert.match(plan, /data_points data_points_1/)
  })

  test('explain() gives the text plan of the tenant query', async () => {
    const plan = ok(await globex.from('metrics').select('code').eq('code', 'scope1').explain())
    assert.equal(typeof plan, 'string')
    assert.match(plan, /cost=\d/)
  })

  test('explain({ format: json, analyze }) runs the query and reports its rows', async () => {
    const plan = ok(
      await globex.from('metrics').select('code').eq('code', 'scope1').explain({ format: 'json', analyze: true })
    )
    assert.ok(Array.isArray(plan))
    assert.equal(typeof plan[0].Plan['Node Type'], 'string')
    assert.equal(typeof plan[0]['Execution Time'], 'number')
  })

  test('explain() of an rpc and of a csv read', async () => {
    assert.equal(typeof ok(await globex.rpc('add', { a: 1, b: 2 }).explain()), 'string')
    assert.match(ok(await client().from('units').select('code').csv().explain()), /Scan|Result/)
  })
})
