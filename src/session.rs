//! One client connection (to be written).
