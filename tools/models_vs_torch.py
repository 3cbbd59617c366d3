#!/usr/bin/python3
"""The course's conv models in PyTorch, for tests/test_models.c (Debian's python3-torch).

  models_vs_torch.py load MODEL WEIGHTS.safetensors
      builds MODEL (cnn | cnn_bn | resnet | resnet_wide) as the notebooks define it, loads the file with
      load_state_dict(strict=True) and prints "ok <parameter count> <buffer count>".
  models_vs_torch.py step MODEL WEIGHTS.safetensors X.bin Y.bin OUT.bin
      the same, then one training step's forward + backward in float64 (BatchNorm in training
      mode) on the batch X (f32 (N, 1, 28, 28)) / Y (i32 (N)): prints the loss (repr) and writes
      to OUT.bin, as float64, every parameter's gradient (named_parameters order), then every
      buffer after the step (named_buffers order, without num_batches_tracked).
"""
import json
import struct
import sys
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn


class GeneralRelu(nn.Module):  # 11_initializing
    def __init__(self, leak=None, sub=None, maxv=None):
        super().__init__()
        self.leak, self.sub, self.maxv = leak, sub, maxv

    def forward(self, x):
        x = F.leaky_relu(x, self.leak) if self.leak is not None else F.relu(x)
        if self.sub is not None: x -= self.sub
        if self.maxv is not None: x.clamp_max_(self.maxv)
        return x


act_gr = partial(GeneralRelu, leak=0.1, sub=0.4)


def conv(ni, nf, ks=3, stride=2, act=nn.ReLU, norm=None, bias=None):  # 11_initializing
    if bias is None: bias = not isinstance(norm, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d))
    layers = [nn.Conv2d(ni, nf, stride=stride, kernel_size=ks, padding=ks // 2, bias=bias)]
    if norm: layers.append(norm(nf))
    if act: layers.append(act())
    return nn.Sequential(*layers)


def _conv_block(ni, nf, stride, act=act_gr, norm=None, ks=3):  # 13_resnet
    return nn.Sequential(conv(ni, nf, stride=1, act=act, norm=norm, ks=ks),
                         conv(nf, nf, stride=stride, act=None, norm=norm, ks=ks))


class ResBlock(nn.Module):  # 13_resnet, as taught (idconv without the norm)
    def __init__(self, ni, nf, stride=1, ks=3, act=act_gr, norm=None):
        super().__init__()
        self.convs = _conv_block(ni, nf, stride, act=act, ks=ks, norm=norm)
        self.idconv = (lambda x: x) if ni == nf else conv(ni, nf, ks=1, stride=1, act=None)
        self.pool = (lambda x: x) if stride == 1 else nn.AvgPool2d(2, ceil_mode=True)
        self.act = act()

    def forward(self, x): return self.act(self.convs(x) + self.idconv(self.pool(x)))


def resnet(act=act_gr, nfs=(8, 16, 32, 64, 128, 256), norm=nn.BatchNorm2d):
    layers = [ResBlock(1, 8, stride=1, act=act, norm=norm)]
    layers += [ResBlock(nfs[i], nfs[i + 1], act=act, norm=norm, stride=2) for i in range(len(nfs) - 1)]
    layers += [nn.Flatten(), nn.Linear(nfs[-1], 10, bias=False), nn.BatchNorm1d(10)]
    return nn.Sequential(*layers)


def resnet_wide(act=act_gr, nfs=(16, 32, 64, 128, 256, 512), norm=nn.BatchNorm2d):  # 14_augment
    layers = [ResBlock(1, 16, ks=5, stride=1, act=act, norm=norm)]
    layers += [ResBlock(nfs[i], nfs[i + 1], act=act, norm=norm, stride=2) for i in range(len(nfs) - 1)]
    layers += [nn.Flatten(), nn.Linear(nfs[-1], 10, bias=False), nn.BatchNorm1d(10)]
    return nn.Sequential(*layers)


def cnn_bn(act=act_gr, nfs=(1, 8, 16, 32, 64), norm=nn.BatchNorm2d):  # 11_initializing's get_model
    layers = [conv(nfs[i], nfs[i + 1], act=act, norm=norm) for i in range(len(nfs) - 1)]
    return nn.Sequential(*layers, conv(nfs[-1], 10, act=None, norm=False, bias=True), nn.Flatten())


def cnn():  # 10_activations
    def c(ni, nf, ks=3, act=True):
        res = nn.Conv2d(ni, nf, stride=2, kernel_size=ks, padding=ks // 2)
        if act: res = nn.Sequential(res, nn.ReLU())
        return res
    return nn.Sequential(c(1, 8, ks=5), c(8, 16), c(16, 32), c(32, 64), c(64, 10, act=False), nn.Flatten())


def read_safetensors(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop('__metadata__', None)
    data = bytearray(b[8 + n:])
    sd = {}
    for k, v in h.items():
        assert v['dtype'] == 'F32', k
        s, e = v['data_offsets']
        sd[k] = torch.frombuffer(data, dtype=torch.float32, offset=s, count=(e - s) // 4).reshape(v['shape']).clone()
    return sd


def main():
    mode, name, weights = sys.argv[1:4]
    m = {'cnn': cnn, 'cnn_bn': cnn_bn, 'resnet': resnet, 'resnet_wide': resnet_wide}[name]()
    m.load_state_dict(read_safetensors(weights), strict=True)
    bufs = [b for k, b in m.named_buffers() if not k.endswith('num_batches_tracked')]
    if mode == 'load':
        print('ok', sum(p.numel() for p in m.parameters()), len(bufs))
        return
    xs, ys, out = sys.argv[4:7]
    m = m.double().train()
    x = torch.frombuffer(bytearray(open(xs, 'rb').read()), dtype=torch.float32).reshape(-1, 1, 28, 28).double()
    y = torch.frombuffer(bytearray(open(ys, 'rb').read()), dtype=torch.int32).long()
    loss = F.cross_entropy(m(x), y)
    loss.backward()
    print(repr(loss.item()))
    bufs = [b for k, b in m.named_buffers() if not k.endswith('num_batches_tracked')]
    with open(out, 'wb') as f:
        for p in m.parameters(): f.write(p.grad.detach().contiguous().numpy().tobytes())
        for b in bufs: f.write(b.detach().contiguous().numpy().tobytes())


if __name__ == '__main__':
    main()
