//! The operation mix of a random storm: weights per kind and the pause distribution, read
//! from `scenarios/chaos.toml` (`[mix]` and `[pause]`), with the defaults listed there.

use serde::{Deserialize, Serialize};

use crate::storm::ops::Rng;

/// Kinds of operation the storm chooses among.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Create,
    Rewrite,
    Append,
    Truncate,
    Unlink,
    Mkdir,
    RemoveTree,
    Rename,
    Exchange,
    MoveOut,
    MoveIn,
    MoveOutRecreate,
    Swap,
    Symlink,
    Chmod,
    Chown,
    Touch,
    TmpfileLink,
    Link,
}

/// Default weights: ordinary file work dominates, every awkward case appears in every
/// few hundred operations.
pub const DEFAULT_WEIGHTS: &[(Kind, u32)] = &[
    (Kind::Create, 14),
    (Kind::Rewrite, 8),
    (Kind::Append, 6),
    (Kind::Truncate, 4),
    (Kind::Unlink, 6),
    (Kind::Mkdir, 7),
    (Kind::RemoveTree, 3),
    (Kind::Rename, 10),
    (Kind::Exchange, 4),
    (Kind::MoveOut, 3),
    (Kind::MoveIn, 3),
    (Kind::MoveOutRecreate, 3),
    (Kind::Swap, 3),
    (Kind::Symlink, 5),
    (Kind::Chmod, 4),
    (Kind::Chown, 3),
    (Kind::Touch, 4),
    (Kind::TmpfileLink, 3),
    (Kind::Link, 5),
];

/// Kinds that remove entries: favoured while the tree is above its soft size.
const SHRINKING: &[Kind] = &[Kind::Unlink, Kind::RemoveTree, Kind::MoveOut, Kind::Swap];

/// Pauses between operations: exponential with `mean_us`, and now and then a burst of
/// `burst_len` operations with no pause at all.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pause {
    pub mean_us: u32,
    /// Chance per operation that a burst starts.
    pub burst_chance: f64,
    pub burst_len: u32,
}

impl Default for Pause {
    fn default() -> Self {
        Pause {
            mean_us: 500,
            burst_chance: 0.03,
            burst_len: 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    weights: Vec<(Kind, u32)>,
    pub pause: Pause,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            weights: DEFAULT_WEIGHTS.to_vec(),
            pause: Pause::default(),
        }
    }
}

/// A `[mix]` that would pick nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("every operation weight is 0: give at least one kind a weight")]
pub struct AllWeightsZero;

impl Mix {
    /// A mix from explicit weights (kinds not named keep their default); zero drops a kind.
    pub fn with_weights(overrides: &[(Kind, u32)], pause: Pause) -> Result<Mix, AllWeightsZero> {
        let mut weights = DEFAULT_WEIGHTS.to_vec();
        for (kind, w) in overrides {
            if let Some(slot) = weights.iter_mut().find(|(k, _)| k == kind) {
                slot.1 = *w;
            }
        }
        if weights.iter().all(|(_, w)| *w == 0) {
            return Err(AllWeightsZero);
        }
        Ok(Mix { weights, pause })
    }

    pub fn weights(&self) -> &[(Kind, u32)] {
        &self.weights
    }

    pub fn pick(&self, rng: &mut Rng, crowded: bool) -> Kind {
        // In u64: a weight the file may give (up to u32::MAX) times 4 does not fit a u32.
        let weight = |k: Kind, w: u32| {
            let w = u64::from(w);
            if crowded && SHRINKING.contains(&k) {
                w * 4
            } else {
                w
            }
        };
        let total: u64 = self.weights.iter().map(|&(k, w)| weight(k, w)).sum();
        let mut at = rng.below(total.max(1));
        for &(k, w) in &self.weights {
            let w = weight(k, w);
            if at < w {
                return k;
            }
            at -= w;
        }
        Kind::Create
    }

    /// The tree before the syncer starts: directories, files, hard links and symlinks.
    pub fn pick_setup(&self, rng: &mut Rng) -> Kind {
        match rng.below(20) {
            0..=5 => Kind::Mkdir,
            6..=15 => Kind::Create,
            16..=17 if self.weight(Kind::Link) > 0 => Kind::Link,
            16..=17 => Kind::Create,
            _ => Kind::Symlink,
        }
    }

    fn weight(&self, kind: Kind) -> u32 {
        self.weights
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, w)| *w)
    }

    /// The pause after an operation, or None inside or at the start of a burst.
    pub fn pause_us(&self, rng: &mut Rng, burst: &mut u32) -> Option<u32> {
        if (rng.below(1_000_000) as f64) < self.pause.burst_chance * 1e6 {
            *burst = self.pause.burst_len;
            return None;
        }
        if self.pause.mean_us == 0 {
            return None;
        }
        // Exponential: -ln(U) * mean, U in (0, 1].
        let u = (rng.below(1 << 30) as f64 + 1.0) / f64::from(1u32 << 30);
        Some((-u.ln() * f64::from(self.pause.mean_us)).min(1e6) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_decide_the_mix_and_zero_drops_a_kind() {
        let mix = Mix::with_weights(&[(Kind::Chown, 0)], Pause::default()).unwrap();
        let mut rng = Rng::new(1);
        let picks: Vec<Kind> = (0..5000).map(|_| mix.pick(&mut rng, false)).collect();
        assert!(!picks.contains(&Kind::Chown));
        let creates = picks.iter().filter(|k| **k == Kind::Create).count();
        let swaps = picks.iter().filter(|k| **k == Kind::Swap).count();
        assert!(creates > swaps * 3, "{creates} creates vs {swaps} swaps");
        let none: Vec<(Kind, u32)> = DEFAULT_WEIGHTS.iter().map(|&(k, _)| (k, 0)).collect();
        assert!(Mix::with_weights(&none, Pause::default()).is_err());
    }

    /// Found by `prop_chaos_config_edited_file_never_panics`: `unlink = 4294967295` in
    /// `[mix]` overflowed (u32 weight times 4) at the first pick in a crowded tree.
    #[test]
    fn a_huge_weight_of_a_shrinking_kind_is_picked_in_a_crowded_tree() {
        let mix = Mix::with_weights(&[(Kind::Unlink, u32::MAX)], Pause::default()).unwrap();
        let mut rng = Rng::new(3);
        let unlinks = (0..100)
            .filter(|_| mix.pick(&mut rng, true) == Kind::Unlink)
            .count();
        assert!(unlinks > 95, "{unlinks} of 100");
    }

    #[test]
    fn pauses_average_near_their_mean() {
        let mix = Mix::default();
        let mut rng = Rng::new(7);
        let mut burst = 0;
        let pauses: Vec<u32> = (0..20_000)
            .filter_map(|_| mix.pause_us(&mut rng, &mut burst))
            .collect();
        let mean = pauses.iter().map(|&p| f64::from(p)).sum::<f64>() / pauses.len() as f64;
        assert!((400.0..600.0).contains(&mean), "mean {mean}");
        assert!(pauses.len() < 20_000, "some bursts");
    }
}
