//! llama2c (to be written)
