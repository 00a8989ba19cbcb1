"""Probe how prunable exact top-K is for a trained model (norm bound, TF32 windows).

python3 scripts/probe_mips.py MODEL_DIR [N_USERS]
"""
import sys, numpy as np, torch

d = sys.argv[1]
nu = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
V = torch.from_numpy(np.load(f"{d}/item_factors.npy")).cuda()
U = torch.from_numpy(np.load(f"{d}/user_factors.npy")).cuda()
torch.backends.cuda.matmul.allow_tf32 = False
n, k = V.shape
vn = V.norm(dim=1)
svn, order = vn.sort(descending=True)
print(f"items {n} k {k}; item norm quantiles:",
      [f"{q}:{torch.quantile(vn[:1000000], q).item():.4g}" for q in (0.5, 0.9, 0.99, 0.999)],
      "max", svn[0].item())
users = U[:nu]
un = users.norm(dim=1)
S = users @ V.T  # nu x n fp32
top = S.topk(10, dim=1).values
s10 = top[:, -1]
# prefix of norm-sorted items needed: items with ||v|| >= s10/||u||
need = (svn.unsqueeze(0) >= (s10 / un).unsqueeze(1)).sum(dim=1).float()
fr = need / n
print("norm-bound prefix fraction: median %.4f p90 %.4f p99 %.4f max %.4f" % tuple(
    torch.quantile(fr, torch.tensor([0.5, 0.9, 0.99, 1.0], device=fr.device)).tolist()))
print("score s10 / (|u| max|v|): median %.4f" % (s10 / (un * svn[0])).median().item())
for name, eps in (("tf32 2^-10", 2**-10), ("bf16 2^-7", 2**-7), ("3xtf32 2^-20", 2**-20), ("fp16 2^-10", 2**-10)):
    win = eps * un.unsqueeze(1) * vn.unsqueeze(0)
    cand = (S >= (s10.unsqueeze(1) - win)).sum(dim=1).float()
    print(f"{name}: candidates per user median {cand.median().item():.0f} p99 {torch.quantile(cand, 0.99).item():.0f} max {cand.max().item():.0f}")
# statistical error of actual tf32 matmul
torch.backends.cuda.matmul.allow_tf32 = True
S2 = users @ V.T
err = (S2 - S).abs() / (un.unsqueeze(1) * vn.unsqueeze(0))
print("actual tf32 rel err max %.3g p99.99 %.3g" % (err.max().item(), torch.quantile(err[:50].flatten()[:10000000], 0.9999).item()))
# gap structure
print("top1-top10 gap / (|u||v|max) median %.3g" % ((top[:, 0] - s10) / (un * svn[0])).median().item())
