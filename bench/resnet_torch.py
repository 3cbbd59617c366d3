#!/usr/bin/python3
"""PyTorch peer of `flexlearn fit --model resnet`: 13_resnet's ResNet (tools/models_vs_torch.py's
definition), inputs (x/255 - 0.28)/0.35, cross-entropy, plain SGD (or --opt adamw --sched onecycle: 13_resnet's
recipe, torch.optim.AdamW + OneCycleLR stepped per batch), one epoch: train 60000
shuffled at bs, valid 10000 at 2*bs, on the CPU, channels_last. Data preloaded as tensors.

  bench/resnet_torch.py [--data DIR] [--bs 1024] [--lr 0.1] [--threads 2] [--epochs 1]
                        [--opt sgd|adamw] [--sched none|onecycle]

Prints `resnet-torch: bs=.. threads=.. epoch_s=.. (per epoch) peak_rss_mb=.. acc=.. loss=..`."""
import argparse, gzip, os, resource, sys, time

ap = argparse.ArgumentParser()
ap.add_argument('--data', default=os.environ.get('FLEXLEARN_DATA', '/usr/share/datasets/fashion-mnist'))
ap.add_argument('--bs', type=int, default=1024)
ap.add_argument('--lr', type=float, default=0.1)
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--epochs', type=int, default=1)
ap.add_argument('--opt', choices=('sgd', 'adamw'), default='sgd')
ap.add_argument('--sched', choices=('none', 'onecycle'), default='none')
args = ap.parse_args()
for v in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'): os.environ[v] = str(args.threads)
import numpy as np
import torch
import torch.nn.functional as F
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tools'))
from models_vs_torch import resnet

torch.set_num_threads(args.threads)
torch.set_flush_denormal(True)


def read_idx(path):
    p = path + '.gz' if os.path.exists(path + '.gz') else path
    with (gzip.open if p.endswith('.gz') else open)(p, 'rb') as f: buf = f.read()
    nd = buf[3]
    dims = [int.from_bytes(buf[4 + 4 * i:8 + 4 * i], 'big') for i in range(nd)]
    return np.frombuffer(buf, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def load(split):
    x = torch.from_numpy(read_idx(f'{args.data}/{split}-images-idx3-ubyte').astype(np.float32) / 255.)
    x = ((x - 0.28) / 0.35).reshape(-1, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    return x, torch.from_numpy(read_idx(f'{args.data}/{split}-labels-idx1-ubyte').astype(np.int64))


(xt, yt), (xv, yv) = load('train'), load('t10k')
torch.manual_seed(1)
model = resnet().to(memory_format=torch.channels_last)
for m in model.modules():
    if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)): torch.nn.init.kaiming_normal_(m.weight, a=0.1)
opt = torch.optim.AdamW(model.parameters(), args.lr) if args.opt == 'adamw' else torch.optim.SGD(model.parameters(), args.lr)
n_batches = (len(xt) + args.bs - 1) // args.bs
sched = (torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.epochs * n_batches)
         if args.sched == 'onecycle' else None)
for e in range(args.epochs):
    t0 = time.perf_counter()
    model.train()
    for b in torch.randperm(len(xt)).split(args.bs):
        loss = F.cross_entropy(model(xt[b]), yt[b])
        loss.backward(); opt.step(); opt.zero_grad()
        if sched: sched.step()
    model.eval()
    correct, tot = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(xv), 2 * args.bs):
            p = model(xv[i:i + 2 * args.bs])
            correct += int((p.argmax(1) == yv[i:i + 2 * args.bs]).sum())
            tot += float(F.cross_entropy(p, yv[i:i + 2 * args.bs])) * len(p)
    dt = time.perf_counter() - t0
    print(f'resnet-torch: epoch={e} bs={args.bs} threads={args.threads} epoch_s={dt:.2f} '
          f'peak_rss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} '
          f'acc={correct / len(xv):.3f} loss={tot / len(xv):.3f}', flush=True)
