//! Releases (R5.2): what a release names, its preview, adding it, its opening and its
//! withdrawal.

use crate::outcome::Refusal;
use crate::plate::Serial;
use crate::record::{Record, ReleaseRecord, ReleaseSource};

use super::{
    NewRelease, OfficePool, ReleasePreview, RELEASE_LABEL_LEN_MAX, RELEASE_NUMBERS_MAX,
    RELEASE_PATTERNS_MAX, RELEASE_PREVIEW_SAMPLE, RELEASE_SERIALS_MAX,
};

impl OfficePool {
    /// The sorted, deduplicated codes a release names (numbers already released included).
    pub(super) fn expand(
        &self,
        class_ix: usize,
        source: &ReleaseSource,
    ) -> Result<Vec<u32>, String> {
        let cp = &self.classes[class_ix];
        let def = &cp.def;
        let mut codes = Vec::new();
        match source {
            ReleaseSource::Patterns(patterns) => {
                if patterns.is_empty() || patterns.len() > RELEASE_PATTERNS_MAX {
                    return Err(format!(
                        "a release has 1 to {RELEASE_PATTERNS_MAX} patterns"
                    ));
                }
                let mut total = 0u64;
                for (i, p) in patterns.iter().enumerate() {
                    if !p.is_subset(&def.shape) {
                        return Err(format!(
                            "patterns[{i}]: {p} is not inside the {} shape {}",
                            def.name, def.shape
                        ));
                    }
                    total += p.count();
                }
                if total > RELEASE_NUMBERS_MAX {
                    return Err(format!(
                        "the patterns name {total} numbers, more than {RELEASE_NUMBERS_MAX}"
                    ));
                }
                for p in patterns {
                    p.extend_codes(&mut codes);
                }
            }
            ReleaseSource::Serials(serials) => {
                if serials.is_empty() || serials.len() > RELEASE_SERIALS_MAX {
                    return Err(format!(
                        "a release lists 1 to {RELEASE_SERIALS_MAX} serials"
                    ));
                }
                for (i, s) in serials.iter().enumerate() {
                    if !def.shape.matches(*s) {
                        return Err(format!(
                            "serials[{i}]: {s} is not a {} number ({})",
                            def.name, def.shape
                        ));
                    }
                    codes.push(s.code());
                }
            }
        }
        codes.sort_unstable();
        codes.dedup();
        let len = def.serial_len();
        for &code in &codes {
            if def.group_of(Serial::from_pool_code(code, len)).is_none() {
                return Err(format!(
                    "{} fits no energy group of {}",
                    Serial::from_pool_code(code, len),
                    def.name
                ));
            }
        }
        Ok(codes)
    }

    /// The codes of `codes` that no release of the class holds yet (a release adds only those,
    /// at `add_release` and again at `restore`).
    pub(super) fn not_in_pool(&self, class_ix: usize, mut codes: Vec<u32>) -> Vec<u32> {
        let cp = &self.classes[class_ix];
        let len = cp.def.serial_len();
        codes.retain(|&code| cp.find(Serial::from_pool_code(code, len)).is_none());
        codes
    }

    /// Checks a release request as [`OfficePool::add_release`] does: the class index, the
    /// numbers it names and the new ones among them (sorted codes), or why it is refused.
    pub(super) fn release_codes(
        &self,
        req: &NewRelease,
    ) -> Result<(usize, Vec<u32>, u64), Refusal> {
        let class_ix = self
            .class_index(&req.class)
            .filter(|_| self.config.classes.contains(&req.class))
            .ok_or_else(|| Refusal::UnknownClass(req.class.clone()))?;
        if req.label.chars().count() > RELEASE_LABEL_LEN_MAX {
            return Err(Refusal::InvalidRelease(format!(
                "label is longer than {RELEASE_LABEL_LEN_MAX} characters"
            )));
        }
        let named_codes = self
            .expand(class_ix, &req.source)
            .map_err(Refusal::InvalidRelease)?;
        let named = named_codes.len() as u64;
        let codes = self.not_in_pool(class_ix, named_codes);
        if codes.is_empty() {
            return Err(Refusal::InvalidRelease(match req.source {
                ReleaseSource::Patterns(_) => "every number it names is already in the pool".into(),
                ReleaseSource::Serials(_) => "every serial it lists is already in the pool".into(),
            }));
        }
        Ok((class_ix, codes, named))
    }

