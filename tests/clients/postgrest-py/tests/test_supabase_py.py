"""supabase-py (`supabase` on PyPI) pointed straight at the proxy.

`create_client(url, key)` puts the API under `url/rest/v1` (Supabase's
gateway strips the prefix; so does the proxy) and sends the key as `apikey`
and as the bearer token.
"""

from __future__ import annotations

import pytest
from lib import URL, jwt, member_token
from postgrest.exceptions import APIError
from supabase import ClientOptions, create_client


def supabase(token: str, schema: str = "esg"):
    return create_client(URL, token, options=ClientOptions(schema=schema, auto_refresh_token=False, persist_session=False))


def test_select_under_rest_v1_runs_in_the_tokens_tenant():
    def names(tenant):
        res = supabase(member_token(tenant)).table("organisations").select("name").order("name").execute()
        return [r["name"] for r in res.data]

    assert names("globex") == ["Globex Energy", "Globex Energy Operations"]
    assert names("initech") == ["Initech Software", "Initech Software Operations"]


def test_embed_filter_count_and_single():
    db = supabase(member_token("globex"))
    res = (
        db.table("reporting_entities")
        .select("name,organisations!inner(name)", count="exact")
        .eq("organisations.name", "Globex Energy Operations")
        .order("name")
        .execute()
    )
    assert len(res.data) > 0
    assert res.count == len(res.data)
    assert all(r["organisations"]["name"] == "Globex Energy Operations" for r in res.data)
    one = db.table("metrics").select("code").order("code").limit(1).single().execute()
    assert isinstance(one.data["code"], str)


def test_rpc_under_rest_v1():
    db = supabase(member_token("globex"))
    assert db.rpc("metric_count").execute().data == 5
    assert db.rpc("add", {"a": 2, "b": 3}).execute().data == 5


def test_write_round_trip_and_isolation():
    initech = supabase(member_token("initech"))
    globex = supabase(member_token("globex"))
    row = initech.table("notes").insert({"title": "supabase-py note", "body": "via /rest/v1"}).execute().data[0]
    assert row["title"] == "supabase-py note"
    upd = initech.table("notes").update({"body": "changed"}).eq("id", row["id"]).execute().data
    assert [r["body"] for r in upd] == ["changed"]
    # another tenant neither sees nor deletes it
    assert globex.table("notes").select("id").eq("id", row["id"]).execute().data == []
    assert globex.table("notes").delete().eq("id", row["id"]).execute().data == []
    gone = initech.table("notes").delete().eq("id", row["id"]).execute().data
    assert [r["id"] for r in gone] == [row["id"]]


def test_errors_keep_postgrests_shape():
    with pytest.raises(APIError) as e:
        supabase(member_token("globex")).table("no_such_table").select("*").execute()
    assert e.value.code == "PGRST205"
    # supabase-py asks for schema `public` by default, not exposed here
    with pytest.raises(APIError) as e:
        supabase(member_token("globex"), schema="public").table("metrics").select("*").execute()
    assert e.value.code == "PGRST106"


def test_a_forged_token_is_refused():
    forged = jwt({"role": "tenancy_member", "tenant_id": "globex"}, "another-secret-of-thirty-two-chars!!")
    with pytest.raises(APIError) as e:
        supabase(forged).table("organisations").select("name").execute()
    assert e.value.code == "PGRST301"
