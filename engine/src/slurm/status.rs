//! `status` and `why` while jobs are out: a stage whose latest job is still queued or running
//! shows that job's id, state and node.

use super::{queue, record};
use crate::plan::Plan;
use crate::report::{BatchJob, StageReport};
use crate::store::Store;

/// Adds the queued or running job of each stage to its report (nothing when none was submitted, or
/// Slurm cannot be asked).
pub(crate) fn annotate(plan: &Plan, store: &Store, reports: &mut [StageReport]) {
    let subs: Vec<(usize, record::Submission)> = (0..plan.stages.len())
        .filter_map(|i| Some((i, record::read_submission(store, &plan.name, &plan.stages[i].id)?)))
        .collect();
    if subs.is_empty() {
        return;
    }
    let ids: Vec<String> = subs.iter().map(|(_, s)| s.job.clone()).collect();
    let Ok(queued) = queue::queued(&ids) else { return };
    for (i, s) in subs {
        let Some(q) = queued.get(&s.job) else { continue };
        let r = &mut reports[i];
        let at = q.node.as_ref().map(|n| format!(" on {n}")).unwrap_or_default();
        r.reason =
            format!("job {} {}{at} (submitted {}); {}", s.job, q.state, s.submitted, r.reason);
        let log = record::job_log(store, &s.job).display().to_string();
        r.job = Some(BatchJob {
            id: s.job,
            state: q.state.clone(),
            node: q.node.clone(),
            exit: None,
            log: Some(log),
        });
    }
}
