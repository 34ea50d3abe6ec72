"""The async client (AsyncPostgrestClient, as supabase-py's AsyncClient uses
it), on the library's own default httpx.AsyncClient. Each test runs its
coroutine with asyncio.run."""

import asyncio

import pytest
from lib import async_client, member_token
from postgrest import APIError, CountMethod


def run(coro):
    return asyncio.run(coro)


def test_async_select_with_embed_and_order():
    async def main():
        async with async_client(member_token("globex")) as c:
            res = await (
                c.from_("organisations")
                .select("name,reporting_entities(name)")
                .order("name")
                .order("name", foreign_table="reporting_entities")
                .execute()
            )
            return res.data

    assert run(main()) == [
        {
            "name": "Globex Energy",
            "reporting_entities": [{"name": "Globex Energy site 2"}, {"name": "Globex Energy site 4"}],
        },
        {
            "name": "Globex Energy Operations",
            "reporting_entities": [{"name": "Globex Energy site 1"}, {"name": "Globex Energy site 3"}],
        },
    ]


def test_async_count_single_maybe_single():
    async def main():
        async with async_client(member_token("globex")) as c:
            head = await c.from_("data_points").select("*", count=CountMethod.exact, head=True).execute()
            one = await c.from_("metrics").select("code,unit").eq("code", "water").single().execute()
            none = await c.from_("metrics").select("code").eq("code", "nope").maybe_single().execute()
            return head.count, one.data, none

    assert run(main()) == (240, {"code": "water", "unit": "m3"}, None)


def test_async_write_roundtrip():
    async def main():
        async with async_client(member_token("initech")) as c:
            ins = await c.from_("metrics").insert({"code": "py_async", "name": "A", "unit": "t"}).select("code,name").execute()
            upd = await c.from_("metrics").update({"name": "B"}).eq("code", "py_async").select("name").execute()
            up = await (
                c.from_("metrics")
                .upsert({"code": "py_async", "name": "C", "unit": "t"}, on_conflict="tenant_id,code")
                .select("name")
                .execute()
            )
            dele = await c.from_("metrics").delete().eq("code", "py_async").select("code,name").execute()
            left = await c.from_("metrics").select("code").eq("code", "py_async").execute()
            return ins.data, upd.data, up.data, dele.data, left.data

    assert run(main()) == (
        [{"code": "py_async", "name": "A"}],
        [{"name": "B"}],
        [{"name": "C"}],
        [{"code": "py_async", "name": "C"}],
        [],
    )


def test_async_rpc():
    async def main():
        async with async_client(member_token("globex")) as c:
            s = await c.rpc("add", {"a": 2, "b": 3}).execute()
            g = await c.rpc("add", {"a": 2}, get=True).execute()
            rows = await c.rpc("entities_of", {"k": "office"}).select("name").order("name").execute()
            return s.data, g.data, rows.data

    assert run(main()) == (5, 4, [{"name": "Globex Energy site 1"}, {"name": "Globex Energy site 4"}])


def test_async_errors():
    async def main():
        async with async_client(member_token("globex")) as c:
            errs = []
            for builder in (
                c.from_("metrics").select("nope"),
                c.from_("metrics").insert({"code": "scope1", "name": "dup", "unit": "t"}),
                c.rpc("fail", {"code": "P0001"}),
            ):
                with pytest.raises(APIError) as info:
                    await builder.execute()
                errs.append((info.value.code, info.value.hint))
            return errs

    assert run(main()) == [("42703", None), ("23505", None), ("P0001", "a hint")]


def test_async_concurrent_requests_stay_in_their_tenant():
    async def main():
        clients = {t: async_client(member_token(t)) for t in ("globex", "initech", "acme-europe")}
        try:
            jobs = []
            for k in range(30):
                t = ("globex", "initech", "acme-europe")[k % 3]
                jobs.append((t, clients[t].from_("organisations").select("name").order("name").execute()))
            results = await asyncio.gather(*(j for _, j in jobs))
            return [(t, [r["name"] for r in res.data]) for (t, _), res in zip(jobs, results)]
        finally:
            for c in clients.values():
                await c.aclose()

    prefix = {"globex": "Globex Energy", "initech": "Initech Software", "acme-europe": "Acme Europe GmbH"}
    for t, names in run(main()):
        assert names == [prefix[t], prefix[t] + " Operations"], (t, names)
