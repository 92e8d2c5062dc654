//! A local HTTPS upstream (h1 and h2) with a test CA made at test time.
