#!/usr/bin/python3
"""torch.optim and torch.optim.lr_scheduler as references for tests/test_optim.c.

usage:
  optim_vs_torch.py steps OPT SPEC.txt INIT.bin GRADS.bin OUT.bin
      OPT: adam | adamw | sgd, or 12_accel_sgd's nb_sgd | nb_momentum | nb_rmsprop | nb_adam
      (group LR WD MOM | SQR_MOM EPS | BETA1 BETA2 EPS : params). SPEC.txt, one item a line:
        shapes 7x12 7 3x7 3            the parameters (float32, C order), in INIT.bin's order
        group LR WD A B C [D]          a parameter group over parameters A B C ...; for adam and
                                       adamw the line is: group LR WD BETA1 BETA2 EPS : params
                                       for sgd:           group LR WD MOM DAMPENING NESTEROV : params
        steps N                        GRADS.bin holds N steps x every parameter's gradient
        none S P                       at step S (0-based) parameter P has no gradient (None)
      Runs the optimiser over the steps (torch's single-tensor path, float32) and writes the
      final parameters to OUT.bin.
  optim_vs_torch.py onecycle MAX_LR TOTAL OPT     prints "lr beta1_or_momentum" used by each of
      the TOTAL steps (the values in param_groups[0] when opt.step() runs), OneCycleLR's
      defaults, an AdamW (OPT adamw) or SGD (OPT sgd) optimiser.
  optim_vs_torch.py cosine BASE_LR T_MAX ETA_MIN  the same for CosineAnnealingLR (lr only).
  optim_vs_torch.py exp BASE_LR GAMMA TOTAL        ExponentialLR, TOTAL steps
  optim_vs_torch.py step BASE_LR STEP_SIZE GAMMA TOTAL   StepLR
  optim_vs_torch.py warmup BASE_LR START_FACTOR WARMUP TOTAL   LinearLR(start_factor, 1.0, WARMUP)
  optim_vs_torch.py serve    reads commands (the arguments above, one command a line, schedules
      with one more argument: the file to write their lines to) from stdin and answers each
      with a line "ok" or "error: ..." (torch is imported once for all of a test's cases).
Values print with repr (all digits of the double).
"""
import sys
import numpy as np
import torch


# 12_accel_sgd's own optimisers, as the notebook writes them (run in PyTorch, float32).
class NbSGD:
    def __init__(self, params, lr, wd=0.):
        self.params, self.lr, self.wd, self.i = list(params), lr, wd, 0

    def step(self):
        with torch.no_grad():
            for p in self.params:
                if p.grad is None:
                    continue
                self.reg_step(p)
                self.opt_step(p)
        self.i += 1

    def opt_step(self, p): p -= p.grad * self.lr

    def reg_step(self, p):
        if self.wd != 0: p *= 1 - self.lr * self.wd


class NbMomentum(NbSGD):
    def __init__(self, params, lr, wd=0., mom=0.9):
        super().__init__(params, lr=lr, wd=wd)
        self.mom = mom

    def opt_step(self, p):
        if not hasattr(p, 'grad_avg'): p.grad_avg = torch.zeros_like(p.grad)
        p.grad_avg = p.grad_avg * self.mom + p.grad * (1 - self.mom)
        p -= self.lr * p.grad_avg


class NbRMSProp(NbSGD):
    def __init__(self, params, lr, wd=0., sqr_mom=0.99, eps=1e-5):
        super().__init__(params, lr=lr, wd=wd)
        self.sqr_mom, self.eps = sqr_mom, eps

    def opt_step(self, p):
        if not hasattr(p, 'sqr_avg'): p.sqr_avg = p.grad**2
        p.sqr_avg = p.sqr_avg * self.sqr_mom + p.grad**2 * (1 - self.sqr_mom)
        p -= self.lr * p.grad / (p.sqr_avg.sqrt() + self.eps)


class NbAdam(NbSGD):
    def __init__(self, params, lr, wd=0., beta1=0.9, beta2=0.99, eps=1e-5):
        super().__init__(params, lr=lr, wd=wd)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def opt_step(self, p):
        if not hasattr(p, 'avg'): p.avg = torch.zeros_like(p.grad.data)
        if not hasattr(p, 'sqr_avg'): p.sqr_avg = torch.zeros_like(p.grad.data)
        p.avg = self.beta1 * p.avg + (1 - self.beta1) * p.grad
        unbias_avg = p.avg / (1 - (self.beta1**(self.i + 1)))
        p.sqr_avg = self.beta2 * p.sqr_avg + (1 - self.beta2) * (p.grad**2)
        unbias_sqr_avg = p.sqr_avg / (1 - (self.beta2**(self.i + 1)))
        p -= self.lr * unbias_avg / (unbias_sqr_avg + self.eps).sqrt()


class Groups:
    """One notebook optimiser per group (they hold one set of hyper-parameters each)."""
    def __init__(self, opts): self.opts = opts

    def step(self):
        for o in self.opts: o.step()


