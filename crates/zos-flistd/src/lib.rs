//! flistd (work in progress).
