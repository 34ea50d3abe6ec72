"""Reads: select with embedding, every filter family, order/limit/offset/range,
count, single / maybe_single, csv. All as a member of tenant globex unless
noted; the demo data gives every tenant the same shape (5 metrics, 2
organisations, 4 reporting entities, 240 data points)."""

import re

import pytest
from lib import SCHEMA, URL, client, codes, member_token, titles
from postgrest import APIError, CountMethod, SyncPostgrestClient

# ---------------------------------------------------------------- embedding


def test_to_one_embed_nested(globex):
    res = (
        globex.from_("data_points")
        .select("id,period,value,metrics(code,units(name))")
        .order("id")
        .limit(3)
        .execute()
    )
    assert len(res.data) == 3
    for row in res.data:
        assert sorted(row) == ["id", "metrics", "period", "value"]
        assert row["metrics"]["code"] in {"scope1", "scope2", "energy", "water", "waste"}
        assert isinstance(row["metrics"]["units"]["name"], str)
        assert re.fullmatch(r"2025-\d\d-01", row["period"])
        assert isinstance(row["value"], (int, float))
    ids = [r["id"] for r in res.data]
    assert ids == sorted(ids)


def test_to_one_embed_values(globex):
    rows = (
        globex.from_("metrics")
        .select("code,units(code,name)")
        .in_("code", ["energy", "water"])
        .order("code")
        .execute()
        .data
    )
    assert rows == [
        {"code": "energy", "units": {"code": "MWh", "name": "megawatt hours"}},
        {"code": "water", "units": {"code": "m3", "name": "cubic metres"}},
    ]


def test_to_many_embed_with_foreign_order_and_limit(globex):
    rows = (
        globex.from_("organisations")
        .select("name,reporting_entities(name,kind)")
        .order("name")
        .order("name", desc=True, foreign_table="reporting_entities")
        .execute()
        .data
    )
    assert rows == [
        {
            "name": "Globex Energy",
            "reporting_entities": [
                {"name": "Globex Energy site 4", "kind": "office"},
                {"name": "Globex Energy site 2", "kind": "warehouse"},
            ],
        },
        {
            "name": "Globex Energy Operations",
            "reporting_entities": [
                {"name": "Globex Energy site 3", "kind": "plant"},
                {"name": "Globex Energy site 1", "kind": "office"},
            ],
        },
    ]
    limited = (
        globex.from_("organisations")
        .select("name,reporting_entities(name)")
        .order("name")
        .order("name", desc=True, foreign_table="reporting_entities")
        .limit(1, foreign_table="reporting_entities")
        .execute()
        .data
    )
    assert limited == [
        {"name": "Globex Energy", "reporting_entities": [{"name": "Globex Energy site 4"}]},
        {"name": "Globex Energy Operations", "reporting_entities": [{"name": "Globex Energy site 3"}]},
    ]


def test_to_many_embed_range_on_foreign_table(globex):
    rows = (
        globex.from_("organisations")
        .select("name,reporting_entities(name)")
        .order("name")
        .order("name", foreign_table="reporting_entities")
        .range(1, 1, foreign_table="reporting_entities")
        .execute()
        .data
    )
    assert rows == [
        {"name": "Globex Energy", "reporting_entities": [{"name": "Globex Energy site 4"}]},
        {"name": "Globex Energy Operations", "reporting_entities": [{"name": "Globex Energy site 3"}]},
    ]


def test_nested_to_many_to_many_to_one(globex):
    """organisations → reporting_entities → data_points → metrics, with
    filters, order and limit at each nested level."""
    rows = (
        globex.from_("organisations")
        .select("name,reporting_entities(name,data_points(period,metrics!inner(code)))")
        .eq("name", "Globex Energy")
        .eq("reporting_entities.name", "Globex Energy site 2")
        .eq("reporting_entities.data_points.metrics.code", "energy")
        .order("period", desc=True, foreign_table="reporting_entities.data_points")
        .limit(2, foreign_table="reporting_entities.data_points")
        .execute()
        .data
    )
    assert rows == [
        {
            "name": "Globex Energy",
            "reporting_entities": [
                {
                    "name": "Globex Energy site 2",
                    "data_points": [
                        {"period": "2025-12-01", "metrics": {"code": "energy"}},
                        {"period": "2025-11-01", "metrics": {"code": "energy"}},
                    ],
                }
            ],
        }
    ]


