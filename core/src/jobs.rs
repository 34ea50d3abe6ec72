//! Asynchronous calls (`Prefer: respond-async`, RFC 7240): the proxy answers
//! `202 Accepted` and runs the call in the background as a *job*. This module
//! is the job registry's pure part: the state machine, who may see a job,
//! how many may run, how long finished ones are kept, and the parsing of the
//! extension's `tenancy progress: …` notices. The proxy (`proxy/src/jobs.rs`)
//! owns the connections, the clock and the HTTP side.

use crate::postgrest::prefer::Preferences;
use std::collections::{HashMap, VecDeque};

/// The start of every progress notice the extension raises.
pub const PROGRESS_PREFIX: &str = "tenancy progress: ";

/// Progress entries (and other notices) kept per job: the most recent ones.
pub const KEEP_NOTICES: usize = 100;

/// The preference that asks for an asynchronous call.
pub const RESPOND_ASYNC: &str = "respond-async";

/// Whether `Prefer: respond-async` was asked for and `applies` (a call the
/// proxy can run as a job). Where it applies it is a known preference (no
/// PGRST122 with `handling=strict`); elsewhere it stays an unknown one,
/// ignored unless `handling=strict`, as PostgREST does.
pub fn respond_async(p: &mut Preferences, applies: bool) -> bool {
    let asked = p.invalid.iter().any(|i| i == RESPOND_ASYNC);
    if asked && applies {
        p.invalid.retain(|i| i != RESPOND_ASYNC);
    }
    asked && applies
}

/// Who started a job: only the same identity may read or cancel it. Every
/// part must be equal: the JWT `role` claim (the role the call ran as), its
/// `tenant_id` claim as sent (a slug and the tenant's uuid are different
/// owners) and its `sub` claim (absent on both sides counts as equal, so
/// tokens without `sub` share their jobs with every token of the same role
/// and tenant). Anonymous callers own nothing: the proxy refuses them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    pub role: String,
    pub tenant: Option<String>,
    pub sub: Option<String>,
}

/// A job's state. `Running` is the only state that changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    /// How a call that ended decides its status: an error with SQLSTATE
    /// 57014 (`query_canceled`) after a cancel request is a cancellation;
    /// any other error a failure, even if a cancel was asked for (it came too
    /// late, or something else went wrong first); success is success.
    pub fn of_end(error_code: Option<&str>, cancel_requested: bool) -> Status {
        match error_code {
            None => Status::Succeeded,
            Some("57014") if cancel_requested => Status::Cancelled,
            Some(_) => Status::Failed,
        }
    }
}

/// One `tenancy progress: [unit ]done/total: message` notice. A notice with
/// the prefix but another shape keeps its text as the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// `table`, `tenant`, … (the word before `done/total`).
    pub unit: Option<String>,
    pub done: Option<u64>,
    pub total: Option<u64>,
    pub message: String,
}

/// The progress in a notice's message, or `None` when it is not a progress notice.
pub fn parse_progress(notice: &str) -> Option<Progress> {
    let rest = notice.strip_prefix(PROGRESS_PREFIX)?;
    let free = || Progress {
        unit: None,
        done: None,
        total: None,
        message: rest.to_string(),
    };
    let (head, message) = match rest.split_once(": ") {
        Some((h, m)) => (h, m),
        None => match rest.strip_suffix(':') {
            Some(h) => (h, ""),
            None => (rest, ""),
        },
    };
    let (unit, frac) = match head.rsplit_once(' ') {
        Some((u, f)) => (Some(u.trim()), f),
        None => (None, head),
    };
    let Some((done, total)) = frac.split_once('/') else {
        return Some(free());
    };
    let (Ok(done), Ok(total)) = (done.parse::<u64>(), total.parse::<u64>()) else {
        return Some(free());
    };
    Some(Progress {
        unit: unit.filter(|u| !u.is_empty()).map(str::to_string),
        done: Some(done),
        total: Some(total),
        message: message.to_string(),
    })
}

/// A notice that is not progress (`WARNING: …`, `NOTICE: …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub severity: String,
    pub message: String,
}

