//! Events of planning: blueprints proposed, rejected, reviewed, disputed
//! and accepted.

use serde::{Deserialize, Serialize};

use crate::domain::blueprint::Blueprint;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlueprintProposed {
    pub round: u32,
    pub blueprint: Blueprint,
}

/// Validation found problems; they go back to the planner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlueprintRejected {
    pub round: u32,
    pub issues: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanReviewed {
    pub round: u32,
    pub approved: bool,
    pub feedback: String,
}

/// The plan reviewer did not approve within the rounds allowed: a human
/// decides whether the last blueprint is built or planned once more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanDisputed {
    pub round: u32,
    pub feedback: String,
}

/// A human settled a plan dispute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanDisputeSettled {
    /// Build the last blueprint; otherwise plan one more round.
    pub build: bool,
    pub by: String,
}

/// The blueprint the build phase works from. Creates every task as pending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlueprintAccepted {
    pub blueprint: Blueprint,
}
