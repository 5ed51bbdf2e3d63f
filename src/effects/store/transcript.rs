//! Which events write one agent's transcript within a stretch of a run: what
//! a replay reads to bring a transcript it keeps from one cursor to another.

use super::light::{LightRun, transcript_agent};
use crate::domain::AgentId;

impl LightRun {
    /// The numbers of the events after the first `from` up to the first
    /// `to` that write into `agent`'s transcript, ascending: its unread
    /// events and its transcript events read.
    pub fn transcript_seqs_between(&self, agent: &AgentId, from: usize, to: usize) -> Vec<u64> {
        let (from, to) = (from as u64, to as u64);
        let mut seqs = Vec::new();
        if let Some(index) = self.agent_index(agent) {
            let start = self.bulk.partition_point(|b| b.seq <= from);
            seqs.extend(
                self.bulk[start..]
                    .iter()
                    .take_while(|b| b.seq <= to)
                    .filter(|b| b.agent == index)
                    .map(|b| b.seq),
            );
        }
        let start = self
            .transcript
            .partition_point(|&i| self.decoded.get(i as usize).is_some_and(|e| e.seq <= from));
        seqs.extend(
            self.transcript[start..]
                .iter()
                .filter_map(|&i| self.decoded.get(i as usize))
                .take_while(|e| e.seq <= to)
                .filter(|e| transcript_agent(&e.kind) == Some(agent))
                .map(|e| e.seq),
        );
        seqs.sort_unstable();
        seqs
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::RunId;
    use crate::effects::store::Store;

    /// Any stretch of an agent's transcript events is the stretch of all
    /// of them, across chunks, the tail and the run's ends.
    #[test]
    fn an_agents_transcript_events_between_two_points_are_that_stretch_of_them() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m.db");
        let run = RunId::from("long");
        let events = crate::domain::synthetic::run_events(&run, 3, 4_000);
        let mut store = Store::open(&path).unwrap();
        for batch in events.chunks(700) {
            store.append_batch(batch).unwrap();
        }
        let light = Store::load_light(&path, &run).unwrap();
        let len = events.len();
        for agent in &light.agents {
            let all = light.transcript_seqs(std::slice::from_ref(agent), len);
            assert!(all.len() > 100);
            for (from, to) in [
                (0, len),
                (0, 1),
                (1_000, 2_500),
                (2_047, 2_049),
                (len - 3, len),
            ] {
                let expected: Vec<u64> = all
                    .iter()
                    .copied()
                    .filter(|&s| s > from as u64 && s <= to as u64)
                    .collect();
                assert_eq!(light.transcript_seqs_between(agent, from, to), expected);
            }
        }
    }
}
