#!/usr/bin/python3
"""One epoch of the lesson's training in PyTorch from flexlearn's starting point, for
tests/test_vs_torch.c: reads the initial weights (PyTorch's parameter order, float32) and the
epoch's sample order that flexlearn used, trains one epoch (SGD, lr, bs, cross-entropy), and
prints the valid accuracy and loss and the largest difference from flexlearn's final weights.

usage: epoch_vs_torch.py DATA_DIR INIT.bin PERM.bin FINAL.bin BS LR [OPT [SCHED]]
  OPT: sgd (default) or adamw (torch's defaults, weight_decay 0.01); SCHED: none (default) or
  onecycle (OneCycleLR(max_lr=LR, total_steps=the epoch's batches), stepped after each batch)
output: "torch: acc=0.6836 loss=0.8450 max_dw=1.19e-07 blas=openblas:/usr/lib/.../libblas.so.3"
(blas = the BLAS library this process's torch calls, as bench/torch_peer.py reports it)
"""
import gzip, os, sys
import numpy as np
import torch
import torch.nn.functional as F
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'bench'))
from torch_peer import blas_loaded

data, init, perm, final, bs, lr = sys.argv[1:7]
bs, lr = int(bs), float(lr)
opt_name = sys.argv[7] if len(sys.argv) > 7 else 'sgd'
sched_name = sys.argv[8] if len(sys.argv) > 8 else 'none'
torch.set_num_threads(1)

def idx(name):
    p = os.path.join(data, name)
    b = gzip.open(p + '.gz').read() if os.path.exists(p + '.gz') else open(p, 'rb').read()
    nd = b[3]
    d = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], 'big') for i in range(nd)]
    return np.frombuffer(b, np.uint8, offset=4 + 4 * nd).reshape(d)

def load(split):
    x = idx(f'{split}-images-idx3-ubyte')
    x = torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / 255.)
    return x, torch.from_numpy(idx(f'{split}-labels-idx1-ubyte').astype(np.int64))

(xt, yt), (xv, yv) = load('train'), load('t10k')
m = torch.nn.Sequential(torch.nn.Linear(784, 50), torch.nn.ReLU(), torch.nn.Linear(50, 10))
w = np.fromfile(init, np.float32)
o = 0
with torch.no_grad():
    for p in m.parameters():
        p.copy_(torch.from_numpy(w[o:o + p.numel()].copy()).view_as(p))
        o += p.numel()
order = torch.from_numpy(np.fromfile(perm, np.int32).astype(np.int64))
assert sorted(order.tolist()) == list(range(len(xt))), 'not a permutation'
opt = torch.optim.AdamW(m.parameters(), lr) if opt_name == 'adamw' else torch.optim.SGD(m.parameters(), lr)
n_batches = (len(order) + bs - 1) // bs
sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=n_batches) if sched_name == 'onecycle' else None
for i in range(0, len(order), bs):
    b = order[i:i + bs]
    F.cross_entropy(m(xt[b]), yt[b]).backward()
    opt.step()
    if sched:
        sched.step()
    opt.zero_grad()
with torch.no_grad():
    p = m(xv)
    acc = (p.argmax(1) == yv).float().mean().item()
    loss = F.cross_entropy(p, yv).item()
fin = np.fromfile(final, np.float32)
o, dw = 0, 0.0
for p in m.parameters():
    dw = max(dw, float(np.abs(p.detach().numpy().ravel() - fin[o:o + p.numel()]).max()))
    o += p.numel()
kind, path, _ = blas_loaded(torch)
print(f'torch: acc={acc:.4f} loss={loss:.4f} max_dw={dw:.3g} blas={kind}:{path}')
