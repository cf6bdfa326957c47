//! The office configuration (R5.1) and the class pools it implies.

use crate::config::OfficeConfig;
use crate::outcome::Refusal;
use crate::record::Record;

use super::numbers::ClassPool;
use super::OfficePool;

impl OfficePool {
    /// Replaces the office configuration; takes effect for new actions (R5.1).
    pub fn configure(
        &mut self,
        config: OfficeConfig,
        who: &str,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        config
            .validate(&self.catalog)
            .map_err(|e| Refusal::InvalidConfig {
                field: e.field,
                message: e.message,
            })?;
        for cp in &self.classes {
            if !config.classes.contains(&cp.def.name) && !cp.is_empty() {
                return Err(Refusal::InvalidConfig {
                    field: "classes".into(),
                    message: format!(
                        "class {} has released numbers and cannot be removed",
                        cp.def.name
                    ),
                });
            }
        }
        self.config = config;
        self.sync_classes();
        self.effects
            .records
            .push(Record::Config(Box::new(self.config.clone())));
        self.audit(now_ms, who, "configure", None, None, String::new());
        Ok(())
    }

    /// Brings the class pools in line with the configuration: new classes get a pool, and every
    /// pool gets the current composition rules.
    pub(super) fn sync_classes(&mut self) {
        for name in self.config.classes.clone() {
            if self.class_index(&name).is_none() {
                if let Some(def) = self.catalog.iter().find(|c| c.name == name).cloned() {
                    let rules = self.config.composition_rules(&def);
                    self.classes.push(ClassPool::new(def, rules));
                }
            }
        }
        for i in 0..self.classes.len() {
            let rules = self.config.composition_rules(&self.classes[i].def);
            if *self.classes[i].composition() != rules {
                self.classes[i].set_composition(rules);
            }
        }
    }
}
