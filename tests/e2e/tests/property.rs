//! Property test with an oracle: random tenants (with a hierarchy and some
//! suspended), random rows in the demo schema, and random reads and writes by
//! random actors (member bound, member set by uuid or slug, viewer, analyst,
//! no context; with and without a DBA's mistaken GRANTs to viewer and
//! analyst). An in-test model says exactly which rows each actor may see and
//! change; every statement's result must match it, and after each case the
//! whole database (read by the superuser) must equal the model: nothing
//! outside the allowed set is ever seen or changed.

use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestCaseError, TestRunner};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use tenancy_e2e::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Table {
    Orgs,
    Entities,
    Metrics,
    Points,
}

const TABLES: [Table; 4] = [Table::Orgs, Table::Entities, Table::Metrics, Table::Points];

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Orgs => "esg.organisations",
            Table::Entities => "esg.reporting_entities",
            Table::Metrics => "esg.metrics",
            Table::Points => "esg.data_points",
        }
    }
    fn hierarchical(self) -> bool {
        self != Table::Metrics
    }
    /// A key that matches no row.
    fn missing_key(self) -> &'static str {
        match self {
            Table::Entities => "00000000-0000-0000-0000-000000000000",
            _ => "0",
        }
    }
    /// Superuser read of every row: key, tenant, payload, org, entity, metric.
    fn dump_sql(self) -> &'static str {
        match self {
            Table::Orgs => "SELECT id::text, tenant_id, name, NULL::text, NULL::text, NULL::text FROM esg.organisations",
            Table::Entities => {
                "SELECT id::text, tenant_id, name, organisation_id::text, NULL::text, NULL::text FROM esg.reporting_entities"
            }
            Table::Metrics => "SELECT id::text, tenant_id, name, NULL::text, NULL::text, NULL::text FROM esg.metrics",
            Table::Points => {
                "SELECT id::text, tenant_id, value::text, NULL::text, entity_id::text, metric_id::text FROM esg.data_points"
            }
        }
    }
}

fn table_strategy() -> impl Strategy<Value = Table> {
    prop_oneof![
        Just(Table::Orgs),
        Just(Table::Entities),
        Just(Table::Metrics),
        Just(Table::Points)
    ]
}

#[derive(Debug, Clone)]
struct TenantSpec {
    parent: Option<usize>,
    suspended: bool,
    orgs: usize,
    entities: usize,
    metrics: usize,
    points: usize,
}

/// A tenant of the case (index, taken modulo the tenant count) or a uuid
/// that is no tenant.
#[derive(Debug, Clone, Copy)]
enum Target {
    Tenant(usize),
    Unknown,
}

#[derive(Debug, Clone, Copy)]
enum Filter {
    All,
    Tenant(Target),
    /// A row of any tenant, picked from the model by index.
    Id(usize),
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Select(Table, Filter),
    Update(Table, Filter),
    /// UPDATE ... SET tenant_id = target
    Move(Table, Filter, Target),
    Delete(Table, Filter),
    /// INSERT with an explicit tenant_id (Some) or the column default (None);
    /// the usize picks the referenced rows.
    Insert(Table, Option<Target>, usize),
}

#[derive(Debug, Clone, Copy)]
enum Actor {
    /// One of three member logins bound to a tenant; `guc` is what it sets
    /// in tenancy.tenant_id anyway (must have no effect).
    MemberBound { slot: usize, guc: Option<Target> },
    /// An unbound member that sets tenancy.tenant_id (uuid or slug).
    MemberSet { tenant: usize, by_slug: bool },
    /// A viewer login bound to a tenant.
    Viewer,
    /// An analyst login bound to a tenant.
    Analyst,
    /// An unbound member that never sets a tenant.
    NoContext,
}

#[derive(Debug, Clone)]
struct Case {
    tenants: Vec<TenantSpec>,
    bindings: [usize; 3],
    viewer_tenant: usize,
    analyst_tenant: usize,
    mistaken_grants: bool,
    ops: Vec<(Actor, Action)>,
}

fn target_strategy() -> impl Strategy<Value = Target> {
    prop_oneof![8 => any::<usize>().prop_map(Target::Tenant), 1 => Just(Target::Unknown)]
}

