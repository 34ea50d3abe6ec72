"""Tenant isolation through the client: two tenants' tokens see disjoint rows,
and a write with tenant A's token cannot touch tenant B's rows."""

import json

import pytest
from lib import member
from postgrest import APIError, CountMethod


def tenant_of(c) -> str:
    return c.from_("metrics").select("tenant_id").limit(1).single().execute().data["tenant_id"]


@pytest.fixture(scope="module")
def globex_tenant(globex) -> str:
    return tenant_of(globex)


@pytest.fixture(scope="module")
def initech_tenant(initech) -> str:
    return tenant_of(initech)


@pytest.mark.parametrize(
    "table,other",
    [("metrics", "initech"), ("organisations", "initech"), ("reporting_entities", "initech"), ("data_points", "initech"), ("notes", "acme")],
)
def test_two_tenants_see_disjoint_rows(globex, table, other):
    g = globex.from_(table).select("id,tenant_id").execute().data
    o = member(other).from_(table).select("id,tenant_id").execute().data
    assert g and o
    g_tenants = {r["tenant_id"] for r in g}
    o_tenants = {r["tenant_id"] for r in o}
    assert len(g_tenants) == 1 and len(o_tenants) == 1
    assert g_tenants != o_tenants
    g_rows = {json.dumps(r, sort_keys=True) for r in g}
    assert all(json.dumps(r, sort_keys=True) not in g_rows for r in o)


def test_same_query_same_shape_different_data(globex):
    for t in ("globex", "initech"):
        res = member(t).from_("data_points").select("*", count=CountMethod.exact, head=True).execute()
        assert res.count == 240, t
    names = lambda t: [r["name"] for r in member(t).from_("organisations").select("name").order("name").execute().data]  # noqa: E731
    assert names("globex") == ["Globex Energy", "Globex Energy Operations"]
    assert names("initech") == ["Initech Software", "Initech Software Operations"]


def test_tenant_by_uuid_claim_equals_slug(globex, globex_tenant):
    by_uuid = member(globex_tenant).from_("organisations").select("name").order("name").execute().data
    assert by_uuid == globex.from_("organisations").select("name").order("name").execute().data


def test_parent_sees_subsidiary_not_vice_versa():
    acme = member("acme").from_("organisations").select("name").order("name").execute().data
    eu = member("acme-europe").from_("organisations").select("name").order("name").execute().data
    assert [r["name"] for r in acme] == [
        "Acme Corporation",
        "Acme Corporation Operations",
        "Acme Europe GmbH",
        "Acme Europe GmbH Operations",
    ]
    assert [r["name"] for r in eu] == ["Acme Europe GmbH", "Acme Europe GmbH Operations"]


def test_token_without_tenant_sees_no_tenant_rows():
    c = member(None)
    assert c.from_("metrics").select("id").execute().data == []
    assert c.from_("units").select("code", count=CountMethod.exact, head=True).execute().count == 5


def test_filter_on_other_tenant_id_returns_nothing(initech, globex_tenant):
    assert initech.from_("metrics").select("id").eq("tenant_id", globex_tenant).execute().data == []
    assert initech.from_("data_points").select("id", count=CountMethod.exact, head=True).eq(
        "tenant_id", globex_tenant
    ).execute().count == 0


def test_other_tenants_row_by_id_is_not_found(initech, globex):
    gid = globex.from_("metrics").select("id").eq("code", "scope1").single().execute().data["id"]
    assert initech.from_("metrics").select("id").eq("id", gid).execute().data == []
    with pytest.raises(APIError) as info:
        initech.from_("metrics").select("id").eq("id", gid).single().execute()
    assert info.value.code == "PGRST116"
    assert initech.rec.status == 406


def test_update_and_delete_cannot_reach_other_tenant(initech, globex, globex_tenant):
    upd = initech.from_("metrics").update({"name": "hijacked"}).eq("tenant_id", globex_tenant).execute()
    assert upd.data == []
    upd = initech.from_("organisations").update({"name": "hijacked"}).eq("name", "Globex Energy").execute()
    assert upd.data == []
    dele = initech.from_("notes").delete().eq("tenant_id", globex_tenant).execute()
    assert dele.data == []
    dele = initech.from_("data_points").delete(count=CountMethod.exact).eq("tenant_id", globex_tenant).execute()
    assert dele.count == 0
    assert globex.from_("metrics").select("id").eq("name", "hijacked").execute().data == []
    assert globex.from_("organisations").select("id").eq("name", "hijacked").execute().data == []
    assert len(globex.from_("notes").select("id").execute().data) == 3
    assert globex.from_("data_points").select("id", count=CountMethod.exact, head=True).execute().count == 240


