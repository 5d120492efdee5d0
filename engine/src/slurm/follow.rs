//! Following submitted jobs to their end: each stage shown pending, running (job, node) or done.
//! A stage whose job fails or is cancelled takes its dependants with it (skipped, their jobs
//! cancelled); Ctrl-C cancels every job still queued or running.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::submit::{Job, Launch};
use super::{interrupt, queue, record};
use crate::plan::Plan;
use crate::progress::RunProgress;
use crate::report::{BatchJob, StageReport, StageStatus};
use crate::store::Store;

/// How often the queue is asked.
const POLL: Duration = Duration::from_millis(500);

/// How long a job that left the queue may take to show its result (a shared filesystem's caches).
const RESULT_GRACE: Duration = Duration::from_secs(20);

/// A job being followed.
struct Watch {
    job: Job,
    /// The state last shown.
    shown: String,
    node: Option<String>,
    /// When it was first missing from the queue.
    gone: Option<Instant>,
}

/// Follows the jobs of `launch` until each has ended; one report per stage, in plan order.
pub(crate) fn follow(
    plan: &Plan,
    store: &Store,
    launch: Launch,
    progress: &RunProgress,
) -> Vec<StageReport> {
    let Launch { mut reports, jobs } = launch;
    let catch = interrupt::Catch::install();
    let mut open: BTreeMap<usize, Watch> = jobs
        .into_iter()
        .map(|(i, job)| (i, Watch { job, shown: String::new(), node: None, gone: None }))
        .collect();
    let mut ran: Vec<usize> = Vec::new();
    let mut complaint = String::new();
    while !open.is_empty() {
        if interrupt::interrupted() {
            cancel_all(plan, &mut open, &mut reports, progress);
            break;
        }
        let ids: Vec<String> = open.values().map(|w| w.job.id.clone()).collect();
        let queued = match queue::queued(&ids) {
            Ok(q) => q,
            Err(e) => {
                if e != complaint {
                    progress.println(&format!("cannot ask Slurm about the jobs (retrying): {e}"));
                    complaint = e;
                }
                pause();
                continue;
            }
        };
        let mut ended = Vec::new();
        for (&i, w) in open.iter_mut() {
            let id = &plan.stages[i].id;
            if let Some(q) = queued.get(&w.job.id) {
                w.node = q.node.clone().or(w.node.take());
                if q.state != w.shown {
                    let at = w.node.as_ref().map(|n| format!(" on {n}")).unwrap_or_default();
                    progress.println(&format!(
                        "[{id}] {} (job {}{at})",
                        q.state.to_lowercase(),
                        w.job.id
                    ));
                    w.shown = q.state.clone();
                }
            } else if let Some(r) = result(store, w, id, plan.stages[i].kind) {
                ended.push((i, r));
            }
        }
        for (i, mut r) in ended {
            open.remove(&i);
            if r.status == StageStatus::Cached {
                if let Some(up) = plan.upstream(i).into_iter().find(|u| ran.contains(u)) {
                    r.reason =
                        format!("early cutoff: {} reran with identical output", plan.stages[up].id);
                }
            }
            progress.println(&format!("[{}] {}", r.id, outcome(&r)));
            match r.status {
                StageStatus::Ran => ran.push(i),
                StageStatus::Failed => skip_downstream(plan, i, &mut open, &mut reports, progress),
                _ => {}
            }
            reports[i] = Some(r);
        }
        if !open.is_empty() {
            pause();
        }
    }
    drop(catch);
    reports.into_iter().map(|r| r.expect("every stage reported")).collect()
}

/// Sleeps one poll, waking early for Ctrl-C.
fn pause() {
    let until = Instant::now() + POLL;
    while Instant::now() < until && !interrupt::interrupted() {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The report of a job that left the queue: what it wrote, else how Slurm says it ended; `None`
/// while its result may still be on its way.
fn result(store: &Store, w: &mut Watch, id: &str, kind: &str) -> Option<StageReport> {
    if let Some(r) = record::read_result(store, &w.job.id) {
        return Some(r);
    }
    let ended = queue::ended(&w.job.id);
    let gone = *w.gone.get_or_insert_with(Instant::now);
    let (state, exit) = match ended {
        Some(e) if e.state != "COMPLETED" => (e.state, Some(e.exit)),
        _ if gone.elapsed() < RESULT_GRACE => return None,
        Some(e) => (format!("{} without a result", e.state), Some(e.exit)),
        None => ("ENDED without a result".to_string(), None),
    };
    let log = record::job_log(store, &w.job.id).display().to_string();
    let exit_text = exit.as_ref().map(|x| format!(", exit {x}")).unwrap_or_default();
    let reason = format!("job {} {state}{exit_text}; log {log}", w.job.id);
    let mut r = StageReport::new(id, kind, StageStatus::Failed, reason, w.job.key.clone());
    r.job =
        Some(BatchJob { id: w.job.id.clone(), state, node: w.node.clone(), exit, log: Some(log) });
    Some(r)
}

/// `ran in 3.1s (job 12 on node3)` and the like.
fn outcome(r: &StageReport) -> String {
    let job = r.job.as_ref().map(|j| {
        let at = j.node.as_ref().map(|n| format!(" on {n}")).unwrap_or_default();
        format!(" (job {}{at})", j.id)
    });
    let job = job.unwrap_or_default();
    match r.status {
        StageStatus::Ran => format!("ran in {:.1}s{job}", r.seconds),
        StageStatus::Failed => format!("failed: {}", r.reason),
        s => format!("{}{job}: {}", s.as_str(), r.reason),
    }
}

/// Marks the stages downstream of failed stage `i` skipped and cancels their jobs.
fn skip_downstream(
    plan: &Plan,
    i: usize,
    open: &mut BTreeMap<usize, Watch>,
    reports: &mut [Option<StageReport>],
    progress: &RunProgress,
) {
    let below: Vec<usize> =
        open.keys().copied().filter(|&j| plan.ancestors_and_self(j)[i]).collect();
    let mut cancel = Vec::new();
    for j in below {
        let w = open.remove(&j).expect("open");
        let ps = &plan.stages[j];
        let why = format!("input {} failed", plan.stages[i].id);
        progress.println(&format!("[{}] skipped: {why} (job {} cancelled)", ps.id, w.job.id));
        let mut r = StageReport::new(&ps.id, ps.kind, StageStatus::Skipped, why, w.job.key);
        r.job = Some(BatchJob {
            id: w.job.id.clone(),
            state: "CANCELLED".into(),
            ..Default::default()
        });
        reports[j] = Some(r);
        cancel.push(w.job.id);
    }
    queue::cancel(&cancel);
}

/// Ctrl-C: cancels every job still open and reports its stage failed.
fn cancel_all(
    plan: &Plan,
    open: &mut BTreeMap<usize, Watch>,
    reports: &mut [Option<StageReport>],
    progress: &RunProgress,
) {
    let ids: Vec<String> = open.values().map(|w| w.job.id.clone()).collect();
    queue::cancel(&ids);
    progress.println(&format!("interrupted: cancelled jobs {}", ids.join(", ")));
    for (i, w) in std::mem::take(open) {
        let ps = &plan.stages[i];
        let why = format!("cancelled (Ctrl-C): job {}", w.job.id);
        let mut r = StageReport::new(&ps.id, ps.kind, StageStatus::Failed, why, w.job.key);
        r.job = Some(BatchJob {
            id: w.job.id,
            state: "CANCELLED".into(),
            node: w.node,
            ..Default::default()
        });
        reports[i] = Some(r);
    }
}
