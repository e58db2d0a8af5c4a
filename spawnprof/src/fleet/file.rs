//! `fleet.json`: what `spawnprof compare` keeps of a fleet, one row per
//! node (its facts and figures), the fleet's medians, the flags, and the
//! directories it could not read. The page is rendered from this alone.
use std::{collections::BTreeMap, path::Path, path::PathBuf};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::sys::node::NodeFacts;

pub const FLEET_JSON: &str = "fleet.json";
pub const FLEET_HTML: &str = "fleet.html";
pub const FLEET_SCHEMA_VERSION: u32 = 1;

/// One node of the fleet.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeRow {
    /// `--node-name`, Slurm's name or the host name; made unique.
    pub name: String,
    /// Its bench directory, as given or found.
    pub dir: PathBuf,
    pub facts: NodeFacts,
    /// Each figure by metric id; absent where the bench did not measure it.
    pub figures: BTreeMap<String, f64>,
    pub quick: bool,
    /// The bench was stopped early (or is still running).
    pub incomplete: bool,
}

/// A node whose figure stands out, with what may explain it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Flag {
    pub node: String,
    pub metric: String,
    /// `None`: the node lacks a figure most of the fleet has.
    pub value: Option<f64>,
    pub median: f64,
    /// Of the value to the median, both raised to the metric's noise floor.
    pub ratio: Option<f64>,
    /// The node's facts, unlike the fleet's, that can move this figure.
    pub reasons: Vec<String>,
    /// "node017: fork per MiB of RSS 3.1× the fleet median (…); THP never".
    pub text: String,
}

/// A directory left out, and why.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Skipped {
    pub dir: PathBuf,
    pub reason: String,
}

/// `fleet.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FleetReport {
    pub schema_version: u32,
    /// How far from the median (as a ratio either way) a figure is flagged.
    pub threshold: f64,
    pub nodes: Vec<NodeRow>,
    /// Each metric's median over the nodes that have it.
    pub medians: BTreeMap<String, f64>,
    pub flags: Vec<Flag>,
    pub skipped: Vec<Skipped>,
    /// Node name → its diff against the fleet median, relative to this file.
    pub diffs: BTreeMap<String, String>,
}

/// Writes `fleet.json` whole or not at all.
pub fn write(dir: &Path, report: &FleetReport) -> Result<()> {
    let path = dir.join(FLEET_JSON);
    let tmp = dir.join(format!(".{FLEET_JSON}.tmp"));
    std::fs::write(&tmp, serde_json::to_string_pretty(report)? + "\n")
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads `fleet.json` back.
pub fn load(dir: &Path) -> Result<FleetReport> {
    let path = dir.join(FLEET_JSON);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is corrupt or from another version", path.display()))
}
