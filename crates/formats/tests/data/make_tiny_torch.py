"""Writes tiny_torch.pth, a real torch.save archive for the meta reader's tests.

Run from this folder: python make_tiny_torch.py

Every tensor is built from v(n) = [i * 0.25 - 1 for i in range(n)] (exact in f32, f16 and bf16),
so the test can recompute the expected values. The archive holds:
  "0.weight"  f32 [3, 4]  a Linear weight: v(12) reshaped (module state dict, with _metadata)
  "0.bias"    f32 [3]     v(3)
  "1.weight"  bf16 [3]    a LayerNorm weight converted to bf16: v(3)
  "1.bias"    bf16 [3]    v(3)
  "wt"        f32 [4, 3]  the transpose of "0.weight" (shares its storage, strides (1, 4))
  "rows"      f32 [2, 4]  rows 1..3 of a v(20) [5, 4] tensor (storage offset 4, storage of 20)
  "half"      f16 [2, 3]  v(6) reshaped
  "param"     f32 [2, 2]  an nn.Parameter holding v(4)
  "step"      int 7       not a tensor
"""
import torch


def v(n):
    return torch.arange(n, dtype=torch.float32) * 0.25 - 1


model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
with torch.no_grad():
    model[0].weight.copy_(v(12).reshape(3, 4))
    model[0].bias.copy_(v(3))
    model[1].weight.copy_(v(3))
    model[1].bias.copy_(v(3))
model[1].to(torch.bfloat16)
sd = model.state_dict()
sd["wt"] = sd["0.weight"].t()
sd["rows"] = v(20).reshape(5, 4)[1:3]
sd["half"] = v(6).reshape(2, 3).to(torch.float16)
sd["param"] = torch.nn.Parameter(v(4).reshape(2, 2))
sd["step"] = 7
torch.save(sd, "tiny_torch.pth")
