"""rpc() and error reporting (APIError's code / message / hint / details, and
the HTTP status PostgREST maps each error to)."""

import time

import pytest
from lib import client, jwt, member
from postgrest import APIError, CountMethod

# ---------------------------------------------------------------- rpc


def test_rpc_scalar_post(anon):
    res = anon.rpc("add", {"a": 1, "b": 5}).execute()
    assert res.data == 6
    assert anon.rec.last.request.method == "POST"


def test_rpc_scalar_get_with_default_argument(anon):
    res = anon.rpc("add", {"a": 40}, get=True).execute()
    assert res.data == 42
    assert anon.rec.last.request.method == "GET"
    assert anon.rec.last.request.url.params["a"] == "40"


def test_rpc_reads_tenant_rows(globex, initech):
    assert globex.rpc("metric_count", {}).execute().data == 5
    # initech may have written metrics in test_write; it never sees globex's
    assert initech.rpc("metric_count", {}).execute().data >= 5


def test_rpc_setof_with_select_order_limit(globex):
    rows = (
        globex.rpc("entities_of", {"k": "office"}).select("name").order("name", desc=True).limit(1).execute().data
    )
    assert rows == [{"name": "Globex Energy site 4"}]


def test_rpc_setof_with_filters(globex):
    rows = globex.rpc("entities_of", {"k": "office"}).select("name,kind").like("name", "%site 1").execute().data
    assert rows == [{"name": "Globex Energy site 1", "kind": "office"}]
    rows = globex.rpc("entities_of", {"k": "office"}).select("name").not_.eq("name", "Globex Energy site 1").execute().data
    assert rows == [{"name": "Globex Energy site 4"}]


def test_rpc_setof_with_embed(globex):
    rows = (
        globex.rpc("entities_of", {"k": "plant"}).select("name,organisations(name)").execute().data
    )
    assert rows == [{"name": "Globex Energy site 3", "organisations": {"name": "Globex Energy Operations"}}]


def test_rpc_setof_via_get_with_filters(globex):
    rows = (
        globex.rpc("entities_of", {"k": "office"}, get=True)
        .select("name")
        .in_("name", ["Globex Energy site 4", "nope"])
        .execute()
        .data
    )
    assert rows == [{"name": "Globex Energy site 4"}]


def test_rpc_count_exact_head(globex):
    res = globex.rpc("entities_of", {"k": "office"}, count=CountMethod.exact, head=True).execute()
    assert res.count == 2
    assert globex.rec.last.request.method == "HEAD"


def test_rpc_count_exact_with_rows(globex):
    res = globex.rpc("entities_of", {"k": "office"}, count=CountMethod.exact).select("name").order("name").execute()
    assert res.count == 2
    assert res.data == [{"name": "Globex Energy site 1"}, {"name": "Globex Energy site 4"}]


def test_rpc_setof_single_and_maybe_single(globex):
    one = globex.rpc("entities_of", {"k": "plant"}).select("name,kind").single().execute()
    assert one.data == {"name": "Globex Energy site 3", "kind": "plant"}
    with pytest.raises(APIError) as info:
        globex.rpc("entities_of", {"k": "office"}).select("name").single().execute()
    assert info.value.code == "PGRST116"
    assert globex.rec.status == 406
    none = globex.rpc("entities_of", {"k": "nope"}).maybe_single().execute()
    assert none is None


def test_rpc_setof_csv(globex):
    res = globex.rpc("entities_of", {"k": "office"}).select("name,kind").order("name").csv().execute()
    assert res.data.strip().split("\n") == ['name,kind', '"Globex Energy site 1",office', '"Globex Energy site 4",office']


def test_rpc_volatile_composite_with_single():
    c = member("initech")
    res = c.rpc("new_metric", {"code": "py_rpc", "name": "From RPC"}).select("code,name,unit").single().execute()
    assert res.data == {"code": "py_rpc", "name": "From RPC", "unit": "t"}
    assert c.from_("metrics").select("name").eq("code", "py_rpc").execute().data == [{"name": "From RPC"}]


def test_rpc_volatile_via_get_is_read_only():
    """GET runs the function in a read-only transaction: 25006 / 405."""
    c = member("initech")
    with pytest.raises(APIError) as info:
        c.rpc("new_metric", {"code": "py_rpc_get", "name": "x"}, get=True).execute()
    assert info.value.code == "25006"
    assert c.rec.status == 405
    assert c.from_("metrics").select("code").eq("code", "py_rpc_get").execute().data == []


def test_rpc_array_argument_post_and_get(anon):
    assert anon.rpc("sum_all", {"xs": [1, 2, 3]}).execute().data == 6
    # GET sends the list as the array literal {4,5}
    assert anon.rpc("sum_all", {"xs": [4, 5]}, get=True).execute().data == 9
    assert anon.rec.last.request.url.params["xs"] == "{4,5}"


def test_rpc_jsonb_argument_post_and_get(anon):
    doc = {"a": [1, {"b": None}], "s": "x,y (z)", "t": True}
    assert anon.rpc("echo", {"j": doc}).execute().data == doc
    assert anon.rpc("echo", {"j": doc}, get=True).execute().data == doc


