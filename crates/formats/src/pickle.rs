//! pickle (to be written)
