//! `dvault gen`: deterministic synthetic Customer 360 data.
