//! Parses what `git push` sends over smart HTTP so the scanner can see every object it carries.
