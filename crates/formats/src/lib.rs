//! `formats` reads the files Llama checkpoints come in and hands out raw tensors.
//!
//! It owns: GGUF v2/v3, safetensors (single and sharded, Hugging Face directories), llama2.c
//! `.bin` checkpoints (legacy and export v1 "ak42"), Meta's `consolidated.*.pth` (PyTorch zip +
//! pickle) with `params.json`, memory mapping, and tensor descriptors (name, dtype, shape, bytes).
//!
//! It must never know what a tensor *means*: names are passed through as the file spells them;
//! mapping names to model weights, permuting Q/K and joining shards is the `model` crate's job.
//!
//! Shapes are always outermost-first (PyTorch order): a weight `[n_out, n_in]` has `n_in`
//! contiguous elements per row. GGUF's `ne[]` (innermost-first) is reversed at read time.
//!
//! Every reader checks every header field against the file size before it allocates or slices,
//! and errors name the file and the field or tensor at fault.

#![deny(unsafe_code)]

mod error;
mod mmap;
mod storage;
mod tensor;

pub mod gguf;
pub mod gguf_write;
pub mod hf;
pub mod llama2c;
pub mod meta;
pub mod npy;
pub mod pickle;

pub use error::{FormatError, Result};
pub use storage::{available_memory, map_file, Storage};
pub use tensor::{DType, Tensor};
