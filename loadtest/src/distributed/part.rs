//! One worker's part of a rehearsal and how the coordinator merges the parts: the recorder with
//! its HdrHistograms in their V2 + DEFLATE serialisation (base64 in the JSON line), the buyers'
//! records, and the counts the report sums.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::buyer::BuyerRecord;
use crate::recorder::{KindCounts, Recorder, Second, Step};
use crate::report::{ClientPool, Cpu};
use crate::scenario::BuyerPlan;

/// Which buyers a worker runs: indices `i` with `i % workers == worker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub worker: u32,
    pub workers: u32,
}

impl Split {
    pub fn owns(&self, index: u32) -> bool {
        self.workers > 0 && index % self.workers == self.worker
    }

    /// This worker's plans, in index order.
    pub fn plans(&self, all: &[BuyerPlan]) -> Vec<BuyerPlan> {
        all.iter().filter(|p| self.owns(p.index)).cloned().collect()
    }

    /// How many of `buyers` this worker runs.
    pub fn count(&self, buyers: u32) -> u32 {
        (0..buyers).filter(|i| self.owns(*i)).count() as u32
    }

    /// This worker's part of `total` (closed-model slots, connections), the remainder going to
    /// the first workers.
    pub fn portion(&self, total: usize) -> usize {
        let n = self.workers.max(1) as usize;
        total / n + usize::from((self.worker as usize) < total % n)
    }

    /// A part's history must be exactly this worker's buyers, each once: otherwise the merged
    /// audit would check buyers twice or miss some.
    pub fn check(&self, history: &[BuyerRecord], buyers: u32) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for b in history {
            if b.index >= buyers || !self.owns(b.index) {
                return Err(format!(
                    "it returned buyer {} of {buyers}, which is not in its share ({} of {})",
                    b.index, self.worker, self.workers
                ));
            }
            if !seen.insert(b.index) {
                return Err(format!("it returned buyer {} twice", b.index));
            }
        }
        let expected = self.count(buyers);
        if seen.len() as u32 != expected {
            return Err(format!(
                "it returned {} of its {expected} buyers",
                seen.len()
            ));
        }
        Ok(())
    }
}

/// A histogram as base64 of its V2 + DEFLATE serialisation (HdrHistogram's interchange format).
pub fn encode_histogram(h: &Histogram<u64>) -> Result<String, String> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| format!("histogram serialisation: {e:?}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("histogram: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("histogram: {e:?}"))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepPart {
    pub step: Step,
    /// Latency in microseconds: [`encode_histogram`].
    pub latency: String,
    pub sent: u64,
    pub errors: u64,
    pub labels: BTreeMap<String, u64>,
}

/// A [`Recorder`] on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecorderPart {
    pub steps: Vec<StepPart>,
    pub all: String,
    pub timeline: Vec<Second>,
    pub errors: BTreeMap<String, u64>,
    pub people: KindCounts,
    pub bots: KindCounts,
}

fn add_counts(into: &mut KindCounts, from: &KindCounts) {
    into.requests += from.requests;
    into.errors += from.errors;
    into.too_soon += from.too_soon;
    into.too_many_requests += from.too_many_requests;
}

fn add_histogram(into: &mut Histogram<u64>, text: &str) -> Result<(), String> {
    into.add(decode_histogram(text)?)
        .map_err(|e| format!("histogram: {e:?}"))
}