    /// What [`OfficePool::add_release`] would do with `req`, changing nothing: the same checks
    /// and refusals, the count it would add, and the first and last numbers.
    pub fn preview_release(&self, req: &NewRelease) -> Result<ReleasePreview, Refusal> {
        let (class_ix, codes, named) = self.release_codes(req)?;
        let len = self.classes[class_ix].def.serial_len();
        let serial = |code: &u32| Serial::from_pool_code(*code, len);
        Ok(ReleasePreview {
            total: codes.len() as u64,
            named,
            sample: codes
                .iter()
                .take(RELEASE_PREVIEW_SAMPLE)
                .map(serial)
                .collect(),
            last: codes.last().map(serial),
        })
    }

    /// Adds a release (R5.2). Its numbers appear at `opens_at_ms`; custom checks may take them
    /// from `custom_from_ms`. Numbers already in the pool are skipped. Returns (id, numbers added).
    pub fn add_release(
        &mut self,
        req: NewRelease,
        who: &str,
        now_ms: u64,
    ) -> Result<(u32, u64), Refusal> {
        let (class_ix, codes, _) = self.release_codes(&req)?;
        let id = self.next_release;
        self.next_release += 1;
        let label = if req.label.trim().is_empty() {
            match &req.source {
                ReleaseSource::Patterns(p) => p
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                ReleaseSource::Serials(s) => format!("{} listed numbers", s.len()),
            }
        } else {
            req.label.trim().to_string()
        };
        let rec = ReleaseRecord {
            id,
            class: req.class,
            label,
            opens_at_ms: req.opens_at_ms,
            custom_from_ms: req
                .custom_from_ms
                .unwrap_or(req.opens_at_ms)
                .max(req.opens_at_ms),
            source: req.source,
            created_at_ms: now_ms,
            withdrawn: false,
        };
        let total = codes.len() as u64;
        self.classes[class_ix].add_segment(id, codes);
        self.schedule_release(&rec);
        self.effects
            .records
            .push(Record::Release(Box::new(rec.clone())));
        self.audit(
            now_ms,
            who,
            "release",
            None,
            None,
            format!("release {id} ({}): {total} numbers", rec.label),
        );
        self.releases.push(rec);
        self.run_release_events(now_ms);
        Ok((id, total))
    }

    pub(super) fn schedule_release(&mut self, rec: &ReleaseRecord) {
        self.release_events.insert((rec.opens_at_ms, rec.id));
        self.release_events.insert((rec.custom_from_ms, rec.id));
    }

    pub(super) fn run_release_events(&mut self, now_ms: u64) {
        while let Some(&(at, id)) = self.release_events.first() {
            if at > now_ms {
                break;
            }
            self.release_events.pop_first();
            let Some(rec) = self.releases.iter().find(|r| r.id == id) else {
                continue;
            };
            let (opens, custom, class) = (rec.opens_at_ms, rec.custom_from_ms, rec.class.clone());
            let Some(c) = self.class_index(&class) else {
                continue;
            };
            let Some(seg) = self.classes[c].segment_index(id) else {
                continue;
            };
            if opens <= now_ms {
                self.classes[c].open_segment(seg);
            }
            if custom <= now_ms {
                self.classes[c].open_segment_for_custom(seg);
            }
        }
    }

    /// Withdraws a release's numbers that are not held or claimed (R5.2). Returns how many left.
    pub fn withdraw_release(&mut self, id: u32, who: &str, now_ms: u64) -> Result<u64, Refusal> {
        let pos = self
            .releases
            .iter()
            .position(|r| r.id == id)
            .ok_or(Refusal::UnknownRelease)?;
        if self.releases[pos].withdrawn {
            return Ok(0);
        }
        let c = self
            .class_index(&self.releases[pos].class)
            .ok_or(Refusal::UnknownRelease)?;
        let seg = self.classes[c]
            .segment_index(id)
            .ok_or(Refusal::UnknownRelease)?;
        let n = self.classes[c].withdraw_segment(seg) as u64;
        self.releases[pos].withdrawn = true;
        let rec = self.releases[pos].clone();
        self.effects.records.push(Record::Release(Box::new(rec)));
        self.audit(
            now_ms,
            who,
            "withdraw_release",
            None,
            None,
            format!("release {id}: {n} numbers"),
        );
        Ok(n)
    }
}
