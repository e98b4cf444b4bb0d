//! `/health`: Kuroko agents' own health ([`crate::ingest::agents`]).

use maud::{html, Markup};

use super::pages::{document, Nav};
use crate::ingest::agents::{AgentHealth, METRICS};

/// `/health`: each Kuroko agent's own health, as it last reported it
/// (cumulative since the agent started), the agents with trouble first.
pub(crate) fn page(agents: &[AgentHealth], now_minute: i64) -> Markup {
    const TROUBLE: [&str; 4] = [
        "kuroko.agent.export.dropped_points",
        "kuroko.agent.export.rejected_points",
        "kuroko.agent.export.failures",
        "kuroko.agent.dropped_errors",
    ];
    let trouble = |a: &AgentHealth| TROUBLE.iter().any(|m| a.value(m).is_some_and(|v| v > 0.0));
    let mut rows: Vec<&AgentHealth> = agents.iter().collect();
    rows.sort_by_key(|a| !trouble(a));
    let label = |metric: &str| metric.trim_start_matches("kuroko.agent.").replace(['.', '_'], " ");
    let body = html! {
        p {
            "What each Kuroko agent says about itself with every export (" code { "kuroko.agent.*" } "): "
            "counts since the agent started, as of its latest export. Points dropped mean its export "
            "buffer was full (the reporter was slow or unreachable); rejected points were refused by the reporter."
        }
        @if rows.is_empty() {
            p.empty { "No agent has reported yet." }
        } @else {
            table.health {
                thead { tr {
                    th { "service" } th { "host" } th { "instance" } th { "environment" }
                    @for metric in METRICS { th.num { (label(metric)) } }
                    th.num { "last heard" }
                } }
                tbody {
                    @for agent in rows {
                        tr class=[trouble(agent).then_some("trouble")] {
                            td { (agent.service) } td { (agent.host) } td { (agent.instance) } td { (agent.environment) }
                            @for metric in METRICS {
                                td.num data-metric=(metric) {
                                    @match agent.value(metric) {
                                        Some(value) => (value),
                                        None => "–",
                                    }
                                }
                            }
                            td.num { ({
                                let minutes = now_minute - (agent.time_unix_nano / 60_000_000_000) as i64;
                                if minutes <= 0 { "this minute".to_owned() } else { format!("{minutes} min ago") }
                            }) }
                        }
                    }
                }
            }
        }
    };
    document("Agents", Nav::Health, body)
}