fn filter_strategy() -> impl Strategy<Value = Filter> {
    prop_oneof![
        1 => Just(Filter::All),
        2 => target_strategy().prop_map(Filter::Tenant),
        3 => any::<usize>().prop_map(Filter::Id),
    ]
}

fn action_strategy() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (table_strategy(), filter_strategy()).prop_map(|(t, f)| Action::Select(t, f)),
        2 => (table_strategy(), filter_strategy()).prop_map(|(t, f)| Action::Update(t, f)),
        2 => (table_strategy(), filter_strategy(), target_strategy()).prop_map(|(t, f, x)| Action::Move(t, f, x)),
        2 => (table_strategy(), filter_strategy()).prop_map(|(t, f)| Action::Delete(t, f)),
        3 => (table_strategy(), prop::option::of(target_strategy()), any::<usize>())
            .prop_map(|(t, x, r)| Action::Insert(t, x, r)),
    ]
}

fn actor_strategy() -> impl Strategy<Value = Actor> {
    prop_oneof![
        4 => (0..3usize, prop::option::weighted(0.4, target_strategy()))
            .prop_map(|(slot, guc)| Actor::MemberBound { slot, guc }),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(tenant, by_slug)| Actor::MemberSet { tenant, by_slug }),
        1 => Just(Actor::Viewer),
        1 => Just(Actor::Analyst),
        1 => Just(Actor::NoContext),
    ]
}

fn case_strategy() -> impl Strategy<Value = Case> {
    let tenant = (
        prop::option::weighted(0.5, any::<usize>()),
        prop::bool::weighted(0.15),
        0..3usize,
        0..3usize,
        0..3usize,
        0..6usize,
    );
    (
        prop::collection::vec(tenant, 2..=5),
        [any::<usize>(), any::<usize>(), any::<usize>()],
        any::<usize>(),
        any::<usize>(),
        any::<bool>(),
        prop::collection::vec((actor_strategy(), action_strategy()), 1..=14),
    )
        .prop_map(
            |(ts, bindings, viewer_tenant, analyst_tenant, mistaken_grants, ops)| Case {
                tenants: ts
                    .into_iter()
                    .enumerate()
                    .map(
                        |(i, (p, suspended, orgs, entities, metrics, points))| TenantSpec {
                            // Parents come earlier, so the registry is a forest.
                            parent: p.filter(|_| i > 0).map(|p| p % i),
                            suspended,
                            orgs,
                            entities,
                            metrics,
                            points,
                        },
                    )
                    .collect(),
                bindings,
                viewer_tenant,
                analyst_tenant,
                mistaken_grants,
                ops,
            },
        )
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    tenant: Uuid,
    payload: String,
    org: Option<String>,
    entity: Option<String>,
    metric: Option<String>,
}

/// The oracle: the registry and every row, as they must be.
struct Model {
    ids: Vec<Uuid>,
    slugs: Vec<String>,
    parents: Vec<Option<usize>>,
    active: Vec<bool>,
    rows: BTreeMap<Table, BTreeMap<String, Row>>,
}

/// What to apply to the model when the statement did what the oracle said
/// (gets the new row's key for inserts).
type Apply = Box<dyn FnOnce(&mut Model, Option<String>)>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Rows(BTreeSet<String>),
    Count(u64),
    /// One row inserted (its key is recorded separately).
    Inserted,
    Error(String),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Member,
    Viewer,
    Analyst,
}

impl Model {
    fn tenant(&self, t: usize) -> usize {
        t % self.ids.len()
    }

    fn target(&self, x: Target, unknown: Uuid) -> Uuid {
        match x {
            Target::Tenant(t) => self.ids[self.tenant(t)],
            Target::Unknown => unknown,
        }
    }

    /// The tenant (index) whose context the actor has, if any.
    fn context(&self, case: &Case, actor: Actor) -> Option<usize> {
        let t = match actor {
            Actor::MemberBound { slot, .. } => self.tenant(case.bindings[slot]),
            Actor::MemberSet { tenant, .. } => self.tenant(tenant),
            Actor::Viewer => self.tenant(case.viewer_tenant),
            Actor::Analyst => self.tenant(case.analyst_tenant),
            Actor::NoContext => return None,
        };
        self.active[t].then_some(t)
    }