def test_inner_embed_filters_parent_rows(globex):
    res = (
        globex.from_("data_points")
        .select("value,metrics!inner(code)", count=CountMethod.exact)
        .eq("metrics.code", "scope1")
        .limit(5)
        .execute()
    )
    assert res.count == 48
    assert len(res.data) == 5
    assert all(r["metrics"] == {"code": "scope1"} for r in res.data)


def test_inner_embed_on_to_many(globex):
    """Only organisations that have a warehouse survive !inner."""
    rows = (
        globex.from_("organisations")
        .select("name,reporting_entities!inner(name)")
        .eq("reporting_entities.kind", "warehouse")
        .execute()
        .data
    )
    assert rows == [{"name": "Globex Energy", "reporting_entities": [{"name": "Globex Energy site 2"}]}]


def test_embed_without_inner_keeps_parents(globex):
    rows = (
        globex.from_("organisations")
        .select("name,reporting_entities(name)")
        .eq("reporting_entities.kind", "warehouse")
        .order("name")
        .execute()
        .data
    )
    assert rows == [
        {"name": "Globex Energy", "reporting_entities": [{"name": "Globex Energy site 2"}]},
        {"name": "Globex Energy Operations", "reporting_entities": []},
    ]


def test_null_filter_on_embed_not_is_null(globex):
    rows = (
        globex.from_("organisations")
        .select("name,reporting_entities(name)")
        .eq("reporting_entities.kind", "warehouse")
        .not_.is_("reporting_entities", None)
        .execute()
        .data
    )
    assert rows == [{"name": "Globex Energy", "reporting_entities": [{"name": "Globex Energy site 2"}]}]


def test_null_filter_on_embed_is_null_anti_join(globex):
    rows = (
        globex.from_("organisations")
        .select("name,reporting_entities(name)")
        .eq("reporting_entities.kind", "warehouse")
        .is_("reporting_entities", None)
        .execute()
        .data
    )
    assert rows == [{"name": "Globex Energy Operations", "reporting_entities": []}]


def test_embed_disambiguated_by_foreign_key_name_and_left_hint(globex):
    rows = (
        globex.from_("reporting_entities")
        .select("name,org:organisations!reporting_entities_tenant_id_organisation_id_fkey(name),o2:organisations!left(country)")
        .eq("name", "Globex Energy site 2")
        .execute()
        .data
    )
    assert rows == [{"name": "Globex Energy site 2", "org": {"name": "Globex Energy"}, "o2": {"country": "US"}}]


def test_select_star_with_embed_star(globex):
    rows = globex.from_("metrics").select("*,units(*)").eq("code", "water").execute().data
    assert len(rows) == 1
    assert sorted(rows[0]) == ["code", "id", "name", "tenant_id", "unit", "units"]
    assert rows[0]["units"] == {"code": "m3", "name": "cubic metres"}


def test_json_path_cast_and_order(globex):
    rows = globex.from_("notes").select("title,p:attrs->>priority::int").order("attrs->priority", desc=True).execute().data
    assert rows == [
        {"title": "globex energy", "p": 3},
        {"title": "globex water", "p": 2},
        {"title": "globex audit", "p": 1},
    ]


def test_aliases_and_casts(globex):
    rows = globex.from_("metrics").select("c:code", "id::text", "label:name").eq("code", "scope1").execute().data
    assert len(rows) == 1
    assert rows[0]["c"] == "scope1"
    assert rows[0]["label"] == "Scope 1 emissions"
    assert isinstance(rows[0]["id"], str) and rows[0]["id"].isdigit()


