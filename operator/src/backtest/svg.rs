//! The backtest as a chart: usage per pod over time against the water
//! marks, with a marker at each action and, for a predicting policy, dashed lines where
//! growing pods were projected to reach their limit. Hand-written SVG; pure.

use std::fmt::Write;

use jiff::Timestamp;

use super::Step;
use super::report::max_usage;
use memory_engine::{Action, Policy};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 420.0;
/// Room for the % labels on the left, the legend on the right, times below.
const LEFT: f64 = 56.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 44.0;
/// A legend line's height; pods beyond what fits are counted, not listed.
const LEGEND_LINE: f64 = 16.0;
const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// Time tick spacings in milliseconds a reader counts in, finest first; the
/// finest that gives at most seven ticks is used.
const TICKS: [i64; 16] = [
    SECOND,
    5 * SECOND,
    10 * SECOND,
    15 * SECOND,
    30 * SECOND,
    MINUTE,
    5 * MINUTE,
    10 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    7 * DAY,
];
/// Tableau 10: distinct to most eyes, including the common colour blindnesses.
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// The chart of a replay, about 960 pixels wide.
pub fn render(policy: &Policy, steps: &[Step]) -> String {
    let projections = projections(steps);
    let chart = Chart::new(steps, &projections);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"20\" font-size=\"13\">Memory usage per pod, % of the limit</text>\n"
    );
    chart.axes(&mut svg);
    for (name, ratio) in [
        ("low", policy.low),
        ("high", policy.high),
        ("critical", policy.critical),
    ] {
        let y = chart.y(ratio);
        let _ = writeln!(
            svg,
            "<line class=\"mark\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" \
             stroke=\"#888\" stroke-dasharray=\"6 4\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#555\">{name} {:.0}%</text>",
            WIDTH - RIGHT,
            LEFT + 4.0,
            y - 3.0,
            ratio * 100.0
        );
    }
    let pods: Vec<&str> = max_usage(steps).into_keys().collect();
    for (i, pod) in pods.iter().enumerate() {
        let points: Vec<String> = steps
            .iter()
            .filter_map(|s| {
                let ratio = s.usage.get(*pod)?;
                Some(format!("{:.1},{:.1}", chart.x(s.at), chart.y(*ratio)))
            })
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"><title>{}</title></polyline>",
            PALETTE[i % PALETTE.len()],
            points.join(" "),
            escape(pod)
        );
    }
    for projection in &projections {
        let colour = pods
            .iter()
            .position(|pod| *pod == projection.pod)
            .map_or("#888", |i| PALETTE[i % PALETTE.len()]);
        // Cut where the chart ends, at the usage the line has reached by then.
        let to = projection.to.min(chart.end());
        let (from, usage) = projection.from;
        let share = to.duration_since(from).as_secs_f64()
            / projection.to.duration_since(from).as_secs_f64().max(1e-9);
        let reached = usage + (1.0 - usage) * share;
        let _ = writeln!(
            svg,
            "<line class=\"projection\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" \
             stroke=\"{colour}\" stroke-width=\"1.5\" stroke-dasharray=\"3 3\"><title>{}</title></line>",
            chart.x(from),
            chart.y(usage),
            chart.x(to),
            chart.y(reached),
            escape(&format!(
                "{} at {from}: projected to reach its limit at {}",
                projection.pod,
                projection
                    .to
                    .round(jiff::Unit::Second)
                    .unwrap_or(projection.to)
            ))
        );
    }
    for step in steps {
        if let Some(action) = &step.action {
            let x = chart.x(step.at);
            // Near the right edge (closer than a long label) the label goes left of its marker.
            let (label_x, anchor) = if x > WIDTH - RIGHT - 60.0 {
                (x - 2.0, "end")
            } else {
                (x + 2.0, "start")
            };
            let _ = writeln!(
                svg,
                "<line class=\"action\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{:.1}\" \
                 stroke=\"#c00\" stroke-width=\"1\"><title>{}</title></line>\n\
                 <text x=\"{label_x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" fill=\"#c00\" \
                 font-size=\"10\">{}</text>",
                HEIGHT - BOTTOM,
                escape(&format!("{}: {action}", step.at)),
                TOP + 10.0,
                label(action)
            );
        }
    }
    legend(&mut svg, &pods, !projections.is_empty());
    svg.push_str("</svg>\n");
    svg
}

