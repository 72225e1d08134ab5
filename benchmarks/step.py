"""One semi-supervised training step: the lab's loop against a straightforward reference step of the same algorithm,
measured in one run and written to benchmarks/results/step.json.

    python benchmarks/step.py                        # GPU: the papers' sizes; CPU: reduced sizes (see --sizes)
    python benchmarks/step.py --smoke --out /tmp/step.json     # tiny sizes, one repeat: checks that it runs

Cases (model, labeled + unlabeled batch, crop):
- `deeplabv2-r101`, 2+2 at 512x1024 (the thesis) and 5+5 at 512x512 (Alonso et al.);
- `swiftnet-rn18` at the same two sizes.
On a CPU the sizes are divided by `--cpu-scale` (default 4) and the models are the same.

For each case:
- `lab_classmix`: `Trainer.step` with ClassMix at `precision=auto` (bf16 autocast on a CUDA device that has it, fp32
  on the CPU; `--precision` sets it, `--channels-last` the layout), masks batched on the device, the fused EMA;
- `lab_contrastive`: the same loop with Alonso et al.'s contrastive memory bank;
- `reference_classmix`: the step as the original implementations write it. It runs in fp32, makes each image's
  ClassMix mask on the host from its pseudo-label (a device -> host -> device round trip per image), reads the
  confident fraction with `.item()`, and updates the EMA teacher in a Python loop over the parameters;
- `network_only`: the passes alone (labeled and mixed forwards and backward, the teacher's forward), at the lab
  step's precision. `outside_network` is the fraction of the lab step spent elsewhere: 1 - network_only / lab step.

Figures: ms per step (median over `--repeats`, after `--warmup` steps), images per second (labeled + unlabeled),
peak memory (CUDA: `max_memory_allocated`; CPU: none), and on CUDA the fraction of the device's dense bf16 peak that
the lab step reaches (FLOPs counted with `torch.utils.flop_counter` over one step).
"""
import argparse, copy, json, os, platform, sys, time
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from classmix_lab.config import IGNORE_INDEX
from classmix_lab.data import TensorBatches
from classmix_lab.model import get_model, param_groups
from classmix_lab.train import Trainer, TrainConfig, AUTOCAST
from classmix_lab.methods.base import RunInfo
from classmix_lab.methods.registry import make_method

#: dense bf16 peak TFLOP/s of the GPUs the lab is run on (vendor data sheets, without sparsity)
BF16_PEAK_TFLOPS = {'H200': 989., 'H100': 989., 'A100': 312., 'L40S': 362., 'A10': 125., 'RTX 4090': 165., 'RTX 3090': 71.}
CASES = [('deeplabv2-r101', 2, (512, 1024)), ('deeplabv2-r101', 5, (512, 512)), ('swiftnet-rn18', 2, (512, 1024)), ('swiftnet-rn18', 5, (512, 512))]


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize(device)


def timed(fn, device, warmup:int, repeats:int) -> dict:
    "Median and minimum ms of `fn` over `repeats` calls after `warmup` calls, the device synchronised around each."
    for _ in range(warmup): fn()
    t = []
    for _ in range(repeats):
        sync(device); t0 = time.perf_counter(); fn(); sync(device); t.append(1000*(time.perf_counter() - t0))
    return dict(median_ms=round(float(np.median(t)), 2), min_ms=round(float(np.min(t)), 2), runs=len(t))