def test_embed_alias(globex):
    rows = (
        globex.from_("reporting_entities")
        .select("site:name,org:organisations(n:name)")
        .eq("name", "Globex Energy site 1")
        .execute()
        .data
    )
    assert rows == [{"site": "Globex Energy site 1", "org": {"n": "Globex Energy Operations"}}]


def test_spread_to_one_embed(globex):
    rows = (
        globex.from_("metrics")
        .select("code,...units(unit_name:name)")
        .eq("code", "water")
        .execute()
        .data
    )
    assert rows == [{"code": "water", "unit_name": "cubic metres"}]


def test_select_whitespace_is_stripped(globex):
    rows = globex.from_("metrics").select("code, unit").eq("code", "waste").execute().data
    assert rows == [{"code": "waste", "unit": "t"}]


# ---------------------------------------------------------------- filters

FILTER_CASES = [
    ("eq", lambda q: q.eq("code", "scope1"), ["scope1"]),
    ("neq", lambda q: q.neq("code", "scope1"), ["energy", "scope2", "waste", "water"]),
    ("gt", lambda q: q.gt("code", "scope1"), ["scope2", "waste", "water"]),
    ("gte", lambda q: q.gte("code", "scope1"), ["scope1", "scope2", "waste", "water"]),
    ("lt", lambda q: q.lt("code", "scope1"), ["energy"]),
    ("lte", lambda q: q.lte("code", "scope1"), ["energy", "scope1"]),
    ("like %", lambda q: q.like("code", "scope%"), ["scope1", "scope2"]),
    ("like *", lambda q: q.like("code", "scope*"), ["scope1", "scope2"]),
    ("ilike", lambda q: q.ilike("name", "%EMISSIONS"), ["scope1", "scope2"]),
    ("like_any_of", lambda q: q.like_any_of("code", "scope%,wa%"), ["scope1", "scope2", "waste", "water"]),
    ("like_all_of", lambda q: q.like_all_of("code", "s%,%2"), ["scope2"]),
    ("ilike_any_of", lambda q: q.ilike_any_of("name", "%WATER%,%WASTE%"), ["waste", "water"]),
    ("ilike_all_of", lambda q: q.ilike_all_of("name", "%E%,%2%"), ["scope2"]),
    ("in_", lambda q: q.in_("code", ["scope1", "water", "nope"]), ["scope1", "water"]),
    ("in_ quoted values", lambda q: q.in_("name", ["Scope 1 emissions", "a,b", "x(y)", 'q"t']), ["scope1"]),
    ("in_ empty", lambda q: q.in_("code", []), []),
    ("match()", lambda q: q.match({"code": "scope1", "unit": "tCO2e"}), ["scope1"]),
    ("filter match (regex)", lambda q: q.filter("code", "match", "^sc"), ["scope1", "scope2"]),
    ("filter imatch", lambda q: q.filter("code", "imatch", "^W"), ["waste", "water"]),
    ("filter eq", lambda q: q.filter("unit", "eq", "MWh"), ["energy"]),
    ("filter in", lambda q: q.filter("code", "in", "(energy,waste)"), ["energy", "waste"]),
    ("or_", lambda q: q.or_("code.eq.scope1,code.eq.water"), ["scope1", "water"]),
    (
        "or_ with nested and",
        lambda q: q.or_("code.eq.energy,and(code.like.scope*,name.ilike.*2*)"),
        ["energy", "scope2"],
    ),
    ("or_ with not", lambda q: q.or_("code.eq.energy,unit.not.in.(tCO2e,MWh,m3)"), ["energy", "waste"]),
    ("two or_ are ANDed", lambda q: q.or_("code.eq.scope1,code.eq.scope2").or_("code.eq.scope2,code.eq.water"), ["scope2"]),
    ("not_ like", lambda q: q.not_.like("code", "scope%"), ["energy", "waste", "water"]),
    ("not_ in_", lambda q: q.not_.in_("code", ["scope1", "scope2"]), ["energy", "waste", "water"]),
    ("not_ eq + eq (AND)", lambda q: q.not_.eq("code", "scope1").eq("unit", "tCO2e"), ["scope2"]),
    ("not_ or_", lambda q: q.not_.or_("unit.eq.tCO2e,unit.eq.MWh"), ["waste", "water"]),
    ("filter not.eq", lambda q: q.filter("unit", "not.eq", "tCO2e"), ["energy", "waste", "water"]),
]