/// A pod's growth as the engine projected it at one step: from its usage then to its limit.
struct Projection<'a> {
    pod: &'a str,
    from: (Timestamp, f64),
    to: Timestamp,
}

/// The projections worth drawing: those of the leaks at each step that acted, and every
/// growing pod's at the last step, where it was heading when the history ends.
fn projections(steps: &[Step]) -> Vec<Projection<'_>> {
    let acted = steps
        .iter()
        .filter(|s| s.action.is_some())
        .map(|s| (s, true));
    let last = steps.last().map(|s| (s, false));
    acted
        .chain(last)
        .flat_map(|(step, leaks_only)| {
            step.trends.iter().filter_map(move |(pod, trend)| {
                let to = trend
                    .limit_at
                    .filter(|_| trend.leak_suspected || !leaks_only)?;
                let usage = *step.usage.get(pod)?;
                Some(Projection {
                    pod: pod.as_str(),
                    from: (step.at, usage),
                    to,
                })
            })
        })
        .collect()
}

/// Maps time and usage onto the plot area.
struct Chart {
    first: Timestamp,
    span_ms: f64,
    /// The top of the % axis: 100%, or the next 20% above a pod that went over its limit.
    top: f64,
}

impl Chart {
    /// Spans the steps, and past them by up to a third for where the projections lead.
    fn new(steps: &[Step], projections: &[Projection]) -> Self {
        let first = steps.first().map_or(Timestamp::UNIX_EPOCH, |s| s.at);
        let last = steps.last().map_or(first, |s| s.at);
        let beyond = last + last.duration_since(first) / 3;
        let last = projections
            .iter()
            .map(|p| p.to.min(beyond))
            .fold(last, Timestamp::max);
        let highest = steps
            .iter()
            .flat_map(|s| s.usage.values().copied())
            .fold(1.0, f64::max);
        Chart {
            first,
            span_ms: (last.as_millisecond() - first.as_millisecond()).max(1) as f64,
            top: (highest * 5.0).ceil() / 5.0,
        }
    }

    /// The last time shown.
    fn end(&self) -> Timestamp {
        self.first + std::time::Duration::from_millis(self.span_ms as u64)
    }

    fn x(&self, at: Timestamp) -> f64 {
        let offset = (at.as_millisecond() - self.first.as_millisecond()) as f64;
        LEFT + offset / self.span_ms * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, ratio: f64) -> f64 {
        let clamped = ratio.clamp(0.0, self.top);
        HEIGHT - BOTTOM - clamped / self.top * (HEIGHT - TOP - BOTTOM)
    }

    /// The plot frame, % ticks every 20 points, and time ticks on round times.
    fn axes(&self, svg: &mut String) {
        let (bottom, right) = (HEIGHT - BOTTOM, WIDTH - RIGHT);
        let _ = writeln!(
            svg,
            "<path d=\"M{LEFT},{TOP} V{bottom} H{right}\" fill=\"none\" stroke=\"#333\"/>"
        );
        let mut percent = 0;
        while f64::from(percent) <= self.top * 100.0 + 0.5 {
            let y = self.y(f64::from(percent) / 100.0);
            let _ = writeln!(
                svg,
                "<line x1=\"{:.1}\" x2=\"{LEFT}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#333\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{percent}%</text>",
                LEFT - 4.0,
                LEFT - 6.0,
                y + 4.0
            );
            percent += 20;
        }
        // Days apart, the date matters; within a day, the time of day does.
        let format = if self.span_ms > DAY as f64 {
            "%m-%d %H:%M"
        } else {
            "%H:%M:%S"
        };
        let every = TICKS
            .into_iter()
            .find(|every| self.span_ms / *every as f64 <= 7.0)
            .unwrap_or(7 * DAY);
        let first = self.first.as_millisecond();
        let mut tick = (first + every - 1).div_euclid(every) * every;
        while (tick - first) as f64 <= self.span_ms {
            let at = Timestamp::from_millisecond(tick).unwrap_or(self.first);
            let x = self.x(at);
            let _ = writeln!(
                svg,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{bottom}\" y2=\"{:.1}\" stroke=\"#333\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                bottom + 4.0,
                bottom + 16.0,
                at.strftime(format)
            );
            tick += every;
        }
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">time (UTC)</text>",
            LEFT + (right - LEFT) / 2.0,
            bottom + 32.0
        );
    }
}

