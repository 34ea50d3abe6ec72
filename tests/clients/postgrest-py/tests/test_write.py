"""Writes with returning: insert / upsert / update / delete as a member of
tenant initech. Each test works on its own metric codes (prefix py_), so the
tests do not depend on each other's order."""

import pytest
from lib import codes
from postgrest import APIError, CountMethod, ReturnMethod


@pytest.fixture(scope="module")
def initech_tenant(initech) -> str:
    return initech.from_("metrics").select("tenant_id").limit(1).single().execute().data["tenant_id"]


def metric_rows(c, prefix):
    return c.from_("metrics").select("code,name,unit").like("code", f"{prefix}%").order("code").execute().data


# ---------------------------------------------------------------- insert


def test_insert_one_returns_full_row_by_default(initech, initech_tenant):
    res = initech.from_("metrics").insert({"code": "py_ins1", "name": "CO2", "unit": "t"}).execute()
    assert initech.rec.status == 201
    assert len(res.data) == 1
    row = res.data[0]
    assert sorted(row) == ["code", "id", "name", "tenant_id", "unit"]
    assert (row["code"], row["name"], row["unit"]) == ("py_ins1", "CO2", "t")
    assert row["tenant_id"] == initech_tenant
    assert isinstance(row["id"], int)


def test_insert_one_with_select_and_embed(initech):
    res = (
        initech.from_("metrics")
        .insert({"code": "py_ins2", "name": "Water", "unit": "m3"})
        .select("code,name,units(name)")
        .execute()
    )
    assert initech.rec.status == 201
    assert res.data == [{"code": "py_ins2", "name": "Water", "units": {"name": "cubic metres"}}]


def test_insert_returning_minimal(initech):
    res = initech.from_("metrics").insert(
        {"code": "py_ins3", "name": "Minimal", "unit": "t"}, returning=ReturnMethod.minimal
    ).execute()
    assert initech.rec.status == 201
    assert res.data == []
    assert initech.rec.last.content == b""
    assert metric_rows(initech, "py_ins3") == [{"code": "py_ins3", "name": "Minimal", "unit": "t"}]


def test_bulk_insert_sends_columns(initech):
    rows = (
        initech.from_("metrics")
        .insert([{"code": "py_bulk1", "name": "B1", "unit": "t"}, {"code": "py_bulk2", "name": "B2", "unit": "MWh"}])
        .select("code,unit")
        .execute()
        .data
    )
    assert "columns" in str(initech.rec.last.request.url)
    assert sorted(rows, key=lambda r: r["code"]) == [
        {"code": "py_bulk1", "unit": "t"},
        {"code": "py_bulk2", "unit": "MWh"},
    ]


def test_bulk_insert_single_row_with_single(initech):
    res = (
        initech.from_("metrics")
        .insert([{"code": "py_one", "name": "One", "unit": "m3"}])
        .select("code,unit")
        .single()
        .execute()
    )
    assert res.data == {"code": "py_one", "unit": "m3"}


def test_bulk_insert_missing_keys_default_to_null(initech):
    """default_to_null=True (the default): a key missing from one row is NULL
    for that row, so kind (NOT NULL DEFAULT 'site') fails with 23502."""
    org = initech.from_("organisations").select("id").is_("parent_org_id", None).single().execute().data["id"]
    with pytest.raises(APIError) as info:
        initech.from_("reporting_entities").insert(
            [{"name": "PY null A", "organisation_id": org}, {"name": "PY null B", "organisation_id": org, "kind": "office"}]
        ).execute()
    assert info.value.code == "23502"
    assert initech.rec.status == 400
    assert 'column "kind"' in info.value.message
    left = initech.from_("reporting_entities").select("name").like("name", "PY null%").execute().data
    assert left == []


def test_bulk_insert_missing_keys_use_column_default(initech):
    """default_to_null=False sends Prefer: missing=default."""
    org = initech.from_("organisations").select("id").is_("parent_org_id", None).single().execute().data["id"]
    rows = (
        initech.from_("reporting_entities")
        .insert(
            [{"name": "PY site A", "organisation_id": org}, {"name": "PY site B", "organisation_id": org, "kind": "office"}],
            default_to_null=False,
        )
        .select("name,kind,organisations(name)")
        .execute()
        .data
    )
    assert sorted(rows, key=lambda r: r["name"]) == [
        {"name": "PY site A", "kind": "site", "organisations": {"name": "Initech Software"}},
        {"name": "PY site B", "kind": "office", "organisations": {"name": "Initech Software"}},
    ]