@pytest.mark.parametrize("apply,expected", [c[1:] for c in FILTER_CASES], ids=[c[0] for c in FILTER_CASES])
def test_filter(globex, apply, expected):
    rows = apply(globex.from_("metrics").select("code")).execute().data
    assert codes(rows) == expected


def test_numeric_comparisons(globex):
    """gt/lte on a numeric column with Python numbers, checked against the
    rows themselves."""
    all_rows = globex.from_("data_points").select("value").execute().data
    assert len(all_rows) == 240
    above = globex.from_("data_points").select("value").gt("value", 500).execute().data
    upto = globex.from_("data_points").select("value").lte("value", 500.0).execute().data
    assert len(above) + len(upto) == 240
    assert all(r["value"] > 500 for r in above)
    assert all(r["value"] <= 500 for r in upto)
    assert len(above) == sum(1 for r in all_rows if r["value"] > 500)


def test_date_filters(globex):
    rows = (
        globex.from_("data_points")
        .select("period")
        .gte("period", "2025-11-01")
        .lt("period", "2025-12-01")
        .execute()
        .data
    )
    assert len(rows) == 20
    assert {r["period"] for r in rows} == {"2025-11-01"}


def test_is_null_and_not_is_null(globex):
    roots = globex.from_("organisations").select("name").is_("parent_org_id", None).execute().data
    assert roots == [{"name": "Globex Energy"}]
    subs = globex.from_("organisations").select("name").not_.is_("parent_org_id", None).execute().data
    assert subs == [{"name": "Globex Energy Operations"}]
    same = globex.from_("organisations").select("name").is_("parent_org_id", "null").execute().data
    assert same == roots


def test_array_contains_contained_by_overlaps(globex):
    notes = lambda: globex.from_("notes").select("title")  # noqa: E731
    assert titles(notes().contains("tags", ["audit"]).execute().data) == ["globex audit"]
    assert titles(notes().cs("tags", ["energy", "scope2"]).execute().data) == ["globex energy"]
    assert titles(notes().contained_by("tags", ["water", "energy", "scope2"]).execute().data) == [
        "globex energy",
        "globex water",
    ]
    assert titles(notes().cd("tags", ["water"]).execute().data) == ["globex water"]
    assert titles(notes().overlaps("tags", ["water", "scope1"]).execute().data) == ["globex audit", "globex water"]
    assert titles(notes().ov("tags", ["scope2"]).execute().data) == ["globex energy"]
    assert titles(notes().not_.overlaps("tags", ["water", "scope1"]).execute().data) == ["globex energy"]


def test_jsonb_contains_contained_by_and_paths(globex):
    notes = lambda: globex.from_("notes").select("title")  # noqa: E731
    assert titles(notes().contains("attrs", {"status": "open"}).execute().data) == ["globex audit", "globex energy"]
    assert titles(notes().contained_by("attrs", {"status": "closed", "priority": 2, "x": 1}).execute().data) == [
        "globex water"
    ]
    rows = (
        globex.from_("notes")
        .select("title,status:attrs->>status,p:attrs->priority")
        .eq("attrs->>status", "closed")
        .execute()
        .data
    )
    assert rows == [{"title": "globex water", "status": "closed", "p": 2}]
    rows = globex.from_("notes").select("title").gt("attrs->priority", 1).order("title").execute().data
    assert rows == [{"title": "globex energy"}, {"title": "globex water"}]