    /// `t` and all its descendants.
    fn subtree(&self, t: usize) -> BTreeSet<Uuid> {
        let mut out: BTreeSet<usize> = BTreeSet::from([t]);
        loop {
            let more: Vec<usize> = (0..self.ids.len())
                .filter(|c| !out.contains(c) && self.parents[*c].is_some_and(|p| out.contains(&p)))
                .collect();
            if more.is_empty() {
                break;
            }
            out.extend(more);
        }
        out.into_iter().map(|i| self.ids[i]).collect()
    }

    fn id_key(&self, table: Table, pick: usize) -> String {
        let keys: Vec<&String> = self.rows[&table].keys().collect();
        if keys.is_empty() {
            table.missing_key().to_string()
        } else {
            keys[pick % keys.len()].clone()
        }
    }

    fn matches(&self, table: Table, f: Filter, key: &str, row: &Row, unknown: Uuid) -> bool {
        match f {
            Filter::All => true,
            Filter::Tenant(x) => row.tenant == self.target(x, unknown),
            Filter::Id(pick) => key == self.id_key(table, pick),
        }
    }

    fn where_sql(&self, table: Table, f: Filter, unknown: Uuid) -> String {
        match f {
            Filter::All => String::new(),
            Filter::Tenant(x) => format!(" WHERE tenant_id = '{}'", self.target(x, unknown)),
            Filter::Id(pick) => format!(" WHERE id = '{}'", self.id_key(table, pick)),
        }
    }

    /// Keys of `tenant`'s rows matching the filter.
    fn matching(
        &self,
        table: Table,
        f: Filter,
        tenants: &BTreeSet<Uuid>,
        unknown: Uuid,
    ) -> BTreeSet<String> {
        self.rows[&table]
            .iter()
            .filter(|(k, r)| tenants.contains(&r.tenant) && self.matches(table, f, k, r, unknown))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Would deleting `keys` of `table` leave a row pointing at one of them?
    fn referenced(&self, table: Table, keys: &BTreeSet<String>) -> bool {
        let refs = |t: Table, get: fn(&Row) -> &Option<String>| {
            self.rows[&t]
                .values()
                .any(|r| get(r).as_ref().is_some_and(|k| keys.contains(k)))
        };
        match table {
            Table::Orgs => refs(Table::Entities, |r| &r.org),
            Table::Entities => refs(Table::Points, |r| &r.entity),
            Table::Metrics => refs(Table::Points, |r| &r.metric),
            Table::Points => false,
        }
    }

    /// A key of `tenant`'s rows in `table`, or a key that does not exist.
    fn ref_key(&self, table: Table, tenant: Option<Uuid>, pick: usize) -> (String, bool) {
        let keys: Vec<&String> = self.rows[&table]
            .iter()
            .filter(|(_, r)| Some(r.tenant) == tenant)
            .map(|(k, _)| k)
            .collect();
        if keys.is_empty() {
            let missing = match table {
                Table::Entities => Uuid::new_v4().to_string(),
                _ => "-1".to_string(),
            };
            (missing, false)
        } else {
            (keys[pick % keys.len()].clone(), true)
        }
    }
}

/// The long-lived parts of the run: the database and one connection per login.
struct Env {
    db: TestDb,
    bound: Vec<(String, Client)>,
    set: Client,
    viewer: (String, Client),
    analyst: (String, Client),
    none: Client,
    unknown: Uuid,
    serial: AtomicUsize,
    cases: AtomicUsize,
    stats: std::sync::Mutex<BTreeMap<&'static str, usize>>,
}

impl Env {
    async fn new() -> Env {
        let db = TestDb::new("property").await;
        let mut bound = Vec::new();
        for i in 0..3 {
            let r = db.login(&format!("bound{i}"), &[MEMBER]).await;
            let c = db.connect_as(&r).await;
            bound.push((r, c));
        }
        let r = db.login("setter", &[MEMBER]).await;
        let set = db.connect_as(&r).await;
        let r = db.login("viewer", &[VIEWER]).await;
        let viewer = (r.clone(), db.connect_as(&r).await);
        let r = db.login("analyst", &[ANALYST]).await;
        let analyst = (r.clone(), db.connect_as(&r).await);
        let r = db.login("nocontext", &[MEMBER]).await;
        let none = db.connect_as(&r).await;
        db.exec("INSERT INTO esg.units (code, name) VALUES ('MWh', 'megawatt hours') ON CONFLICT DO NOTHING")
            .await;
        Env {
            db,
            bound,
            set,
            viewer,
            analyst,
            none,
            unknown: Uuid::new_v4(),
            serial: AtomicUsize::new(0),
            cases: AtomicUsize::new(0),
            stats: Default::default(),
        }
    }

