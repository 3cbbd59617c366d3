#!/usr/bin/python3
"""PyTorch peer of flexlearn's epoch benchmark: the lesson's miniai Learner (TrainCB, DeviceCB,
MetricsCB with accuracy and a batch-size-weighted mean loss) on the same work: Fashion-MNIST
pixels / 255 flattened to 784, Linear(784,50)-ReLU-Linear(50,10), cross-entropy, SGD lr 0.2,
train 60000 shuffled at bs, valid 10000 at 2*bs. Data preloaded as tensors (on the device with
--device cuda), so the loop, not the loader, is what is timed.

Prints one line `torch-peer: bs=.. threads=.. device=.. epoch_ms=<median after the first>
data_s=.. import_s=.. peak_rss_mb=.. acc=.. blas=<kind>:<path> blas_core=.. sgemm_gflops=..
sgemm_mlp_gflops=..`; run with Debian's /usr/bin/python3 (python3-torch). blas = the BLAS library
whose sgemm_ this process's torch calls (openblas, mkl, blis, atlas, generic = the reference BLAS,
or unknown); sgemm_gflops = torch.mm at 1024x1024x1024, sgemm_mlp_gflops = at 1024x784 @ 784x50
(the lesson's first layer), both on the CPU with the peer's threads. `--probe` prints only the
BLAS fields and exits. tools/epoch_vs_torch.py imports blas_loaded() from here.
"""
import argparse, os, time

BLAS_GOOD = ('openblas', 'mkl', 'blis')   # what a benchmark may compare against


def blas_kind(path):
    "Classify a BLAS library file: openblas, mkl, blis, atlas, generic (the reference BLAS), unknown."
    p = path.lower()
    for k in ('openblas', 'mkl', 'blis', 'atlas'):
        if k in p: return k
    # Debian's reference BLAS: /usr/lib/<triplet>/blas/libblas.so.3 (the libblas3 package)
    if os.path.basename(os.path.dirname(p)) == 'blas' and os.path.basename(p).startswith('libblas.so'):
        return 'generic'
    return 'unknown'


def blas_loaded(torch):
    """(kind, path, core) of the BLAS whose sgemm_ torch calls in this process, after one matmul.
    Looks sgemm_ up through libtorch_cpu's own handle (its DT_NEEDED libblas.so.3, i.e. the
    libblas.so.3 alternative on Debian) and asks dladdr which file holds it, symlinks resolved;
    falls back to the BLAS-like libraries mapped in /proc/self/maps. A BLAS linked into
    libtorch_cpu itself (pip wheels: MKL) is named after torch's BLAS_INFO, path = libtorch_cpu."""
    import ctypes
    a = torch.ones(64, 64); a.mm(a)
    maps = []
    with open('/proc/self/maps') as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith('/') and parts[5].strip() not in maps:
                maps.append(parts[5].strip())
    path, internal = None, False
    libtorch = next((m for m in maps if os.path.basename(m).startswith('libtorch_cpu')), None)
    if libtorch:
        try:
            addr = ctypes.cast(ctypes.CDLL(libtorch).sgemm_, ctypes.c_void_p).value

            class DlInfo(ctypes.Structure):
                _fields_ = [('fname', ctypes.c_char_p), ('fbase', ctypes.c_void_p),
                            ('sname', ctypes.c_char_p), ('saddr', ctypes.c_void_p)]
            info = DlInfo()
            if ctypes.CDLL(None).dladdr(ctypes.c_void_p(addr), ctypes.byref(info)) and info.fname:
                path = os.path.realpath(info.fname.decode())
        except AttributeError:      # no sgemm_ in libtorch_cpu's dependencies: BLAS linked inside
            internal = True
        except OSError:
            pass
    if not path and not internal:
        libs = [os.path.realpath(m) for m in maps
                if any(k in os.path.basename(m).lower() for k in ('blas', 'mkl', 'blis'))]
        libs.sort(key=lambda m: blas_kind(m) not in BLAS_GOOD)   # an optimised one first
        path = libs[0] if libs else None
    if libtorch and (internal or path is None or path == os.path.realpath(libtorch)):
        # no BLAS library of its own: linked into libtorch_cpu (MKL in the pip wheels)
        cfg = torch.__config__.show()
        info = cfg.split('BLAS_INFO=', 1)[1].split(',', 1)[0].strip() if 'BLAS_INFO=' in cfg else ''
        return (info if info in BLAS_GOOD else 'unknown'), os.path.realpath(libtorch), ''
    path = path or 'none'
    kind, core = blas_kind(path), ''
    if kind == 'openblas':
        try:
            f = ctypes.CDLL(path).openblas_get_corename
            f.restype = ctypes.c_char_p
            core = f().decode()
        except (OSError, AttributeError):
            pass
    return kind, path, core


def sgemm_gflops(torch, m, k, n, budget_s=0.15):
    "Best rate of torch.mm (float32, CPU) at [m,k] @ [k,n], in GFLOP/s."
    a, b = torch.rand(m, k), torch.rand(k, n)
    torch.mm(a, b)
    best, spent = float('inf'), 0.0
    while spent < budget_s or best == float('inf'):
        t0 = time.perf_counter(); torch.mm(a, b); dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
    return 2.0 * m * k * n / best / 1e9


def blas_fields(torch):
    "The fields of the torch-peer line that say which BLAS this process runs, and how fast."
    kind, path, core = blas_loaded(torch)
    return (f'blas={kind}:{path} blas_core={core or "NA"} sgemm_gflops={sgemm_gflops(torch, 1024, 1024, 1024):.1f} '
            f'sgemm_mlp_gflops={sgemm_gflops(torch, 1024, 784, 50):.1f}')


def main():
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
    ap.add_argument('--probe', action='store_true', help='print only the BLAS fields (which library, its rate) and exit')
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
    blas = blas_fields(torch)
    if args.probe:
        print(f'torch-peer: threads={args.threads} blas_threads={args.blas_threads or args.threads} {blas}', flush=True)
        return

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
          f'data_s={t_data:.3f} import_s={t_import:.3f} peak_rss_mb={rss:.1f} acc={acc:.3f} loss={loss:.3f} {blas}', flush=True)


if __name__ == '__main__':
    main()