RANGE_CASES = [
    # span is a daterange; the client sends "(a,b)", i.e. both bounds exclusive.
    ("range_lt (sl)", lambda q: q.range_lt("span", ("2025-07-01", "2025-12-31")), ["2025-H1", "2025-Q1", "2025-Q2"]),
    ("range_gt (sr)", lambda q: q.range_gt("span", ("2025-01-01", "2025-06-30")), ["2025-Q3", "2025-Q4"]),
    ("range_gte (nxl)", lambda q: q.range_gte("span", ("2025-03-31", "2026-02-01")), ["2025-Q2", "2025-Q3", "2025-Q4"]),
    ("range_lte (nxr)", lambda q: q.range_lte("span", ("2024-12-31", "2025-07-01")), ["2025-H1", "2025-Q1", "2025-Q2"]),
    ("range_adjacent (adj)", lambda q: q.range_adjacent("span", ("2025-03-31", "2025-07-01")), ["2025-Q1", "2025-Q3"]),
    ("sl", lambda q: q.sl("span", ("2025-07-01", "2025-12-31")), ["2025-H1", "2025-Q1", "2025-Q2"]),
    ("sr", lambda q: q.sr("span", ("2025-01-01", "2025-06-30")), ["2025-Q3", "2025-Q4"]),
    ("nxl", lambda q: q.nxl("span", ("2025-03-31", "2026-02-01")), ["2025-Q2", "2025-Q3", "2025-Q4"]),
    ("nxr", lambda q: q.nxr("span", ("2024-12-31", "2025-07-01")), ["2025-H1", "2025-Q1", "2025-Q2"]),
    ("adj", lambda q: q.adj("span", ("2025-03-31", "2025-07-01")), ["2025-Q1", "2025-Q3"]),
    ("contains range", lambda q: q.contains("span", "[2025-02-01,2025-02-02)"), ["2025-H1", "2025-Q1", "FY2025"]),
    ("contained_by range", lambda q: q.contained_by("span", "[2025-01-01,2025-07-01]"), ["2025-H1", "2025-Q1", "2025-Q2"]),
    ("overlaps range", lambda q: q.overlaps("span", "[2025-06-15,2025-07-15)"), ["2025-H1", "2025-Q2", "2025-Q3", "FY2025"]),
    ("not_ range_lt", lambda q: q.not_.range_lt("span", ("2025-07-01", "2025-12-31")), ["2025-Q3", "2025-Q4", "FY2025"]),
]


@pytest.mark.parametrize("apply,expected", [c[1:] for c in RANGE_CASES], ids=[c[0] for c in RANGE_CASES])
def test_range_operator(anon, apply, expected):
    rows = apply(anon.from_("reporting_periods").select("code")).execute().data
    assert codes(rows) == expected


def test_range_values_are_returned_as_text(anon):
    rows = anon.from_("reporting_periods").select("code,span").eq("code", "2025-Q3").execute().data
    assert rows == [{"code": "2025-Q3", "span": "[2025-07-01,2025-10-01)"}]


TEXT_SEARCH_CASES = [
    ("text_search default", lambda q: q.text_search("fts", "water"), ["globex water"]),
    (
        "text_search plain",
        lambda q: q.text_search("fts", "cold winter", {"type": "plain", "config": "english"}),
        ["globex energy"],
    ),
    (
        "text_search phrase",
        lambda q: q.text_search("fts", "main plant", {"type": "phrase", "config": "english"}),
        ["globex audit"],
    ),
    (
        "text_search web_search",
        lambda q: q.text_search("fts", "emissions or towers -cooling", {"type": "web_search", "config": "english"}),
        ["globex audit"],
    ),
    ("fts", lambda q: q.fts("fts", "water & towers"), ["globex water"]),
    ("plfts", lambda q: q.plfts("fts", "energy consumption"), ["globex energy"]),
    ("phfts", lambda q: q.phfts("fts", "cooling towers"), ["globex water"]),
    ("wfts", lambda q: q.wfts("fts", '"scope one" or winter'), ["globex audit", "globex energy"]),
    ("fts with config via filter", lambda q: q.filter("fts", "fts(english)", "auditors"), ["globex audit"]),
    ("not_ fts", lambda q: q.not_.fts("fts", "water"), ["globex audit", "globex energy"]),
]


