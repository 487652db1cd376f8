//! The end-to-end suites live in `tests/tests/`; this library is empty on purpose.
