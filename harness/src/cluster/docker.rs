//! Docker backend (being written).