impl RecorderPart {
    pub fn of(r: &Recorder) -> Result<RecorderPart, String> {
        let steps = Step::ALL
            .iter()
            .map(|&step| {
                let s = r.step(step);
                Ok(StepPart {
                    step,
                    latency: encode_histogram(&s.latency)?,
                    sent: s.sent,
                    errors: s.errors,
                    labels: s.labels.clone(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(RecorderPart {
            steps,
            all: encode_histogram(&r.all)?,
            timeline: r.timeline.clone(),
            errors: r.errors.clone(),
            people: r.people,
            bots: r.bots,
        })
    }

    /// Adds this part to `r`: histograms merged, counts summed, timelines summed second by
    /// second (every worker's second 0 is the same instant, the start of the load).
    pub fn add_to(&self, r: &mut Recorder) -> Result<(), String> {
        for p in &self.steps {
            let i = Step::ALL
                .iter()
                .position(|s| *s == p.step)
                .ok_or_else(|| format!("unknown step {:?}", p.step))?;
            let rec = &mut r.steps[i];
            add_histogram(&mut rec.latency, &p.latency)?;
            rec.sent += p.sent;
            rec.errors += p.errors;
            for (label, n) in &p.labels {
                *rec.labels.entry(label.clone()).or_insert(0) += n;
            }
        }
        add_histogram(&mut r.all, &self.all)?;
        if r.timeline.len() < self.timeline.len() {
            r.timeline.resize(self.timeline.len(), Second::default());
        }
        for (into, from) in r.timeline.iter_mut().zip(&self.timeline) {
            into.offered += from.offered;
            into.accepted += from.accepted;
            into.errors += from.errors;
            into.arrivals += from.arrivals;
            into.finished += from.finished;
            into.claims += from.claims;
        }
        for (kind, n) in &self.errors {
            *r.errors.entry(kind.clone()).or_insert(0) += n;
        }
        add_counts(&mut r.people, &self.people);
        add_counts(&mut r.bots, &self.bots);
        Ok(())
    }
}

/// What a worker sends back when its buyers have finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    pub split: Split,
    pub host: String,
    pub recorder: RecorderPart,
    /// Its buyers' records, by index.
    pub history: Vec<BuyerRecord>,
    pub arrived: u64,
    pub client: ClientPool,
    /// Its process's CPU use over its load (`gateway_share` is always `None`).
    pub cpu: Cpu,
    /// Seconds from the (shared) start of the load to its last buyer's end.
    pub load_secs: f64,
}

/// The merged CPU figure: every worker's CPU seconds over the cores of the machines they ran
/// on (each host's cores counted once, so workers sharing a machine share its cores).
pub fn merged_cpu(parts: &[Part], load_secs: f64) -> Cpu {
    let mut hosts: BTreeMap<&str, usize> = BTreeMap::new();
    for p in parts {
        let c = hosts.entry(p.host.as_str()).or_insert(0);
        *c = (*c).max(p.cpu.cores);
    }
    let cores = hosts.values().sum::<usize>().max(1);
    let loadtest_secs: f64 = parts.iter().map(|p| p.cpu.loadtest_secs).sum();
    Cpu {
        cores,
        wall_secs: load_secs,
        loadtest_secs,
        process_secs: parts.iter().map(|p| p.cpu.process_secs).sum(),
        loadtest_share: loadtest_secs / (load_secs.max(0.001) * cores as f64),
        gateway_share: None,
    }
}

/// The merged client pools: connections, peak in flight and waits summed, as over one
/// process's threads.
pub fn merged_client(parts: &[Part]) -> ClientPool {
    parts.iter().fold(ClientPool::default(), |a, p| ClientPool {
        connections: a.connections + p.client.connections,
        max_in_flight: a.max_in_flight + p.client.max_in_flight,
        waits: a.waits + p.client.waits,
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::buyer::BuyerRecord;
    use crate::recorder::Ending;
    use crate::scenario::{Kind, Style};

    fn answer(status: u16, code: Option<&str>) -> Ending {
        Ending::Answer {
            status,
            code: code.map(str::to_string),
        }
    }

    /// Request `i` of a made-up run: varied steps, kinds, latencies, seconds and endings.
    fn request(r: &mut Recorder, t0: Instant, i: u64) {
        let step = Step::ALL[(i % Step::ALL.len() as u64) as usize];
        let kind = if i % 3 == 0 { Kind::Bot } else { Kind::Person };
        let intended = t0 + Duration::from_millis(i * 37 % 5_000);
        let done = intended + Duration::from_micros(1 + i * i * 13 % 2_000_000);
        let ending = match i % 7 {
            0 => answer(409, Some("not_available")),
            1 => answer(503, Some("unavailable")),
            2 => Ending::Transport("timeout".into()),
            3 => answer(429, Some("too_soon")),
            _ => answer(201, None),
        };
        r.request(step, kind, intended, done, &ending);
        if i % 11 == 0 {
            r.claim(done);
            r.arrival(intended);
            r.finished(done);
        }
    }

    #[test]
    fn merged_parts_equal_one_recorder_that_saw_everything() {
        let t0 = Instant::now();
        let mut whole = Recorder::new(t0);
        let mut a = Recorder::new(t0);
        let mut b = Recorder::new(t0);
        for i in 0..3_000 {
            request(&mut whole, t0, i);
            request(if i % 2 == 0 { &mut a } else { &mut b }, t0, i);
        }
        let mut merged = Recorder::new(t0);
        for part in [&a, &b] {
            let wire = serde_json::to_string(&RecorderPart::of(part).expect("encodes"))
                .expect("serialises");
            let back: RecorderPart = serde_json::from_str(&wire).expect("parses");
            back.add_to(&mut merged).expect("merges");
        }
        for step in Step::ALL {
            let (m, w) = (merged.step(step), whole.step(step));
            assert_eq!(m.latency, w.latency, "{step:?}");
            assert_eq!(m.latency.max(), w.latency.max());
            assert_eq!(
                m.latency.value_at_quantile(0.99),
                w.latency.value_at_quantile(0.99)
            );
            assert_eq!((m.sent, m.errors, &m.labels), (w.sent, w.errors, &w.labels));
        }
        assert_eq!(merged.all, whole.all);
        assert_eq!(merged.all.len(), whole.all.len());
        assert!(!merged.all.is_empty());
        assert_eq!(merged.timeline, whole.timeline);
        assert_eq!(merged.errors, whole.errors);
        assert_eq!(merged.people, whole.people);
        assert_eq!(merged.bots, whole.bots);
        assert!(decode_histogram("not base64!").is_err());
        assert!(decode_histogram("AAAA").is_err());
    }

    fn record(index: u32) -> BuyerRecord {
        BuyerRecord::new(index, &format!("u{index}"), Kind::Person, Style::Random)
    }

    #[test]
    fn a_split_owns_disjoint_shares_and_checks_a_history_against_its_own() {
        let splits: Vec<Split> = (0..3).map(|worker| Split { worker, workers: 3 }).collect();
        for i in 0..100 {
            assert_eq!(splits.iter().filter(|s| s.owns(i)).count(), 1, "{i}");
        }
        assert_eq!(splits.iter().map(|s| s.count(100)).sum::<u32>(), 100);
        assert_eq!(
            splits.iter().map(|s| s.portion(8)).collect::<Vec<_>>(),
            [3, 3, 2]
        );
        let s1 = splits[1];
        let mine: Vec<BuyerRecord> = (0..10).filter(|i| s1.owns(*i)).map(record).collect();
        assert_eq!(mine.len(), 3);
        s1.check(&mine, 10).expect("its own buyers");
        assert!(s1
            .check(&mine[..2], 10)
            .expect_err("one missing")
            .contains("2 of its 3"));
        let mut twice = mine.clone();
        twice.push(record(4));
        assert!(s1.check(&twice, 10).expect_err("twice").contains("twice"));
        let mut foreign = mine.clone();
        foreign[0] = record(0);
        assert!(s1
            .check(&foreign, 10)
            .expect_err("foreign")
            .contains("not in its share"));
    }

    #[test]
    fn cpu_counts_each_host_once() {
        let part = |host: &str, cores: usize, secs: f64| Part {
            split: Split {
                worker: 0,
                workers: 3,
            },
            host: host.into(),
            recorder: RecorderPart::of(&Recorder::new(Instant::now())).expect("encodes"),
            history: Vec::new(),
            arrived: 0,
            client: ClientPool {
                connections: 10,
                max_in_flight: 4,
                waits: 1,
            },
            cpu: Cpu {
                cores,
                loadtest_secs: secs,
                process_secs: secs + 1.0,
                ..Cpu::default()
            },
            load_secs: 10.0,
        };
        let parts = [part("a", 2, 1.0), part("a", 2, 2.0), part("b", 8, 3.0)];
        let cpu = merged_cpu(&parts, 10.0);
        assert_eq!(cpu.cores, 10);
        assert!((cpu.loadtest_secs - 6.0).abs() < 1e-9);
        assert!((cpu.process_secs - 9.0).abs() < 1e-9);
        assert!((cpu.loadtest_share - 0.06).abs() < 1e-9);
        assert_eq!(cpu.gateway_share, None);
        let client = merged_client(&parts);
        assert_eq!(
            (client.connections, client.max_in_flight, client.waits),
            (30, 12, 3)
        );
    }
}