def steps(opt_name, spec_path, init_path, grads_path, out_path):
    shapes, groups, nsteps, none = [], [], 0, set()
    for line in open(spec_path):
        w = line.split()
        if not w:
            continue
        if w[0] == 'shapes':
            shapes = [tuple(int(d) for d in s.split('x')) for s in w[1:]]
        elif w[0] == 'group':
            k = w.index(':')
            groups.append(([float(x) for x in w[1:k]], [int(x) for x in w[k + 1:]]))
        elif w[0] == 'steps':
            nsteps = int(w[1])
        elif w[0] == 'none':
            none.add((int(w[1]), int(w[2])))
    numel = [int(np.prod(s)) for s in shapes]
    init = np.fromfile(init_path, np.float32)
    grads = np.fromfile(grads_path, np.float32).reshape(nsteps, sum(numel))
    params, o = [], 0
    for s, n in zip(shapes, numel):
        params.append(torch.nn.Parameter(torch.from_numpy(init[o:o + n].copy()).view(s)))
        o += n
    if opt_name.startswith('nb_'):
        mk = {'nb_sgd': lambda ps, h: NbSGD(ps, h[0], h[1]),
              'nb_momentum': lambda ps, h: NbMomentum(ps, h[0], h[1], mom=h[2]),
              'nb_rmsprop': lambda ps, h: NbRMSProp(ps, h[0], h[1], sqr_mom=h[2], eps=h[3]),
              'nb_adam': lambda ps, h: NbAdam(ps, h[0], h[1], beta1=h[2], beta2=h[3], eps=h[4])}[opt_name]
        opt = Groups([mk([params[i] for i in idx], h) for h, idx in groups])
    else:
        opt = make_torch_opt(opt_name, params, groups)
    for t in range(nsteps):
        o = 0
        for i, (p, n) in enumerate(zip(params, numel)):
            p.grad = None if (t, i) in none else torch.from_numpy(grads[t, o:o + n].copy()).view(p.shape)
            o += n
        opt.step()
    np.concatenate([p.detach().numpy().ravel() for p in params]).astype(np.float32).tofile(out_path)


def make_torch_opt(opt_name, params, groups):
    pg = []
    for h, idx in groups:
        d = {'params': [params[i] for i in idx], 'lr': h[0], 'weight_decay': h[1]}
        if opt_name in ('adam', 'adamw'):
            d['betas'], d['eps'] = (h[2], h[3]), h[4]
        else:
            d['momentum'], d['dampening'], d['nesterov'] = h[2], h[3], bool(h[4])
        pg.append(d)
    cls = {'adam': torch.optim.Adam, 'adamw': torch.optim.AdamW, 'sgd': torch.optim.SGD}[opt_name]
    return cls(pg, lr=pg[0]['lr'])


def schedule(kind, args, out=sys.stdout):
    p = torch.nn.Parameter(torch.zeros(1))
    if kind == 'onecycle':
        max_lr, total, opt_name = float(args[0]), int(args[1]), args[2]
        opt = torch.optim.AdamW([p], lr=max_lr) if opt_name == 'adamw' else torch.optim.SGD([p], lr=max_lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total)
    elif kind == 'cosine':
        base, total, eta_min = float(args[0]), int(args[1]), float(args[2])
        opt = torch.optim.AdamW([p], lr=base)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=eta_min)
    elif kind == 'exp':
        base, gamma, total = float(args[0]), float(args[1]), int(args[2])
        opt = torch.optim.AdamW([p], lr=base)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma)
    elif kind == 'step':
        base, step_size, gamma, total = float(args[0]), int(args[1]), float(args[2]), int(args[3])
        opt = torch.optim.AdamW([p], lr=base)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma)
    elif kind == 'warmup':
        base, start_factor, warm, total = float(args[0]), float(args[1]), int(args[2]), int(args[3])
        opt = torch.optim.AdamW([p], lr=base)
        sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=start_factor, end_factor=1.0, total_iters=warm)
    else:
        raise ValueError('unknown schedule ' + kind)
    g = opt.param_groups[0]
    for _ in range(total):
        mom = g['betas'][0] if 'betas' in g else g['momentum']
        print(repr(g['lr']), repr(mom), file=out)
        p.grad = torch.zeros(1)
        opt.step()
        sched.step()


if __name__ == '__main__':
    torch.set_num_threads(1)
    if sys.argv[1] == 'steps':
        steps(*sys.argv[2:7])
    elif sys.argv[1] == 'serve':
        for line in sys.stdin:
            w = line.split()
            try:
                if w[0] == 'steps':
                    steps(*w[1:6])
                else:
                    with open(w[-1], 'w') as f:
                        schedule(w[0], w[1:-1], f)
                print('ok', flush=True)
            except Exception as e:  # the test reports it and fails
                print('error:', repr(e).replace('\n', ' '), flush=True)
    else:
        schedule(sys.argv[1], sys.argv[2:])
