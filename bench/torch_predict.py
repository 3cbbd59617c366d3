#!/usr/bin/python3
"""PyTorch peer of flexlearn's predict benchmark (bench/predict.sh): the same weights (the
safetensors file flexlearn wrote, read with json + torch.frombuffer) in nn.Sequential(Linear(784,50),
ReLU, Linear(50,10)), eager inference under torch.no_grad() in eval mode on the 10000 test images
held as a uint8 tensor, at the same batch size: per batch x.float() / 255, the logits, the class and
its softmax probability (what flexlearn computes per image). Median of --reps runs after a warm-up.

Prints `torch-predict: bs=.. threads=.. images=10000 ms=.. images_per_s=.. best_ms=.. accuracy=..
blas=<kind>:<path>`.
"""
import argparse, gzip, json, os, struct, time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--weights', required=True)
    ap.add_argument('--data', default=os.environ.get('FLEXLEARN_DATA', '/usr/share/datasets/fashion-mnist'))
    ap.add_argument('--bs', type=int, default=1024)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--reps', type=int, default=20)
    args = ap.parse_args()
    for v in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
        os.environ[v] = str(args.threads)
    import torch
    from torch import nn
    from torch_peer import blas_loaded
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)

    b = open(args.weights, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop('__metadata__', None)
    data = bytearray(b[8 + n:])
    sd = {k: torch.frombuffer(data, dtype=torch.float32, offset=v['data_offsets'][0],
                              count=(v['data_offsets'][1] - v['data_offsets'][0]) // 4).reshape(v['shape'])
          for k, v in h.items()}
    model = nn.Sequential(nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10))
    model.load_state_dict(sd, strict=True)
    model.eval()

    def idx(name):
        p = os.path.join(args.data, name)
        raw = gzip.open(p + '.gz').read() if os.path.exists(p + '.gz') else open(p, 'rb').read()
        dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(raw[3])]
        return torch.frombuffer(bytearray(raw[4 + 4 * raw[3]:]), dtype=torch.uint8).reshape(dims)
    x8 = idx('t10k-images-idx3-ubyte').reshape(-1, 784)
    y = idx('t10k-labels-idx1-ubyte').long()

    def run():
        cls, prob = [], []
        with torch.no_grad():
            for i in range(0, len(x8), args.bs):
                logits = model(x8[i:i + args.bs].float() / 255)
                p, c = torch.softmax(logits, 1).max(1)
                cls.append(c), prob.append(p)
        return torch.cat(cls), torch.cat(prob)

    times = []
    for r in range(args.reps + 1):   # --reps 0: one run, timed (a whole process, as a user runs it)
        t0 = time.perf_counter()
        cls, prob = run()
        if r or not args.reps: times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2] if len(times) % 2 else 0.5 * (times[len(times) // 2 - 1] + times[len(times) // 2])
    acc = (cls == y).float().mean().item()
    kind, path, _ = blas_loaded(torch)
    print(f'torch-predict: bs={args.bs} threads={args.threads} images={len(x8)} ms={1e3 * med:.3f} '
          f'images_per_s={len(x8) / med:.0f} best_ms={1e3 * times[0]:.3f} accuracy={acc:.4f} blas={kind}:{path}',
          flush=True)


if __name__ == '__main__':
    main()