@pytest.mark.parametrize("apply,expected", [c[1:] for c in TEXT_SEARCH_CASES], ids=[c[0] for c in TEXT_SEARCH_CASES])
def test_text_search(globex, apply, expected):
    rows = apply(globex.from_("notes").select("title")).execute().data
    assert titles(rows) == expected


def test_or_on_referenced_table(globex):
    rows = (
        globex.from_("organisations")
        .select("name,reporting_entities(name)")
        .or_("name.eq.Globex Energy site 1,name.eq.Globex Energy site 4", reference_table="reporting_entities")
        .order("name")
        .execute()
        .data
    )
    assert rows == [
        {"name": "Globex Energy", "reporting_entities": [{"name": "Globex Energy site 4"}]},
        {"name": "Globex Energy Operations", "reporting_entities": [{"name": "Globex Energy site 1"}]},
    ]


# ---------------------------------------------------------------- order / limit / offset / range


def test_order_desc_limit(globex):
    rows = globex.from_("metrics").select("code").order("code", desc=True).limit(2).execute().data
    assert rows == [{"code": "water"}, {"code": "waste"}]


def test_limit_offset(globex):
    rows = globex.from_("metrics").select("code").order("code").limit(2).offset(1).execute().data
    assert rows == [{"code": "scope1"}, {"code": "scope2"}]


def test_range(globex):
    rows = globex.from_("metrics").select("code").order("code").range(1, 3).execute().data
    assert rows == [{"code": "scope1"}, {"code": "scope2"}, {"code": "waste"}]


def test_offset_past_the_end(globex):
    rows = globex.from_("metrics").select("code").order("code").range(10, 19).execute().data
    assert rows == []


def test_multiple_orders_and_nulls(globex):
    rows = (
        globex.from_("organisations")
        .select("name,parent_org_id")
        .order("parent_org_id", desc=True, nullsfirst=True)
        .order("name")
        .execute()
        .data
    )
    assert [r["name"] for r in rows] == ["Globex Energy", "Globex Energy Operations"]
    assert rows[0]["parent_org_id"] is None and rows[1]["parent_org_id"] is not None
    last = globex.from_("organisations").select("name").order("parent_org_id", nullsfirst=False).execute().data
    assert [r["name"] for r in last] == ["Globex Energy Operations", "Globex Energy"]
    # ascending puts nulls last by default, descending first
    desc = globex.from_("organisations").select("name").order("parent_org_id", desc=True).execute().data
    assert desc[0]["name"] == "Globex Energy"


def test_order_two_columns_one_call_each(globex):
    rows = globex.from_("metrics").select("unit,code").order("unit").order("code", desc=True).execute().data
    assert [(r["unit"], r["code"]) for r in rows] == [
        ("MWh", "energy"),
        ("m3", "water"),
        ("t", "waste"),
        ("tCO2e", "scope2"),
        ("tCO2e", "scope1"),
    ]


def test_order_by_embedded_to_one_column(globex):
    rows = (
        globex.from_("reporting_entities")
        .select("name,organisations(name)")
        .order("organisations(name)", desc=True)
        .order("name")
        .execute()
        .data
    )
    assert [(r["organisations"]["name"], r["name"]) for r in rows] == [
        ("Globex Energy Operations", "Globex Energy site 1"),
        ("Globex Energy Operations", "Globex Energy site 3"),
        ("Globex Energy", "Globex Energy site 2"),
        ("Globex Energy", "Globex Energy site 4"),
    ]


# ---------------------------------------------------------------- count


def test_count_exact_head(globex):
    res = globex.from_("data_points").select("*", count=CountMethod.exact, head=True).execute()
    assert res.count == 240
    assert res.data == []
    assert globex.rec.last.request.method == "HEAD"
    assert globex.rec.status == 200