    fn note(&self, what: &'static str) {
        *self.stats.lock().unwrap().entry(what).or_default() += 1;
    }

    fn next(&self) -> usize {
        self.serial.fetch_add(1, Ordering::SeqCst)
    }

    fn clients(&self) -> Vec<&Client> {
        let mut v: Vec<&Client> = self.bound.iter().map(|(_, c)| c).collect();
        v.extend([&self.set, &self.viewer.1, &self.analyst.1, &self.none]);
        v
    }

    /// Reset the database to the case's tenants and rows; returns the model.
    async fn setup(&self, case: &Case) -> Result<Model, TestCaseError> {
        let n = self.cases.fetch_add(1, Ordering::SeqCst);
        let grants = if case.mistaken_grants {
            "GRANT SELECT, INSERT, UPDATE, DELETE ON esg.organisations, esg.reporting_entities, esg.metrics, \
             esg.data_points TO tenancy_viewer, tenancy_analyst;"
        } else {
            "REVOKE INSERT, UPDATE, DELETE ON esg.organisations, esg.reporting_entities, esg.metrics, \
             esg.data_points FROM tenancy_viewer; REVOKE ALL ON esg.organisations, esg.reporting_entities, \
             esg.metrics, esg.data_points FROM tenancy_analyst;"
        };
        self.db
            .exec(&format!(
                "TRUNCATE esg.data_points, esg.reporting_entities, esg.metrics, esg.organisations; \
                 DELETE FROM tenancy.role_bindings; DELETE FROM tenancy.tenants; {grants}"
            ))
            .await;
        for c in self.clients() {
            c.batch_execute("RESET tenancy.tenant_id")
                .await
                .map_err(fail)?;
        }
        let mut model = Model {
            ids: vec![],
            slugs: vec![],
            parents: vec![],
            active: vec![],
            rows: TABLES.iter().map(|t| (*t, BTreeMap::new())).collect(),
        };
        for (i, spec) in case.tenants.iter().enumerate() {
            let slug = format!("c{n}-t{i}");
            let parent = spec.parent.map(|p| model.slugs[p].clone());
            let id = self.db.create_tenant(&slug, parent.as_deref()).await;
            model.ids.push(id);
            model.slugs.push(slug);
            model.parents.push(spec.parent);
            model.active.push(!spec.suspended);
        }
        let admin = &self.db.admin;
        for (i, spec) in case.tenants.iter().enumerate() {
            let t = model.ids[i];
            let mut orgs = vec![];
            for k in 0..spec.orgs {
                let name = format!("org {i}.{k}");
                let row = admin
                    .query_one(
                        "INSERT INTO esg.organisations (tenant_id, name) VALUES ($1, $2) RETURNING id::text",
                        &[&t, &name],
                    )
                    .await
                    .map_err(fail)?;
                let key: String = row.get(0);
                orgs.push(key.clone());
                model.rows.get_mut(&Table::Orgs).unwrap().insert(
                    key,
                    Row {
                        tenant: t,
                        payload: name,
                        org: None,
                        entity: None,
                        metric: None,
                    },
                );
            }
            let mut entities = vec![];
            for k in 0..if orgs.is_empty() { 0 } else { spec.entities } {
                let name = format!("entity {i}.{k}");
                let org = &orgs[k % orgs.len()];
                let row = admin
                    .query_one(
                        &format!(
                            "INSERT INTO esg.reporting_entities (tenant_id, organisation_id, name) \
                             VALUES ($1, {org}, $2) RETURNING id::text"
                        ),
                        &[&t, &name],
                    )
                    .await
                    .map_err(fail)?;
                let key: String = row.get(0);
                entities.push(key.clone());
                model.rows.get_mut(&Table::Entities).unwrap().insert(
                    key,
                    Row {
                        tenant: t,
                        payload: name,
                        org: Some(org.clone()),
                        entity: None,
                        metric: None,
                    },
                );
            }
            let mut metrics = vec![];
            for k in 0..spec.metrics {
                let name = format!("metric {i}.{k}");
                let row = admin
                    .query_one(
                        "INSERT INTO esg.metrics (tenant_id, code, name, unit) VALUES ($1, $2, $2, 'MWh') \
                         RETURNING id::text",
                        &[&t, &name],
                    )
                    .await
                    .map_err(fail)?;
                let key: String = row.get(0);
                metrics.push(key.clone());
                model.rows.get_mut(&Table::Metrics).unwrap().insert(
                    key,
                    Row {
                        tenant: t,
                        payload: name,
                        org: None,
                        entity: None,
                        metric: None,
                    },
                );
            }
            if !entities.is_empty() && !metrics.is_empty() {
                for k in 0..spec.points {
                    let (e, m) = (&entities[k % entities.len()], &metrics[k % metrics.len()]);
                    let row = admin
                        .query_one(
                            &format!(
                                "INSERT INTO esg.data_points (tenant_id, entity_id, metric_id, period, value) \
                                 VALUES ($1, '{e}', {m}, '2025-01-01', {k}) RETURNING id::text"
                            ),
                            &[&t],
                        )
                        .await
                        .map_err(fail)?;
                    model.rows.get_mut(&Table::Points).unwrap().insert(
                        row.get(0),
                        Row {
                            tenant: t,
                            payload: k.to_string(),
                            org: None,
                            entity: Some(e.clone()),
                            metric: Some(m.clone()),
                        },
                    );
                }
            }
        }
        for (i, spec) in case.tenants.iter().enumerate() {
            if spec.suspended {
                admin
                    .execute("SELECT tenancy.suspend_tenant($1)", &[&model.slugs[i]])
                    .await
                    .map_err(fail)?;
            }
        }
        for (slot, (role, _)) in self.bound.iter().enumerate() {
            self.db
                .bind(role, model.ids[model.tenant(case.bindings[slot])])
                .await;
        }
        self.db
            .bind(&self.viewer.0, model.ids[model.tenant(case.viewer_tenant)])
            .await;
        self.db
            .bind(
                &self.analyst.0,
                model.ids[model.tenant(case.analyst_tenant)],
            )
            .await;
        Ok(model)
    }