def test_insert_with_count_exact(initech):
    res = (
        initech.from_("metrics")
        .insert(
            [{"code": "py_cnt1", "name": "C1", "unit": "t"}, {"code": "py_cnt2", "name": "C2", "unit": "t"}],
            count=CountMethod.exact,
        )
        .execute()
    )
    assert res.count == 2
    assert codes(res.data) == ["py_cnt1", "py_cnt2"]


def test_insert_jsonb_and_array_values(initech):
    row = (
        initech.from_("notes")
        .insert({"title": "py note", "tags": ["a,b", 'q"t', "plain"], "attrs": {"n": [1, 2], "ok": True}, "body": "x"})
        .select("title,tags,attrs")
        .single()
        .execute()
        .data
    )
    assert row == {"title": "py note", "tags": ["a,b", 'q"t', "plain"], "attrs": {"n": [1, 2], "ok": True}}
    found = initech.from_("notes").select("title").contains("tags", ["a,b"]).execute().data
    assert found == [{"title": "py note"}]


def test_unique_violation_is_23505_409(initech):
    initech.from_("metrics").insert({"code": "py_dup", "name": "first", "unit": "t"}).execute()
    with pytest.raises(APIError) as info:
        initech.from_("metrics").insert({"code": "py_dup", "name": "again", "unit": "t"}).execute()
    err = info.value
    assert initech.rec.status == 409
    assert err.code == "23505"
    assert err.message == 'duplicate key value violates unique constraint "metrics_tenant_id_code_key"'
    # PostgreSQL leaves out the "Key (...)=(...) already exists." DETAIL on a
    # table with row level security (BuildIndexValueDescription), so
    # PostgREST forwards details: null here.
    assert err.details is None
    assert err.hint is None
    assert metric_rows(initech, "py_dup") == [{"code": "py_dup", "name": "first", "unit": "t"}]


def test_foreign_key_violation_is_23503_409(initech):
    with pytest.raises(APIError) as info:
        initech.from_("reporting_entities").insert({"name": "orphan", "organisation_id": 999999999}).execute()
    assert info.value.code == "23503"
    assert initech.rec.status == 409
    assert info.value.message == (
        'insert or update on table "reporting_entities" violates foreign key constraint '
        '"reporting_entities_tenant_id_organisation_id_fkey"'
    )
    # under row level security PostgreSQL's DETAIL names the table, not the key
    assert info.value.details == 'Key is not present in table "organisations".'



def test_check_of_referenced_unit_is_23503(initech):
    with pytest.raises(APIError) as info:
        initech.from_("metrics").insert({"code": "py_badunit", "name": "x", "unit": "furlongs"}).execute()
    assert info.value.code == "23503"
    assert initech.rec.status == 409


# ---------------------------------------------------------------- upsert


def test_upsert_merge_duplicates_on_conflict(initech):
    initech.from_("metrics").insert({"code": "py_up1", "name": "v1", "unit": "t"}).execute()
    rows = (
        initech.from_("metrics")
        .upsert({"code": "py_up1", "name": "v2", "unit": "t"}, on_conflict="tenant_id,code")
        .select("code,name")
        .execute()
        .data
    )
    assert rows == [{"code": "py_up1", "name": "v2"}]
    # the row existed: merged, nothing inserted, 200 (PostgREST v12)
    assert initech.rec.status == 200
    assert metric_rows(initech, "py_up1") == [{"code": "py_up1", "name": "v2", "unit": "t"}]


def test_upsert_bulk_new_and_existing(initech):
    initech.from_("metrics").insert({"code": "py_up2a", "name": "old", "unit": "t"}).execute()
    rows = (
        initech.from_("metrics")
        .upsert(
            [{"code": "py_up2a", "name": "merged", "unit": "t"}, {"code": "py_up2b", "name": "new", "unit": "pct"}],
            on_conflict="tenant_id,code",
        )
        .select("code,name,unit")
        .execute()
        .data
    )
    assert sorted(rows, key=lambda r: r["code"]) == [
        {"code": "py_up2a", "name": "merged", "unit": "t"},
        {"code": "py_up2b", "name": "new", "unit": "pct"},
    ]
    # one row inserted: 201
    assert initech.rec.status == 201
    assert metric_rows(initech, "py_up2") == [
        {"code": "py_up2a", "name": "merged", "unit": "t"},
        {"code": "py_up2b", "name": "new", "unit": "pct"},
    ]