def test_count_exact_with_range(globex):
    res = globex.from_("metrics").select("code", count=CountMethod.exact).order("code").range(0, 1).execute()
    assert res.count == 5
    assert res.data == [{"code": "energy"}, {"code": "scope1"}]
    assert globex.rec.status == 206
    assert globex.rec.last.headers["content-range"] == "0-1/5"


def test_count_exact_full_range_is_200(globex):
    res = globex.from_("metrics").select("code", count=CountMethod.exact).execute()
    assert res.count == 5
    assert globex.rec.status == 200
    assert globex.rec.last.headers["content-range"] == "0-4/5"


def test_count_exact_offset_past_the_end_is_416(globex):
    with pytest.raises(APIError) as info:
        globex.from_("metrics").select("code", count=CountMethod.exact).order("code").range(10, 19).execute()
    err = info.value
    assert globex.rec.status == 416
    assert err.code == "PGRST103"
    assert err.message == "Requested range not satisfiable"
    assert err.details == "An offset of 10 was requested, but there are only 5 rows."
    assert globex.rec.last.headers["content-range"] == "*/5"


def test_count_exact_with_filter(globex):
    res = globex.from_("data_points").select("id", count=CountMethod.exact).eq("period", "2025-03-01").execute()
    assert res.count == 20
    assert len(res.data) == 20


def test_count_exact_head_with_inner_filter(globex):
    res = (
        globex.from_("data_points")
        .select("id,metrics!inner(code)", count=CountMethod.exact, head=True)
        .in_("metrics.code", ["scope1", "scope2"])
        .execute()
    )
    assert res.count == 96


@pytest.mark.parametrize("method", [CountMethod.planned, CountMethod.estimated])
def test_count_planned_estimated(globex, method):
    res = globex.from_("metrics").select("code", count=method, head=True).execute()
    assert isinstance(res.count, int) and res.count >= 0


def test_no_count_without_prefer(globex):
    res = globex.from_("metrics").select("code").execute()
    assert res.count is None
    assert len(res.data) == 5


# ---------------------------------------------------------------- single / maybe_single


def test_single_one_row(globex):
    res = globex.from_("metrics").select("code,unit").eq("code", "energy").single().execute()
    assert res.data == {"code": "energy", "unit": "MWh"}


def test_single_many_rows_is_pgrst116(globex):
    with pytest.raises(APIError) as info:
        globex.from_("metrics").select("code").single().execute()
    assert info.value.code == "PGRST116"
    assert globex.rec.status == 406
    assert info.value.details == "The result contains 5 rows"


def test_single_zero_rows_is_pgrst116(globex):
    with pytest.raises(APIError) as info:
        globex.from_("metrics").select("code").eq("code", "nope").single().execute()
    assert info.value.code == "PGRST116"
    assert info.value.details == "The result contains 0 rows"
    assert globex.rec.status == 406


def test_maybe_single_zero_rows_is_none(globex):
    assert globex.from_("metrics").select("code").eq("code", "nope").maybe_single().execute() is None


def test_maybe_single_one_row(globex):
    res = globex.from_("metrics").select("code").eq("code", "water").maybe_single().execute()
    assert res is not None
    assert res.data == {"code": "water"}


def test_maybe_single_many_rows_raises(globex):
    with pytest.raises(APIError) as info:
        globex.from_("metrics").select("code").maybe_single().execute()
    # the client checks the row count itself and reports 406
    assert info.value.code == "406"
    assert info.value.details == "The result contains more than one row."


# ---------------------------------------------------------------- csv


def test_csv_reference_table_anonymous(anon):
    text = anon.from_("units").select("code,name").order("code").csv().execute().data
    assert isinstance(text, str)
    lines = text.strip().split("\n")
    assert lines[0] == "code,name"
    assert len(lines) == 6
    assert lines[1] == 'MWh,"megawatt hours"'
    # PostgREST's CSV: PostgreSQL's record quoting (a value with a space is quoted)
    assert 'tCO2e,"tonnes of CO2 equivalent"' in lines
    assert anon.rec.last.headers["content-type"].startswith("text/csv")


