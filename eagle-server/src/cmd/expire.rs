//! (being written)

use super::table::Spec;

/// This family's commands.
pub static SPECS: &[Spec] = &[];