/// One job. `D` is what the runtime attaches (connection cancel token,
/// result); the registry never looks inside.
#[derive(Debug)]
pub struct Job<D> {
    pub id: String,
    pub function: String,
    pub owner: Owner,
    /// The fairness group (the tenant): how many jobs one group runs at
    /// once, and keeps finished, is capped so it cannot crowd out others.
    pub group: String,
    pub status: Status,
    /// Milliseconds since the Unix epoch.
    pub started_at: u64,
    pub finished_at: Option<u64>,
    /// The last [`KEEP_NOTICES`] progress entries.
    pub progress: VecDeque<Progress>,
    /// How many progress notices arrived in all.
    pub progress_count: u64,
    /// The last [`KEEP_NOTICES`] other notices.
    pub notices: VecDeque<Notice>,
    pub notice_count: u64,
    pub cancel_requested: bool,
    pub data: D,
}

impl<D> Job<D> {
    /// Record one notice raised by the job's session.
    pub fn note(&mut self, severity: &str, message: &str) {
        match parse_progress(message) {
            Some(p) => {
                self.progress_count += 1;
                push_capped(&mut self.progress, p);
            }
            None => {
                self.notice_count += 1;
                push_capped(
                    &mut self.notices,
                    Notice {
                        severity: severity.to_string(),
                        message: message.to_string(),
                    },
                );
            }
        }
    }
}

fn push_capped<T>(q: &mut VecDeque<T>, item: T) {
    if q.len() == KEEP_NOTICES {
        q.pop_front();
    }
    q.push_back(item);
}

/// Why a job could not start: `max` jobs run already, in all
/// (`per_group == false`) or in the job's group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    pub max: usize,
    pub per_group: bool,
}

/// Every known job: running ones, and finished ones until their time to
/// live has passed. Caps, so one group (tenant) cannot starve the others:
/// at most `max_running` jobs run, at most `max_running_per_group` of one
/// group; at most `max_finished_per_group` finished jobs of a group are kept
/// (its oldest go first), and at most `max_finished` in all (the oldest of
/// the group keeping the most go first, so a busy group evicts its own).
#[derive(Debug)]
pub struct Registry<D> {
    jobs: HashMap<String, Job<D>>,
    max_running: usize,
    max_running_per_group: usize,
    ttl_ms: u64,
    max_finished: usize,
    max_finished_per_group: usize,
}

impl<D> Registry<D> {
    /// No per-group caps (see [`Registry::per_group`]).
    pub fn new(max_running: usize, ttl_ms: u64, max_finished: usize) -> Self {
        Registry {
            jobs: HashMap::new(),
            max_running,
            max_running_per_group: usize::MAX,
            ttl_ms,
            max_finished,
            max_finished_per_group: usize::MAX,
        }
    }

    /// Cap what one group runs at once and keeps finished (`0`: no cap).
    pub fn per_group(mut self, max_running: usize, max_finished: usize) -> Self {
        let cap = |n: usize| if n == 0 { usize::MAX } else { n };
        self.max_running_per_group = cap(max_running);
        self.max_finished_per_group = cap(max_finished);
        self
    }

    /// Jobs of `group` running now.
    pub fn running_in(&self, group: &str) -> usize {
        self.jobs
            .values()
            .filter(|j| j.status == Status::Running && j.group == group)
            .count()
    }

    pub fn running(&self) -> usize {
        self.jobs
            .values()
            .filter(|j| j.status == Status::Running)
            .count()
    }

    pub fn max_running(&self) -> usize {
        self.max_running
    }

    /// Register a running job of `group`, unless `max_running` jobs run
    /// already, or `max_running_per_group` of that group.
    pub fn start(
        &mut self,
        id: &str,
        function: &str,
        owner: Owner,
        group: &str,
        data: D,
        now: u64,
    ) -> Result<(), Full> {
        self.expire(now);
        if self.running() >= self.max_running {
            return Err(Full {
                max: self.max_running,
                per_group: false,
            });
        }
        if self.running_in(group) >= self.max_running_per_group {
            return Err(Full {
                max: self.max_running_per_group,
                per_group: true,
            });
        }
        self.jobs.insert(
            id.to_string(),
            Job {
                id: id.to_string(),
                function: function.to_string(),
                owner,
                group: group.to_string(),
                status: Status::Running,
                started_at: now,
                finished_at: None,
                progress: VecDeque::new(),
                progress_count: 0,
                notices: VecDeque::new(),
                notice_count: 0,
                cancel_requested: false,
                data,
            },
        );
        Ok(())
    }

