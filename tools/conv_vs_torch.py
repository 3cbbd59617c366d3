#!/usr/bin/python3
"""Reference values for tests/test_conv.c: the conv-net ops and their gradients in PyTorch,
in float64, from the test's float32 inputs.

usage: conv_vs_torch.py DIR
DIR/cases.txt has one case a line, "ID OP PARAMS..."; case ID's inputs are DIR/cID_iJ.bin
(float32, C order, in the order below) and its outputs are written to DIR/cID_oJ.bin (float64).
Every gradient is of L = sum(y * R), R the case's last input.
  conv  ID N C H W O k stride pad bias   in: x, w, [b], R       out: y, dx, dw, [db]
  bn    ID N C H W affine momentum eps   (H = W = 0: a 2-d (N, C) input)
        in: x1, x2, [w, b], running_mean, running_var, R
        out: (training on x1, then on x2:) y, dx, [dw, db] of the second step, running_mean,
             running_var; (then eval on x1:) y, dx, [dw, db]
  pool  ID N C H W k ceil                in: x, R   out: y, dx   (AvgPool2d(k, ceil_mode))
  gpool ID N C H W                       in: x, R   out: y, dx   (mean over H, W)
  grelu ID n leak sub maxv               in: x, R   out: y, dx   (maxv 'inf': no clamp)
"""
import math, os, sys
import numpy as np
import torch
import torch.nn.functional as F

d = sys.argv[1]
torch.set_num_threads(1)

def load(cid, j, shape):
    a = np.fromfile(os.path.join(d, f'c{cid}_i{j}.bin'), dtype=np.float32).reshape(shape)
    return torch.tensor(a.astype(np.float64))

def save(cid, outs):
    for j, t in enumerate(outs):
        t.detach().numpy().astype(np.float64).tofile(os.path.join(d, f'c{cid}_o{j}.bin'))

def grads(y, R, ins):
    for t in ins:
        t.grad = None
    (y * R).sum().backward()
    return [t.grad for t in ins]

for line in open(os.path.join(d, 'cases.txt')):
    f = line.split()
    if not f:
        continue
    cid, op, p = f[0], f[1], f[2:]
    if op == 'conv':
        N, C, H, W, O, k, s, pad, bias = map(int, p)
        x = load(cid, 0, (N, C, H, W)).requires_grad_()
        w = load(cid, 1, (O, C, k, k)).requires_grad_()
        ins = [x, w]
        b = None
        if bias:
            b = load(cid, 2, (O,)).requires_grad_()
            ins.append(b)
        Ho, Wo = (H + 2 * pad - k) // s + 1, (W + 2 * pad - k) // s + 1
        R = load(cid, len(ins), (N, O, Ho, Wo))
        y = F.conv2d(x, w, b, stride=s, padding=pad)
        save(cid, [y] + grads(y, R, ins))
    elif op == 'bn':
        N, C, H, W, affine = map(int, p[:5])
        mom, eps = float(p[5]), float(p[6])
        shape = (N, C, H, W) if H else (N, C)
        x1 = load(cid, 0, shape).requires_grad_()
        x2 = load(cid, 1, shape).requires_grad_()
        j = 2
        w = b = None
        if affine:
            w = load(cid, 2, (C,)).requires_grad_()
            b = load(cid, 3, (C,)).requires_grad_()
            j = 4
        rm, rv = load(cid, j, (C,)), load(cid, j + 1, (C,))
        R = load(cid, j + 2, shape)
        params = [w, b] if affine else []
        F.batch_norm(x1, rm, rv, w, b, True, mom, eps)
        y = F.batch_norm(x2, rm, rv, w, b, True, mom, eps)
        outs = [y] + grads(y, R, [x2] + params) + [rm.clone(), rv.clone()]
        y = F.batch_norm(x1, rm, rv, w, b, False, mom, eps)
        outs += [y] + grads(y, R, [x1] + params)
        save(cid, outs)
    elif op == 'pool':
        N, C, H, W, k, ceil = map(int, p)
        x = load(cid, 0, (N, C, H, W)).requires_grad_()
        y = F.avg_pool2d(x, k, ceil_mode=bool(ceil))
        R = load(cid, 1, tuple(y.shape))
        save(cid, [y] + grads(y, R, [x]))
    elif op == 'gpool':
        N, C, H, W = map(int, p)
        x = load(cid, 0, (N, C, H, W)).requires_grad_()
        y = x.mean((2, 3))
        R = load(cid, 1, (N, C))
        save(cid, [y] + grads(y, R, [x]))
    elif op == 'grelu':
        n = int(p[0])
        leak, sub, maxv = float(p[1]), float(p[2]), float(p[3])
        x = load(cid, 0, (n,)).requires_grad_()
        y = F.leaky_relu(x, leak) if leak else F.relu(x)
        y = y - sub
        if not math.isinf(maxv):
            y = y.clamp_max(maxv)
        R = load(cid, 1, (n,))
        save(cid, [y] + grads(y, R, [x]))
    else:
        sys.exit(f'conv_vs_torch.py: unknown op {op}')