def test_insert_into_other_tenant_is_rls_violation(initech, globex, globex_tenant):
    with pytest.raises(APIError) as info:
        initech.from_("metrics").insert(
            {"tenant_id": globex_tenant, "code": "py_planted", "name": "planted", "unit": "t"}
        ).execute()
    err = info.value
    assert err.code == "42501"
    assert err.message == 'new row violates row-level security policy for table "metrics"'
    assert initech.rec.status == 403
    assert globex.from_("metrics").select("id").eq("code", "py_planted").execute().data == []


def test_update_moving_row_to_other_tenant_is_rls_violation(initech, globex, globex_tenant):
    initech.from_("notes").insert({"title": "py move me"}).execute()
    with pytest.raises(APIError) as info:
        initech.from_("notes").update({"tenant_id": globex_tenant}).eq("title", "py move me").execute()
    assert info.value.code == "42501"
    assert initech.rec.status == 403
    assert initech.from_("notes").select("title").eq("title", "py move me").execute().data == [{"title": "py move me"}]
    assert globex.from_("notes").select("title").eq("title", "py move me").execute().data == []


def test_upsert_onto_other_tenant_key_is_rls_violation(initech, globex, globex_tenant):
    with pytest.raises(APIError) as info:
        initech.from_("metrics").upsert(
            {"tenant_id": globex_tenant, "code": "scope1", "name": "hijacked", "unit": "t"},
            on_conflict="tenant_id,code",
        ).execute()
    assert info.value.code == "42501"
    assert initech.rec.status == 403
    assert globex.from_("metrics").select("name").eq("code", "scope1").single().execute().data == {
        "name": "Scope 1 emissions"
    }


def test_same_key_in_two_tenants_is_not_a_conflict(initech, globex):
    """metrics is UNIQUE (tenant_id, code): both tenants can own py_shared."""
    a = initech.from_("metrics").insert({"code": "py_shared", "name": "initech's", "unit": "t"}).execute().data
    try:
        b = globex.from_("metrics").insert({"code": "py_shared", "name": "globex's", "unit": "t"}).execute().data
        assert a[0]["tenant_id"] != b[0]["tenant_id"]
        assert initech.from_("metrics").select("name").eq("code", "py_shared").execute().data == [{"name": "initech's"}]
        assert globex.from_("metrics").select("name").eq("code", "py_shared").execute().data == [{"name": "globex's"}]
        # an upsert by globex on the shared key merges into globex's row only
        rows = (
            globex.from_("metrics")
            .upsert({"code": "py_shared", "name": "globex v2", "unit": "t"}, on_conflict="tenant_id,code")
            .execute()
            .data
        )
        assert [(r["name"], r["tenant_id"]) for r in rows] == [("globex v2", b[0]["tenant_id"])]
        assert initech.from_("metrics").select("name").eq("code", "py_shared").execute().data == [{"name": "initech's"}]
    finally:
        globex.from_("metrics").delete().eq("code", "py_shared").execute()
    assert initech.from_("metrics").select("name").eq("code", "py_shared").execute().data == [{"name": "initech's"}]


def test_rpc_sees_the_tokens_tenant(initech, globex, initech_tenant, globex_tenant):
    assert globex.rpc("my_tenant", {}).execute().data == globex_tenant
    assert initech.rpc("my_tenant", {}, get=True).execute().data == initech_tenant
    assert member(None).rpc("my_tenant", {}).execute().data is None


def test_rpc_runs_in_the_callers_tenant(initech, globex):
    g = globex.rpc("entities_of", {"k": "plant"}).select("name").execute().data
    i = initech.rpc("entities_of", {"k": "plant"}).select("name").execute().data
    assert g == [{"name": "Globex Energy site 3"}]
    assert i == [{"name": "Initech Software site 3"}]