    /// Compare the whole database with the model.
    async fn verify_state(&self, model: &Model, when: &str) -> Result<(), TestCaseError> {
        for t in TABLES {
            let rows = self.db.admin.query(t.dump_sql(), &[]).await.map_err(fail)?;
            let actual: BTreeMap<String, Row> = rows
                .iter()
                .map(|r| {
                    (
                        r.get::<_, String>(0),
                        Row {
                            tenant: r.get(1),
                            payload: r.get(2),
                            org: r.get(3),
                            entity: r.get(4),
                            metric: r.get(5),
                        },
                    )
                })
                .collect();
            if actual != model.rows[&t] {
                let expected = &model.rows[&t];
                let extra: Vec<_> = actual
                    .iter()
                    .filter(|(k, v)| expected.get(*k) != Some(*v))
                    .collect();
                let missing: Vec<_> = expected
                    .iter()
                    .filter(|(k, v)| actual.get(*k) != Some(*v))
                    .collect();
                return Err(TestCaseError::fail(format!(
                    "{when}: {} differs from the oracle\n  in the database only: {extra:?}\n  in the oracle only: {missing:?}",
                    t.name()
                )));
            }
        }
        Ok(())
    }

    /// Run one statement as the actor and compare with the oracle.
    async fn run_op(
        &self,
        case: &Case,
        model: &mut Model,
        actor: Actor,
        action: Action,
    ) -> Result<(), TestCaseError> {
        let unknown = self.unknown;
        let (client, kind) = match actor {
            Actor::MemberBound { slot, guc } => {
                let c = &self.bound[slot].1;
                match guc {
                    Some(x) => {
                        c.execute(
                            "SELECT set_config('tenancy.tenant_id', $1, false)",
                            &[&model.target(x, unknown).to_string()],
                        )
                        .await
                        .map_err(fail)?;
                    }
                    None => c
                        .batch_execute("RESET tenancy.tenant_id")
                        .await
                        .map_err(fail)?,
                }
                (c, Kind::Member)
            }
            Actor::MemberSet { tenant, by_slug } => {
                let t = model.tenant(tenant);
                let value = if by_slug {
                    model.slugs[t].clone()
                } else {
                    model.ids[t].to_string()
                };
                self.set
                    .execute(
                        "SELECT set_config('tenancy.tenant_id', $1, false)",
                        &[&value],
                    )
                    .await
                    .map_err(fail)?;
                (&self.set, Kind::Member)
            }
            Actor::Viewer => (&self.viewer.1, Kind::Viewer),
            Actor::Analyst => (&self.analyst.1, Kind::Analyst),
            Actor::NoContext => (&self.none, Kind::Member),
        };
        let ctx = model.context(case, actor);
        let ctx_id = ctx.map(|t| model.ids[t]);
        let actual_ctx = current_tenant(client).await;
        if actual_ctx != ctx_id {
            return Err(TestCaseError::fail(format!(
                "{actor:?}: current_tenant() is {actual_ctx:?}, the oracle says {ctx_id:?}"
            )));
        }
        let own: BTreeSet<Uuid> = ctx_id.into_iter().collect();
        let grants = case.mistaken_grants;
        let denied = || Outcome::Error("42501".into());

        // The oracle's answer, the SQL, and what to apply to the model on success.
        let (sql, expected, apply): (String, Outcome, Option<Apply>) = match action {
            Action::Select(table, f) => {
                let sql = format!(
                    "SELECT id::text FROM {}{}",
                    table.name(),
                    model.where_sql(table, f, unknown)
                );
                let expected = match kind {
                    Kind::Analyst if !grants => denied(),
                    Kind::Analyst => Outcome::Rows(BTreeSet::new()),
                    _ => {
                        let visible = match ctx {
                            None => BTreeSet::new(),
                            Some(t) if table.hierarchical() => model.subtree(t),
                            Some(_) => own.clone(),
                        };
                        Outcome::Rows(model.matching(table, f, &visible, unknown))
                    }
                };
                (sql, expected, None)
            }
            Action::Update(table, f) => {
                let set = if table == Table::Points {
                    "value = value + 1"
                } else {
                    "name = name || '+'"
                };
                let sql = format!(
                    "UPDATE {} SET {set}{}",
                    table.name(),
                    model.where_sql(table, f, unknown)
                );
                match kind {
                    Kind::Viewer | Kind::Analyst if !grants => (sql, denied(), None),
                    Kind::Viewer | Kind::Analyst => (sql, Outcome::Count(0), None),
                    Kind::Member => {
                        let keys = model.matching(table, f, &own, unknown);
                        let expected = Outcome::Count(keys.len() as u64);
                        let apply = Box::new(move |m: &mut Model, _: Option<String>| {
                            for k in keys {
                                let r = m.rows.get_mut(&table).unwrap().get_mut(&k).unwrap();
                                if table == Table::Points {
                                    r.payload = (r.payload.parse::<i64>().unwrap() + 1).to_string();
                                } else {
                                    r.payload.push('+');
                                }
                            }
                        });
                        (sql, expected, Some(apply as Apply))
                    }
                }
            }
            Action::Move(table, f, x) => {
                let to = model.target(x, unknown);
                let sql = format!(
                    "UPDATE {} SET tenant_id = '{to}'{}",
                    table.name(),
                    model.where_sql(table, f, unknown)
                );
                let expected = match kind {
                    Kind::Viewer | Kind::Analyst if !grants => denied(),
                    Kind::Viewer | Kind::Analyst => Outcome::Count(0),
                    Kind::Member => {
                        let keys = model.matching(table, f, &own, unknown);
                        if !keys.is_empty() && Some(to) != ctx_id {
                            denied()
                        } else {
                            Outcome::Count(keys.len() as u64)
                        }
                    }
                };
                (sql, expected, None)
            }
            Action::Delete(table, f) => {
                let sql = format!(
                    "DELETE FROM {}{}",
                    table.name(),
                    model.where_sql(table, f, unknown)
                );
                match kind {
                    Kind::Viewer | Kind::Analyst if !grants => (sql, denied(), None),
                    Kind::Viewer | Kind::Analyst => (sql, Outcome::Count(0), None),
                    Kind::Member => {
                        let keys = model.matching(table, f, &own, unknown);
                        if model.referenced(table, &keys) {
                            (sql, Outcome::Error("23503".into()), None)
                        } else {
                            let expected = Outcome::Count(keys.len() as u64);
                            let apply = Box::new(move |m: &mut Model, _: Option<String>| {
                                for k in keys {
                                    m.rows.get_mut(&table).unwrap().remove(&k);
                                }
                            });
                            (sql, expected, Some(apply as Apply))
                        }
                    }
                }
            }
            Action::Insert(table, x, pick) => {
                let explicit = x.map(|x| model.target(x, unknown));
                // The row's tenant: the explicit one, else the column default.
                let owner = explicit.or(ctx_id);
                let (tcol, tval) = match explicit {
                    Some(t) => ("tenant_id, ", format!("'{t}', ")),
                    None => ("", String::new()),
                };
                let label = format!("ins{}", self.next());
                let (cols, vals, refs_ok, org, entity, metric, payload) = match table {
                    Table::Orgs => (
                        "name",
                        format!("'{label}'"),
                        true,
                        None,
                        None,
                        None,
                        label.clone(),
                    ),
                    Table::Entities => {
                        let (o, ok) = model.ref_key(Table::Orgs, owner, pick);
                        (
                            "organisation_id, name",
                            format!("{o}, '{label}'"),
                            ok,
                            Some(o),
                            None,
                            None,
                            label.clone(),
                        )
                    }
                    Table::Metrics => (
                        "code, name, unit",
                        format!("'{label}', '{label}', 'MWh'"),
                        true,
                        None,
                        None,
                        None,
                        label.clone(),
                    ),
                    Table::Points => {
                        let (e, ok1) = model.ref_key(Table::Entities, owner, pick);
                        let (m, ok2) = model.ref_key(Table::Metrics, owner, pick / 7);
                        let v = (pick % 1000).to_string();
                        (
                            "entity_id, metric_id, period, value",
                            format!("'{e}', {m}, '2025-06-01', {v}"),
                            ok1 && ok2,
                            None,
                            Some(e),
                            Some(m),
                            v,
                        )
                    }
                };
                let sql = format!(
                    "INSERT INTO {} ({tcol}{cols}) VALUES ({tval}{vals}) RETURNING id::text, tenant_id",
                    table.name()
                );
                let expected = match kind {
                    Kind::Viewer | Kind::Analyst => denied(),
                    Kind::Member => match ctx_id {
                        None => denied(),
                        Some(t) if owner != Some(t) => denied(),
                        Some(_) if !refs_ok => Outcome::Error("23503".into()),
                        Some(_) => Outcome::Inserted,
                    },
                };
                let apply = Box::new(move |m: &mut Model, key: Option<String>| {
                    if let (Some(key), Some(t)) = (key, owner) {
                        m.rows.get_mut(&table).unwrap().insert(
                            key,
                            Row {
                                tenant: t,
                                payload,
                                org,
                                entity,
                                metric,
                            },
                        );
                    }
                });
                (sql, expected, Some(apply as Apply))
            }
        };

        // Coverage: did this statement aim at rows the actor must not reach?
        let all: BTreeSet<Uuid> = model.ids.iter().copied().collect();
        match action {
            Action::Select(t, f)
            | Action::Update(t, f)
            | Action::Delete(t, f)
            | Action::Move(t, f, _) => {
                let reachable = match &expected {
                    Outcome::Rows(r) => r.len(),
                    Outcome::Count(n) => *n as usize,
                    _ => 0,
                };
                if model.matching(t, f, &all, unknown).len() > reachable {
                    self.note(match action {
                        Action::Select(..) => "select aimed at forbidden rows",
                        _ => "write aimed at forbidden rows",
                    });
                }
                if reachable > 0 {
                    self.note("statement reached allowed rows");
                }
            }
            Action::Insert(..) => {}
        }
        if let (Action::Select(t, _), Some(c)) = (action, ctx) {
            if t.hierarchical() && model.subtree(c).len() > 1 {
                self.note("select by a parent tenant");
            }
        }
        match &expected {
            Outcome::Error(code) if code == "42501" => self.note("refused (42501)"),
            Outcome::Error(_) => self.note("foreign key error"),
            Outcome::Inserted => self.note("row inserted"),
            _ => {}
        }
        let mut new_key = None;
        let actual = match action {
            Action::Select(..) => match client.query(&sql, &[]).await {
                Ok(rows) => Outcome::Rows(rows.iter().map(|r| r.get::<_, String>(0)).collect()),
                Err(e) => Outcome::Error(sqlstate(&e).unwrap_or("?").to_string()),
            },
            Action::Insert(..) => match client.query(&sql, &[]).await {
                Ok(rows) => {
                    if rows.len() != 1 {
                        return Err(TestCaseError::fail(format!(
                            "{sql}: inserted {} rows",
                            rows.len()
                        )));
                    }
                    let t: Uuid = rows[0].get(1);
                    if Some(t) != ctx_id {
                        return Err(TestCaseError::fail(format!(
                            "{actor:?}: {sql} created a row of {t}, but the context is {ctx_id:?}"
                        )));
                    }
                    new_key = Some(rows[0].get::<_, String>(0));
                    Outcome::Inserted
                }
                Err(e) => Outcome::Error(sqlstate(&e).unwrap_or("?").to_string()),
            },
            _ => match client.execute(&sql, &[]).await {
                Ok(n) => Outcome::Count(n),
                Err(e) => Outcome::Error(sqlstate(&e).unwrap_or("?").to_string()),
            },
        };
        if actual != expected {
            return Err(TestCaseError::fail(format!(
                "{actor:?} (context {ctx_id:?}, mistaken grants {grants}) ran\n  {sql}\n  \
                 expected {expected:?}\n  got      {actual:?}"
            )));
        }
        if let Some(apply) = apply {
            apply(model, new_key);
        }
        Ok(())
    }

