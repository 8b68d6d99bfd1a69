//! hf (to be written)
