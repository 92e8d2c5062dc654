//! The checks behind `gate doctor`.
