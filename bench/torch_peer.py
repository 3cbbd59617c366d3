#!/usr/bin/python3
"""PyTorch peer of flexlearn's epoch benchmark: the lesson's miniai Learner (TrainCB, DeviceCB,
MetricsCB with accuracy and a batch-size-weighted mean loss) on the same work: Fashion-MNIST
pixels / 255 flattened to 784, Linear(784,50)-ReLU-Linear(50,10), cross-entropy, SGD lr 0.2,
train 60000 shuffled at bs, valid 10000 at 2*bs. Data preloaded as tensors (on the device with
--device cuda), so the loop, not the loader, is what is timed.

Prints one line `torch-peer: bs=.. threads=.. device=.. epoch_ms=<median after the first>
data_s=.. import_s=.. peak_rss_mb=.. acc=..`; run with Debian's /usr/bin/python3 (python3-torch).
"""
import argparse, os, sys, time

ap = argparse.ArgumentParser()
ap.add_argument('--bs', type=int, default=1024)
ap.add_argument('--epochs', type=int, default=4)
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--blas-threads', type=int, default=None, help='OpenBLAS pool (default = --threads)')
ap.add_argument('--device', default='cpu')
ap.add_argument('--lr', type=float, default=0.2)
ap.add_argument('--seed', type=int, default=42)
ap.add_argument('--json', default=None, help='also write per-epoch records [{epoch, seconds, accuracy}] here')
ap.add_argument('--data', default=os.environ.get('FLEXLEARN_DATA', '/usr/share/datasets/fashion-mnist'))
args = ap.parse_args()

# Pin every pool before torch loads: torch.set_num_threads does not bind OpenBLAS's own pool.
for v in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ[v] = str(args.threads)
os.environ['OPENBLAS_NUM_THREADS'] = str(args.blas_threads or args.threads)
t0 = time.perf_counter()
import gzip, resource
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F
t_import = time.perf_counter() - t0
torch.set_num_threads(args.threads)
torch.set_flush_denormal(True)
dev = torch.device(args.device)

def read_idx(path):
    op = gzip.open if os.path.exists(path + '.gz') else open
    with op(path + '.gz' if os.path.exists(path + '.gz') else path, 'rb') as f: buf = f.read()
    nd = buf[3]
    dims = [int.from_bytes(buf[4 + 4 * i:8 + 4 * i], 'big') for i in range(nd)]
    return np.frombuffer(buf, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)

t0 = time.perf_counter()
def load(split):
    x = read_idx(f'{args.data}/{split}-images-idx3-ubyte')
    y = read_idx(f'{args.data}/{split}-labels-idx1-ubyte')
    x = torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / 255.)
    return x.to(dev), torch.from_numpy(y.astype(np.int64)).to(dev)
(xt, yt), (xv, yv) = load('train'), load('t10k')
t_data = time.perf_counter() - t0

def batches(x, y, bs, shuffle):
    n = len(x)
    idx = torch.randperm(n, device=dev) if shuffle else None
    for i in range(0, n, bs):
        if shuffle: b = idx[i:i + bs]; yield x[b], y[b]
        else: yield x[i:i + bs], y[i:i + bs]

class Learner:
    "miniai's Learner, reduced to what this benchmark runs: the callbacks are inlined."
    def __init__(self, model, lr): self.model, self.opt = model, torch.optim.SGD(model.parameters(), lr)
    def one_epoch(self, train):
        self.model.train(train)
        correct = torch.zeros((), device=dev); total = 0; wloss = 0.0
        data = batches(xt, yt, args.bs, True) if train else batches(xv, yv, 2 * args.bs, False)
        for xb, yb in data:
            with torch.set_grad_enabled(train):
                preds = self.model(xb)                                   # TrainCB.predict
                loss = F.cross_entropy(preds, yb)                        # TrainCB.get_loss
                if train:
                    loss.backward(); self.opt.step(); self.opt.zero_grad()
            p, l = preds.detach().cpu(), loss.detach().cpu()             # MetricsCB: to_cpu
            correct += (p.argmax(1) == yb.cpu()).float().sum().to(dev); total += len(yb)
            wloss += float(l) * len(xb)
        return float(correct) / total, wloss / total

torch.manual_seed(args.seed)
model = nn.Sequential(nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10)).to(dev)
learn = Learner(model, args.lr)
times, recs = [], []
for e in range(args.epochs):
    if dev.type == 'cuda': torch.cuda.synchronize()
    t0 = time.perf_counter()
    learn.one_epoch(True)
    acc, loss = learn.one_epoch(False)
    if dev.type == 'cuda': torch.cuda.synchronize()
    times.append(time.perf_counter() - t0)
    recs.append({'epoch': e, 'train': False, 'seconds': times[-1], 'accuracy': acc, 'loss': loss})
if args.json:
    import json
    with open(args.json, 'w') as f: json.dump(recs, f)
warm = sorted(times[1:] or times)
med = warm[len(warm) // 2] if len(warm) % 2 else 0.5 * (warm[len(warm) // 2 - 1] + warm[len(warm) // 2])
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f'torch-peer: bs={args.bs} threads={args.threads} blas_threads={args.blas_threads or args.threads} device={args.device} epoch_ms={1e3 * med:.1f} '
      f'data_s={t_data:.3f} import_s={t_import:.3f} peak_rss_mb={rss:.1f} acc={acc:.3f} loss={loss:.3f}', flush=True)
