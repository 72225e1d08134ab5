"""Model size and CPU speed: parameters, eval forward time and training-step time of the lab's networks, measured in
one run and written to benchmarks/results/models.json.

    python benchmarks/models.py                      # swiftnet-rn18, deeplabv2-r101, deeplabv2-tiny; 1x3x512x1024 / 2x3x256x512
    python benchmarks/models.py --smoke --out /tmp/models.json     # tiny sizes, one repeat: checks that it runs

- eval: `model.eval()`, `torch.no_grad()`, a forward pass of a `--eval-batch` x 3 x `--eval-size` batch.
- train: `model.train()`, forward, pixel-wise cross-entropy against random labels and backward of a `--train-batch` x 3 x
  `--train-size` batch (no optimiser step: that costs the same per parameter for every recipe and is small on a CPU).
Each measurement follows one warm-up call; the figures are medians (and minima) over `--repeats` calls. torch runs with
`--threads` threads (1 by default: a shared machine makes multi-threaded timings erratic); the load average before and
after is recorded with the figures. The speed-ups are relative to `--reference` (DeepLabv2-ResNet101 by default).
"""
import argparse, json, os, platform, sys, time
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from classmix_lab.model import get_model, count_params, param_groups


def timed(fn, repeats:int) -> dict:
    "Median and minimum milliseconds of `fn` over `repeats` calls, after one warm-up call."
    fn()
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); t.append(1000*(time.perf_counter() - t0))
    return dict(median_ms=round(float(np.median(t)), 1), min_ms=round(float(np.min(t)), 1), runs=len(t))


def measure(name:str, args) -> dict:
    "Parameter counts, eval forward time and training forward+backward time of the model `name`."
    torch.manual_seed(0)
    m = get_model(name, args.num_classes)
    back, head = param_groups(m, 1.)
    res = dict(params=count_params(m), backbone_params=sum(p.numel() for p in back['params']), head_params=sum(p.numel() for p in head['params']))
    x = torch.rand(args.eval_batch, 3, *args.eval_size)
    m.eval()
    def fwd():
        with torch.no_grad(): m(x)
    res['eval'] = timed(fwd, args.repeats)
    xt = torch.rand(args.train_batch, 3, *args.train_size)
    yt = torch.randint(0, args.num_classes, (args.train_batch, *args.train_size))
    m.train()
    def step():
        m.zero_grad(set_to_none=True)
        F.cross_entropy(m(xt), yt).backward()
    res['train'] = timed(step, args.repeats)
    del m
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--models', nargs='+', default=['swiftnet-rn18', 'deeplabv2-r101', 'deeplabv2-tiny'])
    ap.add_argument('--reference', default='deeplabv2-r101', help='the model the speed-ups are relative to')
    ap.add_argument('--num-classes', type=int, default=19)
    ap.add_argument('--eval-batch', type=int, default=1); ap.add_argument('--eval-size', type=int, nargs=2, default=(512, 1024))
    ap.add_argument('--train-batch', type=int, default=2); ap.add_argument('--train-size', type=int, nargs=2, default=(256, 512))
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--threads', type=int, default=1, help='torch threads')
    ap.add_argument('--smoke', action='store_true', help='tiny sizes (64x128 eval, 2x32x64 train), one repeat: checks that it runs')
    ap.add_argument('--out', default=str(ROOT/'benchmarks'/'results'/'models.json'))
    args = ap.parse_args(argv)
    if args.smoke: args.eval_size, args.train_size, args.repeats = (64, 128), (32, 64), 1
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    out = dict(benchmark='models', device='cpu',
               sizes=dict(eval=[args.eval_batch, 3, *args.eval_size], train=[args.train_batch, 3, *args.train_size], num_classes=args.num_classes),
               repeats=args.repeats, smoke=args.smoke,
               machine=dict(platform=platform.platform(), processor=platform.processor() or platform.machine(), cpu_count=os.cpu_count(),
                            torch=torch.__version__, python=platform.python_version(), torch_threads=torch.get_num_threads(),
                            loadavg_before=[round(v, 2) for v in load0]))
    out['models'] = {}
    for name in args.models:
        out['models'][name] = r = measure(name, args)
        print(f"{name}: {r['params']/1e6:.2f} M parameters; eval {r['eval']['median_ms']} ms, train step {r['train']['median_ms']} ms", flush=True)
    ref = out['models'].get(args.reference)
    if ref is not None:
        for r in out['models'].values():
            r['eval_speedup_vs_reference'] = round(ref['eval']['median_ms']/r['eval']['median_ms'], 2)
            r['train_speedup_vs_reference'] = round(ref['train']['median_ms']/r['train']['median_ms'], 2)
    out['reference'] = args.reference if ref is not None else None
    out['notes'] = [f"CPU, torch with {torch.get_num_threads()} thread(s); eval: no_grad forward; train: forward + cross-entropy + backward, no optimiser step",
                    "Grubisic et al. report SwiftNet-RN18 ~5x faster to train and ~12x faster to evaluate than DeepLabv2 (their GPU configurations)"]
    out['machine']['loadavg_after'] = [round(v, 2) for v in os.getloadavg()]
    out['date'] = time.strftime('%Y-%m-%d %H:%M:%S')
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix('.json.tmp'); tmp.write_text(json.dumps(out, indent=1)); os.replace(tmp, args.out)
    if ref is not None:
        for name, r in out['models'].items():
            print(f"{name}: {r['eval_speedup_vs_reference']}x eval, {r['train_speedup_vs_reference']}x train vs {args.reference}")
    print(f'wrote {args.out}')
    return out


if __name__ == '__main__':
    main()
