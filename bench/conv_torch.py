#!/usr/bin/python3
"""The PyTorch peer of bench/bench_conv.c: the 13_resnet ResNet's convolutions at bs 1024,
each timed alone (forward, backward-data, backward-weights; median of REPS after a warm-up),
float32, channels_last, oneDNN (torch.backends.mkldnn) on the CPU.

usage: conv_torch.py [BS] [THREADS] [REPS] [nchw]   (nchw: contiguous NCHW instead)"""
import sys, time
import torch
import torch.nn.functional as F

bs = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
thr = int(sys.argv[2]) if len(sys.argv) > 2 else 2
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 5
fmt = torch.contiguous_format if len(sys.argv) > 4 and sys.argv[4] == 'nchw' else torch.channels_last
torch.set_num_threads(thr)
torch.backends.mkldnn.enabled = True
specs = [("b1 conv1 1->8", 1, 28, 8, 3, 1), ("b1 conv2 8->8", 8, 28, 8, 3, 1), ("b1 id 1->8", 1, 28, 8, 1, 1),
         ("b2 conv1 8->16", 8, 28, 16, 3, 1), ("b2 conv2 16->16 s2", 16, 28, 16, 3, 2), ("b2 id 8->16", 8, 14, 16, 1, 1),
         ("b3 conv1 16->32", 16, 14, 32, 3, 1), ("b3 conv2 32->32 s2", 32, 14, 32, 3, 2), ("b3 id 16->32", 16, 7, 32, 1, 1),
         ("b4 conv1 32->64", 32, 7, 64, 3, 1), ("b4 conv2 64->64 s2", 64, 7, 64, 3, 2), ("b4 id 32->64", 32, 4, 64, 1, 1),
         ("b5 conv1 64->128", 64, 4, 128, 3, 1), ("b5 conv2 128->128 s2", 128, 4, 128, 3, 2), ("b5 id 64->128", 64, 2, 128, 1, 1),
         ("b6 conv1 128->256", 128, 2, 256, 3, 1), ("b6 conv2 256->256 s2", 256, 2, 256, 3, 2), ("b6 id 128->256", 128, 1, 256, 1, 1)]

def med(f):
    f()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter(); f(); t.append(1e3 * (time.perf_counter() - t0))
    return sorted(t)[len(t) // 2]

tot = [0.0, 0.0, 0.0]
print(f"{'conv':22s} {'fwd':>9s} {'bwd_data':>9s} {'bwd_w':>9s}   (ms, bs {bs}, {thr} threads, {fmt})")
for name, C, H, O, k, s in specs:
    x = torch.randn(bs, C, H, H).to(memory_format=fmt)
    w = (0.1 * torch.randn(O, C, k, k)).to(memory_format=fmt)
    y = F.conv2d(x, w, None, s, k // 2)
    gy = torch.randn_like(y).to(memory_format=fmt)
    fwd = med(lambda: F.conv2d(x, w, None, s, k // 2))
    bd = 0.0 if C == 1 else med(lambda: torch.ops.aten.convolution_backward(gy, x, w, None, [s, s], [k // 2, k // 2], [1, 1], False, [0, 0], 1, [True, False, False]))
    bw = med(lambda: torch.ops.aten.convolution_backward(gy, x, w, None, [s, s], [k // 2, k // 2], [1, 1], False, [0, 0], 1, [False, True, False]))
    tot[0] += fwd; tot[1] += bd; tot[2] += bw
    print(f"{name:22s} {fwd:9.2f} {bd:9.2f} {bw:9.2f}")
print(f"{'sum':22s} {tot[0]:9.2f} {tot[1]:9.2f} {tot[2]:9.2f}   total {sum(tot):.1f} ms")

# the other kernels at the widest activation (bs x 16 x 28 x 28), forward / backward
x = torch.randn(bs, 16, 28, 28).to(memory_format=fmt).requires_grad_()
w, b = torch.ones(16, requires_grad=True), torch.zeros(16, requires_grad=True)
rm, rv = torch.zeros(16), torch.ones(16)
ops = [("batch_norm", lambda: F.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5)),
       ("general_relu", lambda: F.leaky_relu(x, 0.1) - 0.4),
       ("avg_pool2d k2", lambda: F.avg_pool2d(x, 2, ceil_mode=True)),
       ("global_avg_pool", lambda: x.mean((2, 3)))]
for name, f in ops:
    y = f()
    g = torch.randn_like(y)
    fw = med(lambda: f())
    bw = med(lambda: torch.autograd.grad(y, [x], g, retain_graph=True))
    print(f"{name:22s} {fw:9.2f} {bw:9.2f}            (bs x 16 x 28 x 28)")
