#!/usr/bin/python3
"""Generates the PyTorch reference fixtures that tests/test_ops.c checks the core against.

Run with Debian's python (python3-torch):   /usr/bin/python3 tools/gen_fixtures.py
It rewrites tests/fixtures/*.bin; the output is deterministic (same bytes on every run).

For each case the inputs come from torch.manual_seed(seed); the op runs in float32 on the CPU;
the scalar L = sum(out * R) with a fixed random R of out's shape (L = out for ops whose output
is a scalar) is backpropagated, and the file holds the inputs, R, out and the gradient of L
with respect to every input that requires grad.

File format (all little-endian):
    char     magic[4] = "FLFX"
    uint32   version  = 1
    uint32   count    (number of tensors)
    count x {
        uint32 name_len; char name[name_len]     (no terminator)
        uint32 dtype                             (0 = float32, 1 = int32)
        uint32 ndim; int64 dims[ndim]
        data: prod(dims) elements of dtype, C order
    }
Tensor names: inputs "a", "b", "c", ... (op-specific, see CASES below; "t" is an int target),
"R" (absent when out is a scalar), "out", and "g<name>" for the gradient of input <name>.
"""
import os
import struct
import sys

import torch
import torch.nn.functional as F

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


def write_fixture(path, tensors):
    """tensors: list of (name, torch tensor float32 or int32)."""
    buf = bytearray(b"FLFX")
    buf += struct.pack("<II", 1, len(tensors))
    for name, t in tensors:
        t = t.detach().contiguous()
        if t.dtype == torch.float32:
            dt, data = 0, t.numpy().astype("<f4").tobytes()
        elif t.dtype in (torch.int32, torch.int64):
            dt, data = 1, t.to(torch.int32).numpy().astype("<i4").tobytes()
        else:
            raise ValueError(f"{name}: unsupported dtype {t.dtype}")
        nb = name.encode()
        buf += struct.pack("<I", len(nb)) + nb
        buf += struct.pack("<II", dt, t.dim())
        buf += struct.pack(f"<{t.dim()}q", *t.shape)
        buf += data
    with open(path, "wb") as f:
        f.write(bytes(buf))
    return len(buf)


def run_case(name, seed, make_inputs, fn, no_grad=()):
    """make_inputs() -> dict name -> tensor (draws from the seeded generator);
    fn(**inputs) -> out. Inputs in no_grad (and int tensors) get no gradient."""
    torch.manual_seed(seed)
    inputs = make_inputs()
    for k, v in inputs.items():
        if v.dtype == torch.float32 and k not in no_grad:
            v.requires_grad_(True)
    out = fn(**inputs)
    tensors = [(k, v) for k, v in inputs.items()]
    if out.dim() == 0:  # scalar output: L = out; stored as shape (1,)
        L = out
        out_store = out.reshape(1)
    else:
        R = torch.randn(out.shape)
        L = (out * R).sum()
        tensors.append(("R", R))
        out_store = out
    L.backward()
    tensors.append(("out", out_store))
    for k, v in inputs.items():
        if v.requires_grad:
            tensors.append(("g" + k, v.grad))
    return write_fixture(os.path.join(OUT_DIR, name + ".bin"), tensors)


def away_from_zero(x, margin=0.05):
    """Moves entries with |x| < margin to +-margin.. so relu's kink is never hit."""
    s = torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
    return torch.where(x.abs() < margin, s * (margin + x.abs()), x)


def logits_with_spike(B, C):
    x = torch.randn(B, C) * 5
    x[1, 3] = 80.0          # a row whose max dominates: exp(80) overflows without max-subtraction
    x[2, :] = x[2, :] - 90  # a row of large negative logits
    return x


def logits_offset(B, C):
    """Logits far from 0 (rows shifted by up to +-1000): a log-probability must still come out
    to fp32 accuracy, which needs (x - max) - log(sum) rather than x - (max + log(sum))."""
    return torch.randn(B, C) * 3 + (torch.rand(B, 1) * 2000 - 1000).round()


def mlp(a, w1, b1, w2, b2, t):
    h = F.relu(F.linear(a, w1, b1))
    return F.cross_entropy(F.linear(h, w2, b2), t.long())