def test_rpc_void_is_204(anon):
    res = anon.rpc("noop", {}).execute()
    assert anon.rec.status == 204
    assert anon.rec.last.content == b""
    assert res.data == []


def test_rpc_without_arguments_via_get(globex):
    assert globex.rpc("metric_count", {}, get=True).execute().data == 5


def test_rpc_raise_with_errcode_and_hint(anon):
    with pytest.raises(APIError) as info:
        anon.rpc("fail", {"code": "P0001"}).execute()
    err = info.value
    assert anon.rec.status == 400
    assert err.code == "P0001"
    assert err.message == "failed on purpose"
    assert err.hint == "a hint"
    assert err.details is None


@pytest.mark.parametrize(
    "sqlstate,status",
    [("23505", 409), ("23503", 409), ("22023", 400), ("42883", 404), ("40001", 500), ("57014", 500)],
)
def test_rpc_raise_status_mapping(globex, sqlstate, status):
    with pytest.raises(APIError) as info:
        globex.rpc("fail", {"code": sqlstate}).execute()
    assert info.value.code == sqlstate
    assert globex.rec.status == status


def test_rpc_raise_42501_authenticated_is_403_anonymous_is_401(globex, anon):
    with pytest.raises(APIError):
        globex.rpc("fail", {"code": "42501"}).execute()
    assert globex.rec.status == 403
    with pytest.raises(APIError):
        anon.rpc("fail", {"code": "42501"}).execute()
    assert anon.rec.status == 401


def test_rpc_raise_pt_custom_status(anon):
    """RAISE SQLSTATE 'PTxyz' sets the HTTP status xyz (PostgREST v12)."""
    with pytest.raises(APIError) as info:
        anon.rpc("fail", {"code": "PT402"}).execute()
    assert anon.rec.status == 402
    assert info.value.message == "failed on purpose"


def test_rpc_unknown_function_is_pgrst202(anon):
    with pytest.raises(APIError) as info:
        anon.rpc("no_such_fn", {"x": 1}).execute()
    assert info.value.code == "PGRST202"
    assert anon.rec.status == 404
    assert "no_such_fn" in info.value.message


def test_rpc_wrong_argument_names_is_pgrst202(anon):
    with pytest.raises(APIError) as info:
        anon.rpc("add", {"x": 1}).execute()
    assert info.value.code == "PGRST202"
    assert anon.rec.status == 404


# ---------------------------------------------------------------- errors


def test_unknown_column_in_select_is_42703(globex):
    with pytest.raises(APIError) as info:
        globex.from_("metrics").select("nope").execute()
    err = info.value
    assert globex.rec.status == 400
    assert err.code == "42703"
    assert err.message == "column metrics.nope does not exist"
    raw = err.json()
    assert sorted(raw) == ["code", "details", "hint", "message"]


def test_unknown_column_in_filter_is_42703(globex):
    with pytest.raises(APIError) as info:
        globex.from_("metrics").select("code").eq("nope", 1).execute()
    assert info.value.code == "42703"
    assert "nope" in info.value.message
    assert globex.rec.status == 400


def test_unknown_column_in_order_is_42703(globex):
    with pytest.raises(APIError) as info:
        globex.from_("metrics").select("code").order("nope").execute()
    assert info.value.code == "42703"
    assert globex.rec.status == 400


def test_unknown_column_in_insert_is_pgrst204(globex):
    with pytest.raises(APIError) as info:
        globex.from_("metrics").insert({"nope": 1}).execute()
    err = info.value
    assert err.code == "PGRST204"
    assert err.message == "Could not find the 'nope' column of 'metrics' in the schema cache"
    assert globex.rec.status == 400


def test_unknown_column_in_bulk_insert_is_pgrst204(globex):
    with pytest.raises(APIError) as info:
        globex.from_("metrics").insert([{"code": "x", "name": "x", "unit": "t", "nope": 1}]).execute()
    assert info.value.code == "PGRST204"
    assert globex.rec.status == 400


def test_unknown_column_in_update_is_pgrst204(globex):
    with pytest.raises(APIError) as info:
        globex.from_("metrics").update({"nope": 1}).eq("code", "scope1").execute()
    assert info.value.code == "PGRST204"
    assert globex.rec.status == 400


def test_unknown_table_is_pgrst205(globex):
    with pytest.raises(APIError) as info:
        globex.from_("no_such_table").select("*").execute()
    assert info.value.code == "PGRST205"
    assert globex.rec.status == 404
    assert "no_such_table" in info.value.message


def test_embed_without_relationship_is_pgrst200(globex):
    with pytest.raises(APIError) as info:
        globex.from_("units").select("code,notes(title)").execute()
    err = info.value
    assert err.code == "PGRST200"
    assert globex.rec.status == 400
    assert err.message == "Could not find a relationship between 'units' and 'notes' in the schema cache"
    assert err.details is not None and "units" in err.details and "notes" in err.details


