//! Whole-node tests (see `tests/` of this crate).
