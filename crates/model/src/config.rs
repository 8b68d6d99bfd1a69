/// Hyper-parameters of a Llama-family model, whatever file they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Width of the residual stream.
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Width of the MLP (read from the weights where the file does not say).
    pub hidden_dim: usize,
    pub vocab_size: usize,
    pub norm_eps: f32,
    pub rope_theta: f32,
    pub rope_scaling: RopeScaling,
    /// Context length the model was trained for.
    pub max_seq_len: usize,
    /// Output matrix shared with the token embedding.
    pub tied_embeddings: bool,
}

/// Context-extension scaling of the rotary frequencies.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (equivalently, every frequency).
    Linear {
        factor: f32,
    },
    /// Llama 3.1: low frequencies divided by `factor`, high ones kept, a smooth blend between.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position_embeddings: f32,
    },
    /// One divisor per frequency pair (GGUF's `rope_freqs.weight`).
    Divisors(Vec<f32>),
}

impl LlamaConfig {
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Rotary inverse frequencies after scaling, `head_dim / 2` of them.
    pub fn rope_freqs(&self) -> kernels::RopeFreqs {
        let base = kernels::rope_inv_freqs(self.head_dim, self.rope_theta, None);
        let inv_freq = match &self.rope_scaling {
            RopeScaling::None => base.inv_freq,
            RopeScaling::Linear { factor } => base.inv_freq.iter().map(|f| f / factor).collect(),
            RopeScaling::Divisors(d) => base.inv_freq.iter().zip(d).map(|(f, d)| f / d).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old_ctx,
            } => {
                let low_wavelen = old_ctx / low_freq_factor;
                let high_wavelen = old_ctx / high_freq_factor;
                base.inv_freq
                    .iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (old_ctx / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        };
        kernels::RopeFreqs { inv_freq }
    }

    /// Number of parameters of the weights this configuration describes.
    pub fn n_params(&self) -> usize {
        let attn = self.dim * self.q_dim() * 2 + self.dim * self.kv_dim() * 2;
        let mlp = 3 * self.dim * self.hidden_dim;
        let per_layer = attn + mlp + 2 * self.dim;
        let output = if self.tied_embeddings {
            0
        } else {
            self.vocab_size * self.dim
        };
        self.vocab_size * self.dim + self.n_layers * per_layer + self.dim + output
    }
}
