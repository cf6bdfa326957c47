//! Plate classes (SPEC R2.2): the shape of a class's serials and which vehicles may have which.
//!
//! Classes are data, not code: the two built-in classes are defined here with the same structure an
//! operator would use to add another. Within a class, *energy groups* split the numbers by vehicle:
//! a battery-electric car is offered only `D…` new-energy numbers, other new-energy cars only `F…`.

use serde::{Deserialize, Serialize};

use crate::pattern::Pattern;

/// A vehicle's energy type, from its certificate record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Energy {
    /// Petrol or diesel.
    Fuel,
    /// Battery electric.
    Bev,
    /// Plug-in hybrid.
    Phev,
    /// Fuel cell.
    Fcev,
}

impl Energy {
    pub const ALL: [Energy; 4] = [Energy::Fuel, Energy::Bev, Energy::Phev, Energy::Fcev];

    pub fn parse(text: &str) -> Option<Energy> {
        Energy::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(text.trim()))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Energy::Fuel => "fuel",
            Energy::Bev => "bev",
            Energy::Phev => "phev",
            Energy::Fcev => "fcev",
        }
    }
}

/// The numbers of a class that one kind of vehicle may have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnergyGroup {
    pub name: String,
    /// Every number of the group matches this (a sub-shape of the class shape).
    pub pattern: Pattern,
    pub energies: Vec<Energy>,
}

/// One plate class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlateClass {
    pub name: String,
    /// Every serial of the class matches this.
    pub shape: Pattern,
    /// Disjoint groups; a vehicle whose energy is in no group is not eligible for the class.
    pub groups: Vec<EnergyGroup>,
    /// Composition rules for custom numbers when an office names none (SPEC R2.4).
    pub default_custom_patterns: Vec<Pattern>,
}

/// Most groups a class may have (a number's group index is kept in two bits of its status byte).
pub const CLASS_GROUPS_MAX: usize = 4;

impl PlateClass {
    pub fn serial_len(&self) -> usize {
        self.shape.len()
    }

    /// The group a vehicle of this energy draws from, if it may have this class at all.
    pub fn group_for(&self, energy: Energy) -> Option<usize> {
        self.groups
            .iter()
            .position(|g| g.energies.contains(&energy))
    }

    /// The group a number belongs to, if any.
    pub fn group_of(&self, serial: crate::plate::Serial) -> Option<usize> {
        self.groups.iter().position(|g| g.pattern.matches(serial))
    }

    /// Checks the class is coherent: groups inside the shape, disjoint, at most
    /// [`CLASS_GROUPS_MAX`] of them.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.len() > 32 {
            return Err("class name must have 1 to 32 characters".into());
        }
        if self.groups.is_empty() || self.groups.len() > CLASS_GROUPS_MAX {
            return Err(format!(
                "class {} must have 1 to {CLASS_GROUPS_MAX} energy groups",
                self.name
            ));
        }
        for (i, g) in self.groups.iter().enumerate() {
            if !g.pattern.is_subset(&self.shape) {
                return Err(format!(
                    "group {} pattern {} is not inside the class shape {}",
                    g.name, g.pattern, self.shape
                ));
            }
            for other in &self.groups[i + 1..] {
                if g.pattern.intersect(&other.pattern).is_some() {
                    return Err(format!("groups {} and {} overlap", g.name, other.name));
                }
            }
        }
        for p in &self.default_custom_patterns {
            if p.len() != self.serial_len() {
                return Err(format!(
                    "custom pattern {p} does not have the class's {} characters",
                    self.serial_len()
                ));
            }
        }
        Ok(())
    }

    /// `small`: ordinary small cars, five characters (SPEC R2.2).
    pub fn small() -> PlateClass {
        PlateClass {
            name: "small".into(),
            shape: pat("*****"),
            groups: vec![EnergyGroup {
                name: "all".into(),
                pattern: pat("*****"),
                energies: Energy::ALL.to_vec(),
            }],
            default_custom_patterns: [
                "#####", "@####", "#@###", "##@##", "###@#", "####@", "@@###",
            ]
            .into_iter()
            .map(pat)
            .collect(),
        }
    }

    /// `small_new_energy`: six characters, D (battery electric) or F (other new energy) first, a
    /// letter or digit second, four digits last (SPEC R2.2).
    pub fn small_new_energy() -> PlateClass {
        PlateClass {
            name: "small_new_energy".into(),
            shape: pat("[DF]*####"),
            groups: vec![
                EnergyGroup {
                    name: "bev".into(),
                    pattern: pat("D*####"),
                    energies: vec![Energy::Bev],
                },
                EnergyGroup {
                    name: "other_new_energy".into(),
                    pattern: pat("F*####"),
                    energies: vec![Energy::Phev, Energy::Fcev],
                },
            ],
            default_custom_patterns: ["[DF]#####", "[DF]@####"].into_iter().map(pat).collect(),
        }
    }

    /// The classes every engine knows.
    pub fn builtin() -> Vec<PlateClass> {
        vec![PlateClass::small(), PlateClass::small_new_energy()]
    }
}

fn pat(text: &str) -> Pattern {
    match Pattern::parse(text) {
        Ok(p) => p,
        Err(e) => panic!("built-in pattern {text}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plate::Serial;

    #[test]
    fn builtin_classes_are_valid() {
        for c in PlateClass::builtin() {
            c.validate().expect("valid class");
        }
    }

    #[test]
    fn energy_decides_the_group() {
        let ne = PlateClass::small_new_energy();
        assert_eq!(ne.group_for(Energy::Bev), Some(0));
        assert_eq!(ne.group_for(Energy::Phev), Some(1));
        assert_eq!(ne.group_for(Energy::Fuel), None);
        let d = Serial::parse("DA1234").expect("serial");
        let f = Serial::parse("F01234").expect("serial");
        assert_eq!(ne.group_of(d), Some(0));
        assert_eq!(ne.group_of(f), Some(1));
        assert_eq!(PlateClass::small().group_for(Energy::Bev), Some(0));
    }

    #[test]
    fn overlapping_groups_are_refused() {
        let mut c = PlateClass::small_new_energy();
        c.groups[1].pattern = pat("[DF]*####");
        assert!(c.validate().is_err());
        let mut c = PlateClass::small();
        c.groups[0].pattern = pat("D*####");
        assert!(c.validate().is_err());
    }
}