def test_upsert_ignore_duplicates(initech):
    initech.from_("metrics").insert({"code": "py_up3", "name": "kept", "unit": "t"}).execute()
    rows = (
        initech.from_("metrics")
        .upsert(
            [{"code": "py_up3", "name": "ignored", "unit": "t"}, {"code": "py_up3b", "name": "added", "unit": "t"}],
            on_conflict="tenant_id,code",
            ignore_duplicates=True,
        )
        .select("code,name")
        .execute()
        .data
    )
    assert rows == [{"code": "py_up3b", "name": "added"}]
    assert metric_rows(initech, "py_up3") == [
        {"code": "py_up3", "name": "kept", "unit": "t"},
        {"code": "py_up3b", "name": "added", "unit": "t"},
    ]


def test_upsert_with_count_and_minimal(initech):
    res = initech.from_("metrics").upsert(
        [{"code": "py_up4a", "name": "a", "unit": "t"}, {"code": "py_up4b", "name": "b", "unit": "t"}],
        on_conflict="tenant_id,code",
        count=CountMethod.exact,
        returning=ReturnMethod.minimal,
    ).execute()
    assert res.data == []
    assert res.count == 2
    assert codes(metric_rows(initech, "py_up4")) == ["py_up4a", "py_up4b"]


# ---------------------------------------------------------------- update


def test_update_with_filters_returns_rows(initech):
    initech.from_("metrics").insert(
        [{"code": "py_upd1", "name": "a", "unit": "t"}, {"code": "py_upd2", "name": "b", "unit": "t"}]
    ).execute()
    res = initech.from_("metrics").update({"name": "patched"}).in_("code", ["py_upd1", "py_upd2"]).execute()
    assert initech.rec.status == 200
    assert sorted((r["code"], r["name"]) for r in res.data) == [("py_upd1", "patched"), ("py_upd2", "patched")]
    assert all(sorted(r) == ["code", "id", "name", "tenant_id", "unit"] for r in res.data)


def test_update_with_select(initech):
    initech.from_("metrics").insert({"code": "py_upd3", "name": "x", "unit": "t"}).execute()
    rows = (
        initech.from_("metrics")
        .update({"name": "y", "unit": "MWh"})
        .eq("code", "py_upd3")
        .select("code,name,units(name)")
        .execute()
        .data
    )
    assert rows == [{"code": "py_upd3", "name": "y", "units": {"name": "megawatt hours"}}]


def test_update_matching_nothing(initech):
    res = initech.from_("metrics").update({"name": "x"}).eq("code", "nope").execute()
    assert res.data == []
    assert initech.rec.status == 200


def test_update_minimal_is_204(initech):
    initech.from_("metrics").insert({"code": "py_upd4", "name": "x", "unit": "t"}).execute()
    res = initech.from_("metrics").update({"name": "quiet"}, returning=ReturnMethod.minimal).eq("code", "py_upd4").execute()
    assert initech.rec.status == 204
    assert res.data == []
    assert metric_rows(initech, "py_upd4") == [{"code": "py_upd4", "name": "quiet", "unit": "t"}]


def test_update_with_count_exact(initech):
    initech.from_("metrics").insert(
        [{"code": "py_upd5a", "name": "x", "unit": "t"}, {"code": "py_upd5b", "name": "x", "unit": "t"}]
    ).execute()
    res = initech.from_("metrics").update({"name": "z"}, count=CountMethod.exact).like("code", "py_upd5%").execute()
    assert res.count == 2
    assert len(res.data) == 2


def test_update_single_on_two_rows_rolls_back(initech):
    initech.from_("metrics").insert(
        [{"code": "py_upd6a", "name": "x", "unit": "t"}, {"code": "py_upd6b", "name": "x", "unit": "t"}]
    ).execute()
    with pytest.raises(APIError) as info:
        initech.from_("metrics").update({"name": "never"}).like("code", "py_upd6%").select("code").single().execute()
    assert info.value.code == "PGRST116"
    assert initech.rec.status == 406
    assert initech.from_("metrics").select("code").eq("name", "never").execute().data == []


def test_update_jsonb_column(initech):
    initech.from_("notes").insert({"title": "py upd note", "attrs": {"a": 1}}).execute()
    row = (
        initech.from_("notes")
        .update({"attrs": {"a": 2, "nested": {"b": None}}, "tags": []})
        .eq("title", "py upd note")
        .select("attrs,tags")
        .single()
        .execute()
        .data
    )
    assert row == {"attrs": {"a": 2, "nested": {"b": None}}, "tags": []}


