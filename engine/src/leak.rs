//! The rule for leaks: a leak suspect (see `growth`) projected to reach its limit within the
//! policy's `horizon` is treated like a critical pod: `onCritical` applies to it (evicting only
//! it, normally) under the same cooldown, budget, disruption budget and dry run, and again only
//! after a full window of new evidence.

use super::facts::{Facts, ForCritical};
use super::{elapsed, human};

/// The leak suspects projected to reach their limit within the horizon, for `onCritical`;
/// each acted on again only after a full window of new evidence.
pub(super) fn due(f: &Facts, reasons: &mut Vec<String>) -> Option<ForCritical> {
    let prediction = f.policy.prediction?;
    let acted = f.policy.on_critical.kind();
    let mut pods = Vec::new();
    let mut said = Vec::new();
    for (pod, trend) in f.trends.iter().filter(|(_, t)| t.leak_suspected) {
        let Some(limit_at) = trend.limit_at else {
            continue;
        };
        let left = elapsed(f.now, limit_at);
        let projection = trend.describe(pod, f.now);
        if left > prediction.horizon {
            reasons.push(format!(
                "{projection}: a leak suspect, beyond the {} horizon",
                human(prediction.horizon)
            ));
            continue;
        }
        if let Some(last) = f.history.last_on(&[acted], pod)
            && elapsed(last, f.now) < prediction.window
        {
            reasons.push(format!(
                "{projection}: a leak suspect, acted on {} ago; waits for a full window ({}) of new evidence",
                human(elapsed(last, f.now)),
                human(prediction.window)
            ));
            continue;
        }
        said.push(projection);
        pods.push(pod.clone());
    }
    if pods.is_empty() {
        return None;
    }
    let list = said.join(", ");
    reasons.push(format!(
        "leak suspected, projected to reach the limit within the {} horizon: {list}",
        human(prediction.horizon)
    ));
    Some(ForCritical {
        pods,
        alarm: format!("memory leak suspected: {list}"),
    })
}