def test_invalid_input_syntax_is_22p02(globex):
    with pytest.raises(APIError) as info:
        globex.from_("metrics").select("code").eq("id", "abc").execute()
    assert info.value.code == "22P02"
    assert info.value.message == 'invalid input syntax for type bigint: "abc"'
    assert globex.rec.status == 400


def test_unknown_operator_is_pgrst100(globex):
    with pytest.raises(APIError) as info:
        globex.from_("metrics").select("code").filter("code", "bogus", "x").execute()
    assert info.value.code == "PGRST100"
    assert globex.rec.status == 400
    assert info.value.message.startswith('"failed to parse filter')


def test_malformed_select_is_pgrst100(globex):
    with pytest.raises(APIError) as info:
        globex.from_("metrics").select("code,units(").execute()
    assert info.value.code == "PGRST100"
    assert globex.rec.status == 400


def test_aggregates_are_disabled_by_default_pgrst123(globex):
    """db-aggregates-enabled is off by default in PostgREST v12."""
    with pytest.raises(APIError) as info:
        globex.from_("metrics").select("count()").execute()
    assert info.value.code == "PGRST123"
    assert info.value.message == "Use of aggregate functions is not allowed"
    assert globex.rec.status == 400


def test_explain_is_not_acceptable_without_db_plan_enabled(globex):
    """explain() asks for application/vnd.pgrst.plan+text, which PostgREST
    only serves with db-plan-enabled (off by default): PGRST107 / 406."""
    with pytest.raises(APIError) as info:
        globex.from_("metrics").select("code").explain().execute()
    assert info.value.code == "PGRST107"
    assert globex.rec.status == 406


def test_not_null_violation_is_23502_400(globex):
    with pytest.raises(APIError) as info:
        globex.from_("metrics").insert({"code": "py_nn", "unit": "t"}).execute()
    err = info.value
    assert err.code == "23502"
    assert globex.rec.status == 400
    assert err.message == 'null value in column "name" of relation "metrics" violates not-null constraint'
    # no "Failing row contains (...)" DETAIL: PostgreSQL omits it under RLS
    assert err.details is None


def test_anonymous_read_of_tenant_table_is_42501_401(anon):
    with pytest.raises(APIError) as info:
        anon.from_("metrics").select("code").execute()
    assert info.value.code == "42501"
    assert info.value.message == "permission denied for table metrics"
    assert anon.rec.status == 401


def test_member_write_to_reference_table_is_42501_403(globex):
    with pytest.raises(APIError) as info:
        globex.from_("units").insert({"code": "py_unit", "name": "nope"}).execute()
    assert info.value.code == "42501"
    assert info.value.message == "permission denied for table units"
    assert globex.rec.status == 403
    assert globex.from_("units").select("code").eq("code", "py_unit").execute().data == []


def test_viewer_cannot_write_is_42501_403():
    viewer = member("globex", role="tenancy_viewer")
    assert len(viewer.from_("metrics").select("code").execute().data) == 5
    with pytest.raises(APIError) as info:
        viewer.from_("metrics").insert({"code": "py_viewer", "name": "x", "unit": "t"}).execute()
    assert info.value.code == "42501"
    assert viewer.rec.status == 403
    with pytest.raises(APIError) as info:
        viewer.from_("metrics").update({"name": "x"}).eq("code", "scope1").execute()
    assert info.value.code == "42501"
    assert viewer.rec.status == 403


@pytest.mark.parametrize("role", ["tenancy_superadmin", "postgres"])
def test_jwt_role_not_granted_to_authenticator_is_rejected(role):
    """A token cannot switch to a role the authenticator is not a member of."""
    c = client(jwt({"role": role, "tenant_id": "globex", "exp": int(time.time()) + 600}))
    with pytest.raises(APIError) as info:
        c.from_("metrics").select("code").execute()
    assert info.value.code == "42501"
    assert info.value.message == f'permission denied to set role "{role}"'
    assert c.rec.status == 403


def test_jwt_bad_signature_is_pgrst301():
    c = client(jwt({"role": "tenancy_member", "tenant_id": "globex"}, "another-secret-another-secret-another"))
    with pytest.raises(APIError) as info:
        c.from_("units").select("*").execute()
    assert info.value.code == "PGRST301"
    assert c.rec.status == 401
    assert c.rec.last.headers.get("www-authenticate", "").startswith("Bearer")


def test_jwt_malformed_is_pgrst301():
    c = client("not-a-jwt")
    with pytest.raises(APIError) as info:
        c.from_("units").select("*").execute()
    assert info.value.code == "PGRST301"
    assert c.rec.status == 401


def test_jwt_expired_is_pgrst303():
    c = client(jwt({"role": "tenancy_member", "tenant_id": "globex", "exp": int(time.time()) - 3600}))
    with pytest.raises(APIError) as info:
        c.from_("units").select("*").execute()
    assert info.value.code == "PGRST303"
    assert info.value.message == "JWT expired"
    assert c.rec.status == 401


def test_error_repr_and_json(globex):
    with pytest.raises(APIError) as info:
        globex.from_("metrics").select("code").filter("code", "bogus", "x").execute()
    err = info.value
    assert err.json()["code"] == "PGRST100"
    assert repr(err).startswith("Error PGRST100:")