def mlp_inputs():
    l1, l2 = torch.nn.Linear(784, 50), torch.nn.Linear(50, 10)   # PyTorch's default init
    return {
        "a": torch.rand(8, 784),                 # like MNIST pixels / 255
        "w1": l1.weight.detach().clone(),
        "b1": l1.bias.detach().clone(),
        "w2": l2.weight.detach().clone(),
        "b2": l2.bias.detach().clone(),
        "t": torch.randint(0, 10, (8,), dtype=torch.int32),
    }


# name, seed, inputs, op (the C test calls the matching fl_ op)
CASES = [
    ("matmul", 1, lambda: {"a": torch.randn(5, 7), "b": torch.randn(7, 3)}, lambda a, b: a @ b),
    ("matmul_wide", 2, lambda: {"a": torch.rand(8, 784), "b": torch.randn(784, 16) * 0.036},
     lambda a, b: a @ b),
    ("linear_bias", 3, lambda: {"a": torch.randn(6, 9), "b": torch.randn(4, 9), "c": torch.randn(4)},
     lambda a, b, c: F.linear(a, b, c)),
    ("linear_nobias", 4, lambda: {"a": torch.randn(6, 9), "b": torch.randn(4, 9)},
     lambda a, b: F.linear(a, b)),
    ("add_row", 5, lambda: {"a": torch.randn(4, 3), "b": torch.randn(3)}, lambda a, b: a + b),
    ("mul_outer", 6, lambda: {"a": torch.randn(4, 1), "b": torch.randn(1, 3)}, lambda a, b: a * b),
    ("sub_3d", 7, lambda: {"a": torch.randn(2, 3, 4), "b": torch.randn(3, 1)}, lambda a, b: a - b),
    ("add_same", 8, lambda: {"a": torch.randn(3, 5), "b": torch.randn(3, 5)}, lambda a, b: a + b),
    ("sub_same", 9, lambda: {"a": torch.randn(3, 5), "b": torch.randn(3, 5)}, lambda a, b: a - b),
    ("mul_same", 10, lambda: {"a": torch.randn(3, 5), "b": torch.randn(3, 5)}, lambda a, b: a * b),
    ("mul_bcast_left", 11, lambda: {"a": torch.randn(5), "b": torch.randn(2, 3, 5)}, lambda a, b: a * b),
    ("relu", 12, lambda: {"a": away_from_zero(torch.randn(4, 6))}, lambda a: F.relu(a)),
    ("sum", 13, lambda: {"a": torch.randn(3, 4, 5)}, lambda a: a.sum()),
    ("mean", 14, lambda: {"a": torch.randn(3, 4, 5)}, lambda a: a.mean()),
    ("log_softmax", 15, lambda: {"a": logits_with_spike(6, 10)}, lambda a: F.log_softmax(a, dim=1)),
    ("cross_entropy", 16,
     lambda: {"a": logits_with_spike(8, 10), "t": torch.tensor([0, 3, 9, 1, 5, 5, 2, 7], dtype=torch.int32)},
     lambda a, t: F.cross_entropy(a, t.long())),
    ("log_softmax_offset", 19, lambda: {"a": logits_offset(6, 10)}, lambda a: F.log_softmax(a, dim=1)),
    ("cross_entropy_offset", 20,
     lambda: {"a": logits_offset(8, 10), "t": torch.tensor([0, 3, 9, 1, 5, 5, 2, 7], dtype=torch.int32)},
     lambda a, t: F.cross_entropy(a, t.long())),
    ("mse", 17, lambda: {"a": torch.randn(7, 3), "b": torch.randn(7, 3)}, lambda a, b: F.mse_loss(a, b)),
    ("mlp", 18, mlp_inputs, mlp),
]


def main():
    torch.set_num_threads(1)  # one summation order: the same bytes on every run
    os.makedirs(OUT_DIR, exist_ok=True)
    total = 0
    for name, seed, make, fn in CASES:
        # fl_mse's grad flows to pred only; the MLP's input is data (no grad, as in the lesson)
        no_grad = {"mse": ("b",), "mlp": ("a",)}.get(name, ())
        n = run_case(name, seed, make, fn, no_grad)
        total += n
        print(f"{name}.bin: {n} bytes")
    print(f"total {total} bytes in {os.path.normpath(OUT_DIR)}")


if __name__ == "__main__":
    sys.exit(main())