    /// The job, if `owner` started it and it has not expired. Another
    /// identity sees `None`, exactly as for an unknown id.
    pub fn get(&mut self, id: &str, owner: &Owner, now: u64) -> Option<&mut Job<D>> {
        self.expire(now);
        self.jobs.get_mut(id).filter(|j| &j.owner == owner)
    }

    /// The job whatever its owner (for the runtime that runs it).
    pub fn job_mut(&mut self, id: &str) -> Option<&mut Job<D>> {
        self.jobs.get_mut(id)
    }

    /// Ask to cancel `owner`'s job: `Some(true)` when it is running (the
    /// caller then cancels its statement), `Some(false)` when it has already
    /// ended, `None` when unknown to this owner.
    pub fn request_cancel(&mut self, id: &str, owner: &Owner, now: u64) -> Option<bool> {
        let job = self.get(id, owner, now)?;
        if job.status != Status::Running {
            return Some(false);
        }
        job.cancel_requested = true;
        Some(true)
    }

    /// Mark every running job as to be cancelled (shutdown); their ids.
    pub fn request_cancel_all(&mut self) -> Vec<String> {
        self.jobs
            .values_mut()
            .filter(|j| j.status == Status::Running)
            .map(|j| {
                j.cancel_requested = true;
                j.id.clone()
            })
            .collect()
    }

    /// End a running job. `false` (and no change) if it is unknown or
    /// already ended: a job ends once.
    pub fn finish(&mut self, id: &str, status: Status, now: u64) -> bool {
        if status == Status::Running {
            return false;
        }
        match self.jobs.get_mut(id) {
            Some(j) if j.status == Status::Running => {
                j.status = status;
                j.finished_at = Some(now);
                true
            }
            _ => false,
        }
    }

    /// Forget a job at once (a call that failed before it started running).
    pub fn remove(&mut self, id: &str) -> Option<Job<D>> {
        self.jobs.remove(id)
    }

    /// Forget finished jobs older than the time to live, then the oldest
    /// finished ones of a group beyond `max_finished_per_group`, then, while
    /// more than `max_finished` are kept, the oldest of the group keeping
    /// the most.
    pub fn expire(&mut self, now: u64) {
        let ttl = self.ttl_ms;
        self.jobs
            .retain(|_, j| j.finished_at.is_none_or(|f| now.saturating_sub(f) < ttl));
        let mut groups: HashMap<&str, Vec<(u64, &str)>> = HashMap::new();
        let mut total = 0usize;
        for j in self.jobs.values() {
            if let Some(f) = j.finished_at {
                groups.entry(&j.group).or_default().push((f, &j.id));
                total += 1;
            }
        }
        if total <= self.max_finished
            && groups
                .values()
                .all(|g| g.len() <= self.max_finished_per_group)
        {
            return;
        }
        let mut evict: Vec<String> = Vec::new();
        let mut queues: Vec<std::collections::VecDeque<(u64, &str)>> = groups
            .into_values()
            .map(|mut g| {
                g.sort_unstable();
                let excess = g.len().saturating_sub(self.max_finished_per_group);
                evict.extend(g.drain(..excess).map(|(_, id)| id.to_string()));
                total -= excess;
                g.into()
            })
            .collect();
        while total > self.max_finished {
            // the group keeping the most; between equals, the older job
            let Some(q) = queues
                .iter_mut()
                .filter(|q| !q.is_empty())
                .max_by(|a, b| a.len().cmp(&b.len()).then(b[0].cmp(&a[0])))
            else {
                break;
            };
            if let Some((_, id)) = q.pop_front() {
                evict.push(id.to_string());
            }
            total -= 1;
        }
        for id in evict {
            self.jobs.remove(&id);
        }
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

/// RFC 3339 UTC text of a time in milliseconds since the Unix epoch
/// (`2024-05-01T12:00:00.123Z`).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(role: &str, tenant: Option<&str>, sub: Option<&str>) -> Owner {
        Owner {
            role: role.into(),
            tenant: tenant.map(Into::into),
            sub: sub.map(Into::into),
        }
    }