def batches(b:int, size, classes:int, device, seed:int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (2*b, 3, *size), generator=g, dtype=torch.uint8)
    y = torch.randint(0, classes, (2*b, 1, size[0]//32, size[1]//32), generator=g).float()
    y = F.interpolate(y, size=size, mode='nearest')[:, 0].to(torch.uint8)   # blocky labels: several classes per image
    return TensorBatches(x, y, b, seed=seed, device=device), TensorBatches(x.flip(0), None, b, seed=seed + 1, device=device)


def lab_trainer(model_name:str, method:str, b:int, size, classes:int, device, precision:str='auto', channels_last:bool=False, **settings):
    torch.manual_seed(0)
    model = get_model(model_name, classes).to(device)
    lab, unl = batches(b, size, classes, device, 0)
    run = RunInfo(iterations=10**6, num_classes=classes, batch_size=b, batch_size_u=b, n_labeled=20, class_distribution=lambda: (1/classes,)*classes)
    return Trainer(model, lab, unl, make_method(method, **settings), TrainConfig(iterations=10**6, lr=1e-4, precision=precision, channels_last=channels_last), device,
                   progress=None, run=run)


class ReferenceClassMix:
    "ClassMix as the original implementations step it: fp32, per-image masks on the host, a Python EMA loop."
    def __init__(self, model_name, b, size, classes, device, alpha=0.99, tau=0.968):
        torch.manual_seed(0)
        self.student = get_model(model_name, classes).to(device)
        self.teacher = copy.deepcopy(self.student).eval()
        for p in self.teacher.parameters(): p.requires_grad_(False)
        self.opt = torch.optim.SGD([g for g in param_groups(self.student, 1e-4)], lr=1e-4, momentum=0.9, weight_decay=5e-4)
        self.lab, self.unl = batches(b, size, classes, device, 0)
        self.device, self.alpha, self.tau, self.classes, self.k = device, alpha, tau, classes, 0
        self.rng = np.random.default_rng(0)

    def step(self):
        x_l, y_l = next(self.lab); x_u = next(self.unl)[0]
        loss_l = F.cross_entropy(self.student(x_l), y_l, ignore_index=IGNORE_INDEX)
        with torch.no_grad(): conf, pseudo = self.teacher(x_u).softmax(1).max(1)
        masks = []
        for b in range(len(x_u)):   # one mask per image, made on the host from its pseudo-label
            lab = pseudo[b].cpu().numpy()
            present = np.unique(lab)
            chosen = self.rng.choice(present, (len(present) + 1)//2, replace=False)
            masks.append(torch.from_numpy(np.isin(lab, chosen)).to(self.device))
        M = torch.stack(masks)[:, None].float()
        nxt = lambda t: t.roll(-1, 0)
        x_m = M*x_u + (1 - M)*nxt(x_u)
        y_m = torch.where(M[:, 0] > 0, pseudo, nxt(pseudo))
        c_m = torch.where(M[:, 0] > 0, conf, nxt(conf))
        w = (c_m > self.tau).float().mean().item()   # threshold-proportional weight, read back to the host
        loss_u = w*F.cross_entropy(self.student(x_m), y_m)
        self.opt.zero_grad(); (loss_l + loss_u).backward(); self.opt.step()
        a = min(1 - 1/(self.k + 1), self.alpha)
        for pt, ps in zip(self.teacher.parameters(), self.student.parameters()): pt.data.mul_(a).add_(ps.data, alpha=1 - a)
        for bt, bs in zip(self.teacher.buffers(), self.student.buffers()):
            if bt.is_floating_point(): bt.data.mul_(a).add_(bs.data, alpha=1 - a)
        self.k += 1


def network_only(tr:Trainer):
    "The passes of a ClassMix step alone: student on labeled and on (unmixed) unlabeled images with backward, teacher on unlabeled."
    x_l, y_l = next(tr.labeled); x_u = next(tr.unlabeled)[0]
    dtype = AUTOCAST.get(tr.precision)
    ctx = torch.autocast(tr.device.type, dtype=dtype) if dtype else torch.autocast(tr.device.type, enabled=False)
    with ctx:
        with torch.no_grad(): tr.teacher(x_u)
        loss = F.cross_entropy(tr.model(x_l).float(), y_l) + tr.model(x_u).float().mean()
    tr.opt.zero_grad(); loss.backward()


def peak_tflops(device) -> float|None:
    if device.type != 'cuda': return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def step_flops(tr:Trainer) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc: tr.step(0)
    return float(fc.get_total_flops())


MEASURES = ('lab_classmix', 'lab_contrastive', 'reference_classmix', 'network_only')

def measure_case(model_name, b, size, args, device, measures=MEASURES) -> dict:
    "The figures of one case; `measures` picks among `MEASURES` (lab_classmix is always measured)."
    classes, cl = args.num_classes, getattr(args, 'channels_last', False)
    res = dict(model=model_name, batch=f'{b}+{b}', size=list(size), channels_last=cl)
    def run(label, make, step):
        if device.type == 'cuda': torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(device)
        obj = make()
        t = timed(lambda: step(obj), device, args.warmup, args.repeats)
        t['images_per_s'] = round(2*b/(t['median_ms']/1000), 2)
        t['peak_memory_mb'] = round(torch.cuda.max_memory_allocated(device)/2**20, 1) if device.type == 'cuda' else None
        res[label] = t
        return obj
    lab = run('lab_classmix', lambda: lab_trainer(model_name, 'classmix', b, size, classes, device, args.precision, cl), lambda tr: tr.step(0))
    res['precision'] = lab.precision
    if 'lab_contrastive' in measures:
        run('lab_contrastive', lambda: lab_trainer(model_name, 'contrastive', b, size, classes, device, args.precision, cl), lambda tr: tr.step(0))
    if 'reference_classmix' in measures:
        run('reference_classmix', lambda: ReferenceClassMix(model_name, b, size, classes, device), lambda r: r.step())
        res['speedup_vs_reference'] = round(res['reference_classmix']['median_ms']/res['lab_classmix']['median_ms'], 3)
    if 'network_only' in measures:
        run('network_only', lambda: lab_trainer(model_name, 'classmix', b, size, classes, device, args.precision, cl), network_only)
        res['outside_network'] = round(max(0., 1 - res['network_only']['median_ms']/res['lab_classmix']['median_ms']), 3)
    peak = peak_tflops(device)
    if peak:
        flops = step_flops(lab)
        res['tflops_per_step'] = round(flops/1e12, 3)
        res['fraction_of_bf16_peak'] = round(flops/(res['lab_classmix']['median_ms']/1000)/(peak*1e12), 4)
    del lab
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--precision', default='auto', choices=('auto', 'bf16', 'fp16', 'fp32'))
    p.add_argument('--channels-last', action='store_true', help="the lab's steps with the network and its inputs in channels-last layout")
    p.add_argument('--cpu-scale', type=int, default=4, help='on a CPU, divide every size by this')
    p.add_argument('--models', nargs='*', default=None, help='only these models')
    p.add_argument('--num-classes', type=int, default=19)
    p.add_argument('--warmup', type=int, default=2); p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--smoke', action='store_true', help='deeplabv2-tiny at 64x128, one repeat: checks that it runs')
    p.add_argument('--out', default=str(ROOT/'benchmarks'/'results'/'step.json'))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.smoke: cases, args.warmup, args.repeats = [('deeplabv2-tiny', 2, (64, 128))], 1, 1
    else:
        s = 1 if device.type == 'cuda' else args.cpu_scale
        cases = [(m, b, (h//s, w//s)) for m, b, (h, w) in CASES if not args.models or m in args.models]
    load = os.getloadavg()
    results = [measure_case(m, b, size, args, device) for m, b, size in cases]
    out = dict(device=str(device), device_name=torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or platform.machine(),
               torch=torch.__version__, threads=torch.get_num_threads(), loadavg_before=list(load), loadavg_after=list(os.getloadavg()),
               bf16_peak_tflops=peak_tflops(device), smoke=args.smoke, cpu_scale=None if device.type == 'cuda' else args.cpu_scale, cases=results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    for r in results:
        print(f"{r['model']} {r['batch']} {r['size'][0]}x{r['size'][1]} ({r['precision']}): lab {r['lab_classmix']['median_ms']:.0f} ms, "
              f"reference {r['reference_classmix']['median_ms']:.0f} ms (x{r['speedup_vs_reference']:.2f}), contrastive {r['lab_contrastive']['median_ms']:.0f} ms, "
              f"outside the network {r['outside_network']:.0%}" + (f", {r['fraction_of_bf16_peak']:.0%} of bf16 peak" if 'fraction_of_bf16_peak' in r else ''))
    print(f"written to {args.out}")


if __name__ == '__main__':
    main()
