//! What tokens cost: a price table per model (USD per million tokens) from
//! the providers' config, applied to the `TokensUsed` events of a run.

use std::collections::{BTreeMap, HashMap};

use crate::config::{Config, Price};
use crate::domain::event::TokensUsed;
use crate::domain::{Event, EventKind, TaskId, TokenUsage};

/// Every configured provider's prices, by model.
pub fn price_table(config: &Config) -> BTreeMap<String, Price> {
    config
        .providers
        .values()
        .flat_map(|p| p.prices.iter().map(|(m, price)| (m.clone(), *price)))
        .collect()
}

/// USD for `usage` at the model's price; `None` if the model has no price.
pub fn cost_usd(prices: &BTreeMap<String, Price>, model: &str, usage: &TokenUsage) -> Option<f64> {
    let price = prices.get(model)?;
    let uncached = usage
        .input
        .saturating_sub(usage.cached)
        .saturating_sub(usage.cache_write) as f64;
    Some(
        (uncached * price.input
            + usage.cached as f64 * price.cache_read()
            + usage.cache_write as f64 * price.cache_write()
            + usage.output as f64 * price.output)
            / 1_000_000.0,
    )
}

/// Running cost of a run, per task and in total.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Costs {
    pub total: f64,
    pub per_task: HashMap<TaskId, f64>,
    /// Whether any usage had a price; without prices costs are unknown, not zero.
    pub priced: bool,
}

impl Costs {
    pub fn add(&mut self, prices: &BTreeMap<String, Price>, event: &Event) {
        if let EventKind::TokensUsed(TokensUsed {
            task, model, usage, ..
        }) = &event.kind
            && let Some(cost) = cost_usd(prices, model, usage)
        {
            self.priced = true;
            self.total += cost;
            if let Some(task) = task {
                *self.per_task.entry(task.clone()).or_default() += cost;
            }
        }
    }

    pub fn of(prices: &BTreeMap<String, Price>, events: &[Event]) -> Self {
        let mut costs = Costs::default();
        for event in events {
            costs.add(prices, event);
        }
        costs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RunId;

    fn prices() -> BTreeMap<String, Price> {
        let mut prices = BTreeMap::new();
        prices.insert(
            "m".to_owned(),
            Price {
                input: 2.0,
                output: 10.0,
                cached_input: 0.5,
            },
        );
        prices
    }

    #[test]
    fn cost_uses_the_price_table() {
        let usage = TokenUsage {
            input: 1_000_000,
            output: 100_000,
            cached: 200_000,
            cache_write: 0,
        };
        let cost = cost_usd(&prices(), "m", &usage).unwrap();
        assert!((cost - (1.6 + 0.1 + 1.0)).abs() < 1e-9, "{cost}");
        assert!(cost_usd(&prices(), "other", &usage).is_none());
    }

    #[test]
    fn cache_writes_cost_more_and_reads_default_to_a_tenth() {
        let mut table = BTreeMap::new();
        table.insert(
            "claude".to_owned(),
            Price {
                input: 3.0,
                output: 15.0,
                cached_input: 0.0,
            },
        );
        // 1M prompt tokens: 100k fresh, 400k read from cache, 500k written.
        let usage = TokenUsage {
            input: 1_000_000,
            output: 0,
            cached: 400_000,
            cache_write: 500_000,
        };
        let cost = cost_usd(&table, "claude", &usage).unwrap();
        let expected = 0.1 * 3.0 + 0.4 * 0.3 + 0.5 * 3.75;
        assert!((cost - expected).abs() < 1e-9, "{cost} != {expected}");
    }

    #[test]
    fn costs_add_up_per_task_and_run() {
        let used = |task: Option<&str>, model: &str, output: u64| Event {
            run: RunId::from("r"),
            seq: 1,
            at_ms: 0,
            kind: EventKind::TokensUsed(TokensUsed {
                cost_usd: None,
                agent: "a".into(),
                task: task.map(TaskId::from),
                model: model.into(),
                usage: TokenUsage {
                    input: 0,
                    output,
                    cached: 0,
                    cache_write: 0,
                },
            }),
        };
        let events = vec![
            used(Some("t1"), "m", 100_000),
            used(None, "m", 100_000),
            used(Some("t1"), "free", 5),
        ];
        let costs = Costs::of(&prices(), &events);
        assert!(costs.priced);
        assert!((costs.total - 2.0).abs() < 1e-9);
        assert!((costs.per_task[&TaskId::from("t1")] - 1.0).abs() < 1e-9);
        assert!(!Costs::of(&BTreeMap::new(), &events).priced);
    }
}