def test_csv_one_row(globex):
    text = globex.from_("metrics").select("code").eq("code", "scope1").csv().execute().data
    assert text.strip() == "code\nscope1"


def test_csv_keeps_select_order(anon):
    text = anon.from_("units").select("name,code").eq("code", "t").csv().execute().data
    assert text.strip() == "name,code\ntonnes,t"


def test_csv_quotes_arrays_and_ranges(globex, anon):
    text = globex.from_("notes").select("tags").eq("title", "globex audit").csv().execute().data
    assert text.strip() == 'tags\n"{audit,scope1}"'
    text = anon.from_("reporting_periods").select("code,span").eq("code", "2025-Q1").csv().execute().data
    assert text.strip() == 'code,span\n2025-Q1,"[2025-01-01,2025-04-01)"'


def test_csv_with_filters_and_range(globex):
    text = globex.from_("metrics").select("code,unit").order("code").range(3, 4).csv().execute().data
    assert text.strip().split("\n") == ["code,unit", "waste,t", "water,m3"]


# ---------------------------------------------------------------- the client's defaults


def test_default_schema_public_is_not_exposed():
    """SyncPostgrestClient defaults to schema "public" (Accept-Profile: public),
    which is not in PGRST_DB_SCHEMAS: PGRST106 / 406."""
    c = client()
    pub = c.schema("public")
    with pytest.raises(APIError) as info:
        pub.from_("units").select("code").execute()
    assert info.value.code == "PGRST106"
    assert c.rec.status == 406


def test_schema_switch_to_tenancy(anon):
    """schema() switches Accept-Profile; esg tables are then unknown."""
    t = anon.schema("tenancy")
    with pytest.raises(APIError) as info:
        t.from_("units").select("code").execute()
    assert info.value.code in ("PGRST205", "42P01")


def test_plain_default_client():
    """A SyncPostgrestClient with the library's own httpx client (HTTP/2
    enabled, as supabase-py creates it), used as a context manager."""
    with SyncPostgrestClient(URL, schema=SCHEMA) as c:
        c.auth(member_token("globex"))
        rows = c.table("metrics").select("code").order("code").execute().data
        assert [r["code"] for r in rows] == ["energy", "scope1", "scope2", "waste", "water"]
        one = c.from_("units").select("name").eq("code", "pct").single().execute()
        assert one.data == {"name": "percent"}


# ---------------------------------------------------------------- strip_nulls


def test_strip_nulls_array(globex):
    rows = (
        globex.from_("organisations")
        .select("name,parent_org_id,country")
        .order("name")
        .strip_nulls()
        .execute()
        .data
    )
    assert globex.rec.last.request.headers["accept"] == "application/vnd.pgrst.array+json;nulls=stripped"
    assert rows[0] == {"name": "Globex Energy", "country": "US"}
    assert sorted(rows[1]) == ["country", "name", "parent_org_id"]
    assert isinstance(rows[1]["parent_org_id"], int)


def test_strip_nulls_single(globex):
    row = (
        globex.from_("organisations")
        .select("name,parent_org_id")
        .is_("parent_org_id", None)
        .strip_nulls()
        .single()
        .execute()
        .data
    )
    assert row == {"name": "Globex Energy"}


# ---------------------------------------------------------------- values that need URL / PostgREST quoting


def test_filter_values_with_reserved_characters(initech):
    title = 'py, (odd) "title" & ü/€?#'
    initech.from_("notes").insert({"title": title, "body": "x"}).execute()
    assert initech.from_("notes").select("title").eq("title", title).execute().data == [{"title": title}]
    assert initech.from_("notes").select("title").in_("title", [title, "nope"]).execute().data == [{"title": title}]
    assert initech.from_("notes").select("title").like("title", "py, (odd)*").execute().data == [{"title": title}]


def test_in_with_integers(globex):
    ids = [r["id"] for r in globex.from_("metrics").select("id").order("id").limit(2).execute().data]
    rows = globex.from_("metrics").select("id").in_("id", ids).order("id").execute().data
    assert [r["id"] for r in rows] == ids