    #[test]
    fn progress_with_unit() {
        let p =
            parse_progress("tenancy progress: table 3/10: copied 5 rows into esg.metrics").unwrap();
        assert_eq!(p.unit.as_deref(), Some("table"));
        assert_eq!((p.done, p.total), (Some(3), Some(10)));
        assert_eq!(p.message, "copied 5 rows into esg.metrics");
        let p = parse_progress("tenancy progress: tenant 2/2: provisioned south").unwrap();
        assert_eq!(p.unit.as_deref(), Some("tenant"));
        assert_eq!((p.done, p.total), (Some(2), Some(2)));
        assert_eq!(p.message, "provisioned south");
    }

    #[test]
    fn progress_without_unit_or_message() {
        let p = parse_progress("tenancy progress: 1/4: step one").unwrap();
        assert_eq!((p.unit, p.done, p.total), (None, Some(1), Some(4)));
        assert_eq!(p.message, "step one");
        let p = parse_progress("tenancy progress: 4/4").unwrap();
        assert_eq!((p.done, p.total), (Some(4), Some(4)));
        assert_eq!(p.message, "");
        // a message that itself contains ": " keeps it
        let p = parse_progress("tenancy progress: row 1/2: a: b").unwrap();
        assert_eq!(p.message, "a: b");
    }

    #[test]
    fn progress_free_text_and_others() {
        let p = parse_progress("tenancy progress: warming caches").unwrap();
        assert_eq!((p.done, p.total), (None, None));
        assert_eq!(p.message, "warming caches");
        let p = parse_progress("tenancy progress: table x/10: odd").unwrap();
        assert_eq!(p.done, None);
        assert_eq!(p.message, "table x/10: odd");
        assert_eq!(parse_progress("relation exists, skipping"), None);
        assert_eq!(parse_progress("Tenancy progress: 1/2: x"), None);
    }

    #[test]
    fn notes_are_capped_and_counted() {
        let mut r: Registry<()> = Registry::new(4, 1000, 10);
        let o = owner("r", Some("t"), None);
        r.start("a", "f", o.clone(), "g", (), 0).unwrap();
        let j = r.job_mut("a").unwrap();
        for i in 0..250 {
            j.note("NOTICE", &format!("tenancy progress: step {i}/250: x"));
        }
        j.note("WARNING", "something else");
        assert_eq!(j.progress_count, 250);
        assert_eq!(j.progress.len(), KEEP_NOTICES);
        assert_eq!(j.progress.front().unwrap().done, Some(150));
        assert_eq!(j.progress.back().unwrap().done, Some(249));
        assert_eq!(j.notice_count, 1);
        assert_eq!(j.notices[0].severity, "WARNING");
    }

    #[test]
    fn only_the_owner_sees_a_job() {
        let mut r: Registry<()> = Registry::new(4, 1000, 10);
        let o = owner("member", Some("acme"), Some("u1"));
        r.start("a", "f", o.clone(), "g", (), 0).unwrap();
        assert!(r.get("a", &o, 1).is_some());
        for other in [
            owner("member", Some("globex"), Some("u1")),
            owner("member", Some("acme"), Some("u2")),
            owner("member", Some("acme"), None),
            owner("admin", Some("acme"), Some("u1")),
            owner("member", None, Some("u1")),
        ] {
            assert!(r.get("a", &other, 1).is_none(), "{other:?}");
            assert_eq!(r.request_cancel("a", &other, 1), None, "{other:?}");
        }
        assert!(r.get("nope", &o, 1).is_none());
    }