/// The pods' colours, and what a dashed line is when there are `projections`.
fn legend(svg: &mut String, pods: &[&str], projections: bool) {
    let x = WIDTH - RIGHT + 12.0;
    let fits = ((HEIGHT - TOP - BOTTOM) / LEGEND_LINE) as usize - 1 - usize::from(projections);
    let shown = if pods.len() > fits + 1 {
        fits
    } else {
        pods.len()
    };
    for (i, pod) in pods.iter().take(shown).enumerate() {
        let y = TOP + 8.0 + LEGEND_LINE * i as f64;
        let _ = writeln!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"3\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{y:.1}\">{}</text>",
            y - 5.0,
            PALETTE[i % PALETTE.len()],
            x + 16.0,
            escape(pod)
        );
    }
    let mut line = shown;
    if shown < pods.len() {
        let y = TOP + 8.0 + LEGEND_LINE * line as f64;
        let _ = writeln!(
            svg,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" fill=\"#555\">and {} more pods</text>",
            pods.len() - shown
        );
        line += 1;
    }
    if projections {
        let y = TOP + 8.0 + LEGEND_LINE * line as f64;
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#555\" \
             stroke-width=\"1.5\" stroke-dasharray=\"3 3\"/>\
             <text x=\"{:.1}\" y=\"{y:.1}\" fill=\"#555\">projected to the limit</text>",
            x + 12.0,
            y - 4.0,
            y - 4.0,
            x + 16.0
        );
    }
}

/// A marker's few words.
fn label(action: &Action) -> String {
    match action {
        Action::Evict { pods } if pods.len() > 1 => format!("evict {}", pods.len()),
        Action::ScaleTo { from, to } => format!("scale {from}→{to}"),
        _ => action.kind().names().label.to_owned(),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, time::Duration};

    use super::*;
    use memory_engine::Policy;

    fn step(second: u64, usage: &[(&str, f64)], action: Option<Action>) -> Step {
        Step {
            at: Timestamp::from_second(1_750_000_000).unwrap() + Duration::from_secs(second),
            usage: usage
                .iter()
                .map(|(pod, r)| ((*pod).to_owned(), *r))
                .collect(),
            replicas: 2,
            action,
            held_back: None,
            throttled: false,
            metrics_available: true,
            metrics_message: String::new(),
            high: false,
            high_since: None,
            critical: Vec::new(),
            critical_since: BTreeMap::new(),
            trends: BTreeMap::new(),
            reasons: Vec::new(),
        }
    }

    #[test]
    fn the_chart_has_a_line_per_pod_three_marks_and_a_marker_per_action() {
        let evict = || {
            Some(Action::Evict {
                pods: vec!["web<1>".into()],
            })
        };
        let steps = [
            step(0, &[("web<1>", 0.5), ("web-\"2\"", 0.4)], None),
            step(15, &[("web<1>", 0.97), ("web-\"2\"", 0.4)], evict()),
            step(
                30,
                &[("web<1>", 1.02)],
                Some(Action::ScaleTo { from: 2, to: 3 }),
            ),
            step(45, &[("web-3", 0.2)], evict()),
        ];
        let svg = render(&Policy::test(), &steps);

        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert_eq!(svg.matches("class=\"mark\"").count(), 3);
        assert_eq!(svg.matches("class=\"action\"").count(), 3);
        assert!(svg.contains("web&lt;1&gt;") && svg.contains("web-&quot;2&quot;"));
        assert!(!svg.contains("web<1>") && !svg.contains("web-\"2\""));
        assert!(svg.contains(">critical 95%<") && svg.contains(">120%<"));
    }

    #[test]
    fn an_empty_replay_still_draws_the_frame() {
        let svg = render(&Policy::test(), &[]);
        assert!(svg.starts_with("<svg") && !svg.contains("<polyline"));
    }
}