    async fn run_case(&self, case: &Case) -> Result<(), TestCaseError> {
        let mut model = self.setup(case).await?;
        self.verify_state(&model, "after setup").await?;
        for (actor, action) in &case.ops {
            self.run_op(case, &mut model, *actor, *action).await?;
        }
        self.verify_state(&model, "after the case").await
    }
}

fn fail(e: PgError) -> TestCaseError {
    TestCaseError::fail(describe(&e))
}

#[test]
fn random_actors_never_see_or_change_rows_outside_their_allowed_set() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let env = rt.block_on(Env::new());
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let mut runner = TestRunner::new(PtConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..PtConfig::default()
    });
    let result = runner.run(&case_strategy(), |case| rt.block_on(env.run_case(&case)));
    let ran = env.cases.load(Ordering::SeqCst);
    let stats = env.stats.lock().unwrap().clone();
    drop(env);
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!("{ran} cases; coverage: {stats:?}");
    assert!(ran >= cases as usize, "ran {ran} cases");
    // The run must have exercised every kind of attempt, or it proves little.
    if cases >= 32 {
        for what in [
            "select aimed at forbidden rows",
            "write aimed at forbidden rows",
            "statement reached allowed rows",
            "select by a parent tenant",
            "refused (42501)",
            "foreign key error",
            "row inserted",
        ] {
            assert!(
                stats.get(what).copied().unwrap_or(0) > 0,
                "no case covered: {what} ({stats:?})"
            );
        }
    }
}