    #[test]
    fn state_machine() {
        let mut r: Registry<()> = Registry::new(4, 1000, 10);
        let o = owner("r", None, Some("s"));
        r.start("a", "f", o.clone(), "g", (), 0).unwrap();
        assert!(!r.finish("a", Status::Running, 5));
        assert_eq!(r.request_cancel("a", &o, 5), Some(true));
        assert!(r.get("a", &o, 5).unwrap().cancel_requested);
        assert!(r.finish("a", Status::Cancelled, 6));
        // a job ends once
        assert!(!r.finish("a", Status::Succeeded, 7));
        let j = r.get("a", &o, 7).unwrap();
        assert_eq!(j.status, Status::Cancelled);
        assert_eq!(j.finished_at, Some(6));
        assert_eq!(r.request_cancel("a", &o, 8), Some(false));
        assert!(!r.finish("unknown", Status::Failed, 9));
    }

    #[test]
    fn end_status() {
        assert_eq!(Status::of_end(None, false), Status::Succeeded);
        assert_eq!(Status::of_end(None, true), Status::Succeeded);
        assert_eq!(Status::of_end(Some("57014"), true), Status::Cancelled);
        // a statement_timeout is 57014 too, but nobody asked to cancel
        assert_eq!(Status::of_end(Some("57014"), false), Status::Failed);
        assert_eq!(Status::of_end(Some("23505"), true), Status::Failed);
    }

    #[test]
    fn at_most_max_running() {
        let mut r: Registry<()> = Registry::new(2, 1000, 10);
        let o = owner("r", None, None);
        r.start("a", "f", o.clone(), "g", (), 0).unwrap();
        r.start("b", "f", o.clone(), "g", (), 0).unwrap();
        assert_eq!(
            r.start("c", "f", o.clone(), "g", (), 0),
            Err(Full {
                max: 2,
                per_group: false
            })
        );
        // finished jobs do not count
        r.finish("a", Status::Succeeded, 1);
        r.start("c", "f", o.clone(), "g", (), 1).unwrap();
        assert_eq!(r.running(), 2);
        r.request_cancel_all();
        assert!(r.get("b", &o, 1).unwrap().cancel_requested);
        assert!(r.get("c", &o, 1).unwrap().cancel_requested);
        assert!(!r.get("a", &o, 1).unwrap().cancel_requested);
    }

    #[test]
    fn finished_jobs_expire() {
        let mut r: Registry<()> = Registry::new(10, 1000, 2);
        let o = owner("r", None, None);
        r.start("a", "f", o.clone(), "g", (), 0).unwrap();
        r.start("b", "f", o.clone(), "g", (), 0).unwrap();
        r.finish("a", Status::Succeeded, 100);
        assert!(r.get("a", &o, 1099).is_some());
        assert!(r.get("a", &o, 1100).is_none());
        // running jobs never expire
        assert!(r.get("b", &o, 1_000_000).is_some());
        // beyond max_finished, the oldest finished go first
        for (i, id) in ["c", "d", "e"].iter().enumerate() {
            r.start(id, "f", o.clone(), "g", (), 2000).unwrap();
            r.finish(id, Status::Failed, 2000 + i as u64);
        }
        r.expire(2010);
        assert!(r.get("c", &o, 2010).is_none());
        assert!(r.get("d", &o, 2010).is_some());
        assert!(r.get("e", &o, 2010).is_some());
        assert_eq!(r.len(), 3);
        assert!(r.remove("b").is_some());
        assert_eq!(r.running(), 0);
    }

    #[test]
    fn one_group_cannot_take_every_slot() {
        let mut r: Registry<()> = Registry::new(4, 1000, 10).per_group(2, 0);
        let o = owner("r", Some("acme"), None);
        r.start("a1", "f", o.clone(), "acme", (), 0).unwrap();
        r.start("a2", "f", o.clone(), "acme", (), 0).unwrap();
        assert_eq!(
            r.start("a3", "f", o.clone(), "acme", (), 0),
            Err(Full {
                max: 2,
                per_group: true
            })
        );
        // another tenant still gets its slots, up to the global cap
        r.start("b1", "f", o.clone(), "globex", (), 0).unwrap();
        r.start("b2", "f", o.clone(), "globex", (), 0).unwrap();
        assert_eq!(
            r.start("c1", "f", o.clone(), "initech", (), 0),
            Err(Full {
                max: 4,
                per_group: false
            })
        );
        assert_eq!((r.running_in("acme"), r.running_in("globex")), (2, 2));
        r.finish("a1", Status::Succeeded, 1);
        r.start("a3", "f", o.clone(), "acme", (), 1).unwrap();
        // 0 = no per-group cap
        let mut r: Registry<()> = Registry::new(3, 1000, 10).per_group(0, 0);
        for id in ["x", "y", "z"] {
            r.start(id, "f", o.clone(), "acme", (), 0).unwrap();
        }
    }