# ---------------------------------------------------------------- delete


def test_delete_returns_deleted_rows(initech):
    initech.from_("metrics").insert(
        [{"code": "py_del1", "name": "a", "unit": "t"}, {"code": "py_del2", "name": "b", "unit": "t"}]
    ).execute()
    res = initech.from_("metrics").delete().eq("code", "py_del2").execute()
    assert initech.rec.status == 200
    assert [(r["code"], r["name"]) for r in res.data] == [("py_del2", "b")]
    assert codes(metric_rows(initech, "py_del")) == ["py_del1"]


def test_delete_with_select(initech):
    initech.from_("metrics").insert({"code": "py_del3", "name": "c", "unit": "m3"}).execute()
    rows = initech.from_("metrics").delete().eq("code", "py_del3").select("code,units(name)").execute().data
    assert rows == [{"code": "py_del3", "units": {"name": "cubic metres"}}]


def test_delete_minimal_is_204(initech):
    initech.from_("metrics").insert({"code": "py_del4", "name": "d", "unit": "t"}).execute()
    res = initech.from_("metrics").delete(returning=ReturnMethod.minimal).eq("code", "py_del4").execute()
    assert initech.rec.status == 204
    assert res.data == []
    assert metric_rows(initech, "py_del4") == []


def test_delete_with_count_exact(initech):
    initech.from_("metrics").insert(
        [{"code": "py_del5a", "name": "x", "unit": "t"}, {"code": "py_del5b", "name": "x", "unit": "t"}]
    ).execute()
    res = initech.from_("metrics").delete(count=CountMethod.exact, returning=ReturnMethod.minimal).in_(
        "code", ["py_del5a", "py_del5b", "py_nope"]
    ).execute()
    assert res.count == 2
    assert metric_rows(initech, "py_del5") == []


def test_delete_matching_nothing(initech):
    res = initech.from_("metrics").delete().eq("code", "nope").execute()
    assert res.data == []


def test_delete_restricted_by_foreign_key(initech):
    """A metric with data points cannot be deleted: 23503 / 409."""
    with pytest.raises(APIError) as info:
        initech.from_("metrics").delete().eq("code", "scope1").execute()
    assert info.value.code == "23503"
    assert initech.rec.status == 409
    assert codes(metric_rows(initech, "scope1")) == ["scope1"]


# ---------------------------------------------------------------- limited update / delete


def test_limited_update_with_order_and_limit(initech):
    """limit + order on PATCH limits the affected rows (PostgREST >= 10)."""
    initech.from_("metrics").insert(
        [{"code": f"py_lim{i}", "name": "x", "unit": "t"} for i in range(3)]
    ).execute()
    rows = (
        initech.from_("metrics")
        .update({"name": "limited"})
        .like("code", "py_lim%")
        .order("id")
        .limit(2)
        .select("code,name")
        .execute()
        .data
    )
    assert sorted(r["code"] for r in rows) == ["py_lim0", "py_lim1"]
    assert metric_rows(initech, "py_lim") == [
        {"code": "py_lim0", "name": "limited", "unit": "t"},
        {"code": "py_lim1", "name": "limited", "unit": "t"},
        {"code": "py_lim2", "name": "x", "unit": "t"},
    ]


def test_limited_delete_with_order_and_limit(initech):
    initech.from_("metrics").insert(
        [{"code": f"py_ldel{i}", "name": "x", "unit": "t"} for i in range(3)]
    ).execute()
    rows = initech.from_("metrics").delete().like("code", "py_ldel%").order("id", desc=True).limit(1).execute().data
    assert [r["code"] for r in rows] == ["py_ldel2"]
    assert codes(metric_rows(initech, "py_ldel")) == ["py_ldel0", "py_ldel1"]


def test_204_responses_have_no_content_type(initech):
    initech.from_("metrics").insert({"code": "py_204", "name": "x", "unit": "t"}).execute()
    initech.from_("metrics").update({"name": "y"}, returning=ReturnMethod.minimal).eq("code", "py_204").execute()
    assert initech.rec.status == 204
    assert "content-type" not in initech.rec.last.headers
    initech.from_("metrics").delete(returning=ReturnMethod.minimal).eq("code", "py_204").execute()
    assert initech.rec.status == 204
    assert "content-type" not in initech.rec.last.headers
    initech.rpc("noop", {}).execute()
    assert initech.rec.status == 204
    assert "content-type" not in initech.rec.last.headers
