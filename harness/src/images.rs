//! Local image building (being written).