    #[test]
    fn a_busy_group_evicts_its_own_finished_jobs() {
        let o = owner("r", None, None);
        let mut r: Registry<()> = Registry::new(100, 1_000_000, 6).per_group(0, 3);
        r.start("quiet", "f", o.clone(), "quiet", (), 0).unwrap();
        r.finish("quiet", Status::Succeeded, 1);
        // a busy tenant finishes many jobs after the quiet one's
        for i in 0..20u64 {
            let id = format!("busy{i}");
            r.start(&id, "f", o.clone(), "busy", (), 10 + i).unwrap();
            r.finish(&id, Status::Succeeded, 10 + i);
        }
        r.expire(100);
        assert!(
            r.job_mut("quiet").is_some(),
            "the quiet tenant's result survives"
        );
        let busy: Vec<_> = (0..20)
            .filter(|i| r.job_mut(&format!("busy{i}")).is_some())
            .collect();
        assert_eq!(busy, vec![17, 18, 19], "the busy tenant keeps its newest 3");
        // the global cap takes from the group keeping the most
        let mut r: Registry<()> = Registry::new(100, 1_000_000, 4).per_group(0, 0);
        for (id, g, t) in [
            ("q", "quiet", 1),
            ("b1", "busy", 2),
            ("b2", "busy", 3),
            ("b3", "busy", 4),
            ("b4", "busy", 5),
        ] {
            r.start(id, "f", o.clone(), g, (), t).unwrap();
            r.finish(id, Status::Succeeded, t);
        }
        r.expire(10);
        assert!(
            r.job_mut("q").is_some(),
            "the oldest, but its group keeps one"
        );
        assert!(r.job_mut("b1").is_none());
        assert_eq!(r.len(), 4);
    }

    proptest::proptest! {
        /// Whatever jobs start and finish, in whatever groups: the caps hold
        /// after every step, and a running job is never evicted.
        #[test]
        fn caps_hold(ops in proptest::collection::vec((0u8..4, 0u8..3, proptest::bool::ANY), 1..200)) {
            let o = owner("r", None, None);
            let mut r: Registry<()> = Registry::new(5, 1_000_000, 8).per_group(2, 4);
            let mut running: Vec<String> = Vec::new();
            for (n, (group, _, finish)) in ops.into_iter().enumerate() {
                let now = n as u64;
                let g = format!("g{group}");
                let id = format!("j{n}");
                if finish && !running.is_empty() {
                    let id = running.remove(0);
                    proptest::prop_assert!(r.finish(&id, Status::Succeeded, now));
                } else if r.start(&id, "f", o.clone(), &g, (), now).is_ok() {
                    running.push(id);
                }
                r.expire(now);
                proptest::prop_assert!(r.running() <= 5);
                for g in ["g0", "g1", "g2", "g3"] {
                    proptest::prop_assert!(r.running_in(g) <= 2);
                    let kept = r.jobs.values().filter(|j| j.group == g && j.finished_at.is_some()).count();
                    proptest::prop_assert!(kept <= 4);
                }
                proptest::prop_assert!(r.len() - r.running() <= 8);
                for id in &running {
                    proptest::prop_assert!(r.job_mut(id).is_some());
                }
            }
        }
    }

    #[test]
    fn respond_async_applies_only_where_known() {
        let mut p = Preferences::parse(["respond-async, handling=strict"], |_| false);
        assert!(!respond_async(&mut p.clone(), false));
        let mut q = p.clone();
        assert!(q.check_strict().is_err());
        assert!(respond_async(&mut p, true));
        assert!(p.check_strict().is_ok());
        let mut p = Preferences::parse(["return=minimal"], |_| false);
        assert!(!respond_async(&mut p, true));
        q = Preferences::parse(["respond-async"], |_| false);
        assert!(respond_async(&mut q, true));
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_714_564_800_123), "2024-05-01T12:00:00.123Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }
}
