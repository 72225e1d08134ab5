"""Mask generation speed: the lab's batched generators against straightforward per-sample implementations of the
same algorithms, measured in one run and written to benchmarks/results/masks.json.

    python benchmarks/masks.py                      # 512x1024, batch 8, CPU (and CUDA when there is one)
    python benchmarks/masks.py --height 64 --width 128 --batch 2 --repeats 2 --out /tmp/masks.json

Per-sample references (what a training loop without batched masks does):
- ClassMix: a Python loop over the images, `torch.unique` of each label map, a random choice of ceil(p * n) of its
  classes and `torch.isin`.
- CowMix: French et al.'s Listing 1 per image — NumPy noise, `scipy.ndimage.gaussian_filter`, the erfinv threshold.
- CutMix: a Python loop drawing each rectangle and filling it.

Both sides of a comparison run alternately in the same process, `--repeats` times each, and the figures are medians.
The CPU comparison uses `--threads` threads for torch (1 by default: the references are single-threaded, and a shared
machine makes multi-threaded timings erratic); the load average before and after is recorded with the figures.
"""
import argparse, json, math, os, platform, sys, time
from pathlib import Path
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from classmix_lab.masks import classmix_masks, cow_masks, box_masks, lattice_stride, gaussian_blur, proportion_threshold, draw_sigmas


# --- per-sample references ----------------------------------------------------------------------------------------

def classmix_loop(labels, num_classes, generator, p=0.5):
    "ClassMix masks one image at a time: unique classes, a random choice of ceil(p * n), isin."
    out = []
    for lab in labels:
        cls = torch.unique(lab)
        cls = cls[(cls >= 0) & (cls < num_classes)]
        k = math.ceil(round(p*len(cls), 9))
        chosen = cls[torch.randperm(len(cls), generator=generator, device=lab.device)[:k]]
        out.append(torch.isin(lab, chosen))
    return torch.stack(out)


def cowmix_listing1(batch, height, width, sigma, p, rng):
    "French et al.'s Listing 1 once per image (NumPy/scipy), stacked into a torch mask."
    from scipy.ndimage import gaussian_filter
    from scipy.special import erfinv
    out = []
    for _ in range(batch):
        s = np.exp(rng.uniform(np.log(sigma[0]), np.log(sigma[1])))
        noise = rng.normal(size=(height, width))
        smooth = gaussian_filter(noise, s)
        t = erfinv(1 - 2*p)*2**0.5*smooth.std() + smooth.mean()   # the proportion p above t
        out.append(smooth > t)
    return torch.from_numpy(np.stack(out))


def cutmix_loop(batch, height, width, p, generator):
    "One rectangle per image (area p, log-uniform aspect, uniform position), filled in a Python loop."
    masks = torch.zeros(batch, height, width, dtype=torch.bool)
    for b in range(batch):
        u = torch.rand(3, generator=generator).tolist()
        hf = p**u[0]; h, w = round(hf*height), round(p/hf*width)
        y0, x0 = int(u[1]*(height - h + 1)), int(u[2]*(width - w + 1))
        masks[b, y0:y0 + h, x0:x0 + w] = True
    return masks


# --- timing --------------------------------------------------------------------------------------------------------

def _sync(device):
    if torch.device(device).type == 'cuda': torch.cuda.synchronize(device)


def compare(fns:dict, device='cpu', repeats:int=5) -> dict:
    "Median and minimum milliseconds of each function, run alternately after one warm-up call each."
    for f in fns.values(): f(); _sync(device)
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            _sync(device); t0 = time.perf_counter(); f(); _sync(device)
            times[k].append(1000*(time.perf_counter() - t0))
    return {k: dict(median_ms=round(float(np.median(v)), 2), min_ms=round(float(np.min(v)), 2)) for k, v in times.items()}


def street_labels(batch, height, width):
    "SynthStreets label maps (real style) of the benchmark's size."
    from classmix_lab.synthstreets import render_scene, CLASSES
    return torch.stack([torch.from_numpy(render_scene(0, i, 'real', height, width)[1]).long() for i in range(batch)]), len(CLASSES)


def ssl_step_ms(model:str, device, batch:int, height:int, width:int, num_classes:int=19, iterations:int=5) -> float:
    "Milliseconds per ClassMix training step (labeled CE, teacher, masks, mixed student pass, SGD, EMA) of `model`."
    from classmix_lab.model import get_model
    from classmix_lab.data import TensorBatches
    from classmix_lab.train import Trainer, TrainConfig
    from classmix_lab.methods.registry import make_method
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2*batch, 3, height, width), dtype=torch.uint8, generator=g)
    y = torch.randint(0, num_classes, (2*batch, height, width), dtype=torch.uint8, generator=g)
    net = get_model(model, num_classes).to(device)
    lab, unl = TensorBatches(x, y, batch, device=device), TensorBatches(x, None, batch, seed=1, device=device)
    cfg = TrainConfig(iterations=iterations + 1, lr=1e-4, log_every=iterations + 1)
    tr = Trainer(net, lab, unl, make_method('classmix'), cfg, device, progress=None)
    tr.step(0); _sync(device)                       # warm-up
    t0 = time.perf_counter()
    for k in range(1, iterations + 1): tr.step(k)
    _sync(device)
    return 1000*(time.perf_counter() - t0)/iterations


def measure(device, args, labels, num_classes) -> dict:
    B, H, W = args.batch, args.height, args.width
    dev = torch.device(device)
    g = torch.Generator(device=dev).manual_seed(0)
    lab = labels.to(dev)
    res = {}
    cm = compare({'batched': lambda: classmix_masks(lab, num_classes, g),
                  'per_sample': lambda: classmix_loop(lab, num_classes, g)}, device, args.repeats)
    res['classmix'] = dict(cm, speedup=round(cm['per_sample']['median_ms']/cm['batched']['median_ms'], 2))
    rng = np.random.default_rng(0)
    for key, sig in (('cowmix', tuple(args.sigma)), ('cowmix_sigma_4_16', (4., 16.))):   # the headline range, and CamVid's
        if key != 'cowmix' and sig == tuple(args.sigma): continue
        fullres = lambda: proportion_threshold(gaussian_blur(torch.randn(B, H, W, generator=g, device=dev), draw_sigmas(sig, B, g, dev), max_sigma=sig[1]), 0.5)
        fns = {'batched': lambda: cow_masks((B, H, W), g, 0.5, sig, dev), 'batched_full_resolution': fullres}
        if dev.type == 'cpu': fns['per_sample_listing1'] = lambda: cowmix_listing1(B, H, W, sig, 0.5, rng)
        cw = compare(fns, device, args.repeats)
        if dev.type == 'cpu':
            ref = cw['per_sample_listing1']['median_ms']
            cw.update(speedup=round(ref/cw['batched']['median_ms'], 2), full_resolution_speedup=round(ref/cw['batched_full_resolution']['median_ms'], 2))
        res[key] = dict(cw, sigma=list(sig), lattice_stride=lattice_stride(sig[0]))
    gc = torch.Generator().manual_seed(0)
    cut = compare({'batched': lambda: box_masks((B, H, W), g, 0.5, dev), 'per_sample': lambda: cutmix_loop(B, H, W, 0.5, gc)}, device, args.repeats)
    res['cutmix'] = dict(cut, speedup=round(cut['per_sample']['median_ms']/cut['batched']['median_ms'], 2))
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--height', type=int, default=512); ap.add_argument('--width', type=int, default=1024)
    ap.add_argument('--batch', type=int, default=8); ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--sigma', type=float, nargs=2, default=(8., 32.), help="CowMix sigma range (French et al.'s for 512x1024 Cityscapes)")
    ap.add_argument('--threads', type=int, default=1, help='torch threads for the CPU comparison')
    ap.add_argument('--step-model', default='deeplabv2-r101', help='model of the SSL step the mask cost is compared with (GPU)')
    ap.add_argument('--step-batch', type=int, default=2, help='labeled and unlabeled images per SSL step (the thesis: 2 + 2)')
    ap.add_argument('--step-size', type=int, nargs=2, default=(512, 512), help="SSL step crop size (the thesis's Cityscapes crops)")
    ap.add_argument('--step-device', default=None, help="device of the SSL step measurement (default: cuda when available, else skipped)")
    ap.add_argument('--out', default=str(ROOT/'benchmarks'/'results'/'masks.json'))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    labels, C = street_labels(args.batch, args.height, args.width)
    out = dict(benchmark='masks', sizes=dict(batch=args.batch, height=args.height, width=args.width, num_classes=C),
               repeats=args.repeats, p=0.5,
               machine=dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                            cpu_count=os.cpu_count(), torch=torch.__version__, numpy=np.__version__, python=platform.python_version(),
                            torch_threads=torch.get_num_threads(), loadavg_before=[round(x, 2) for x in load0]))
    cpu = measure('cpu', args, labels, C)
    out['cpu'] = cpu
    out['classmix_speedup'], out['cowmix_speedup'] = cpu['classmix']['speedup'], cpu['cowmix']['speedup']
    out['gpu'] = None
    out['notes'] = [f"torch ran with {torch.get_num_threads()} thread(s); the per-sample references are single-threaded NumPy/scipy/torch",
                    "cowmix 'batched' is the lab's generator (noise on a coarse lattice, exact in distribution); "
                    "'batched_full_resolution' smooths full-resolution noise with the batched scipy-equivalent filter"]
    step_dev = args.step_device or ('cuda' if torch.cuda.is_available() else None)
    if torch.cuda.is_available():
        gpu = measure('cuda', args, labels, C)
        gpu['device_name'] = torch.cuda.get_device_name()
        out['gpu'] = gpu
    else: out['notes'].append('no CUDA device on this machine: "gpu" is null')
    if step_dev is not None:
        h, w = args.step_size
        step = ssl_step_ms(args.step_model, step_dev, args.step_batch, h, w)
        g = torch.Generator(device=step_dev).manual_seed(0)
        lab = labels[:args.step_batch, :h, :w].to(step_dev)
        mk = compare({'classmix': lambda: classmix_masks(lab, C, g),
                      'cowmix': lambda: cow_masks(lab.shape, g, 0.5, tuple(args.sigma), step_dev)}, step_dev, args.repeats)
        out['ssl_step'] = dict(device=step_dev, model=args.step_model, batch=args.step_batch, size=[h, w], step_ms=round(step, 2),
                               mask_ms={k: v['median_ms'] for k, v in mk.items()},
                               mask_fraction={k: round(v['median_ms']/step, 5) for k, v in mk.items()})
    if 'ssl_step' not in out: out['notes'].append('mask cost as a fraction of a DeepLabv2-ResNet101 SSL step: measured on a GPU (or with --step-device); not measured here')
    out['machine']['loadavg_after'] = [round(x, 2) for x in os.getloadavg()]
    out['date'] = time.strftime('%Y-%m-%d %H:%M:%S')
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix('.json.tmp'); tmp.write_text(json.dumps(out, indent=1)); os.replace(tmp, args.out)
    print(f"ClassMix: batched {cpu['classmix']['batched']['median_ms']} ms, per-sample {cpu['classmix']['per_sample']['median_ms']} ms: {out['classmix_speedup']}x")
    print(f"CowMix:   batched {cpu['cowmix']['batched']['median_ms']} ms (full resolution {cpu['cowmix']['batched_full_resolution']['median_ms']} ms), "
          f"Listing 1 per sample {cpu['cowmix']['per_sample_listing1']['median_ms']} ms: {out['cowmix_speedup']}x")
    if 'cowmix_sigma_4_16' in cpu:
        c2 = cpu['cowmix_sigma_4_16']
        print(f"CowMix, sigma (4, 16): batched {c2['batched']['median_ms']} ms, Listing 1 per sample {c2['per_sample_listing1']['median_ms']} ms: {c2['speedup']}x")
    print(f"CutMix:   batched {cpu['cutmix']['batched']['median_ms']} ms, per-sample {cpu['cutmix']['per_sample']['median_ms']} ms: {cpu['cutmix']['speedup']}x")
    if out['gpu'] is None: print('no GPU: "gpu" is null')
    if 'ssl_step' in out: print(f"SSL step ({args.step_model}, {step_dev}): {out['ssl_step']['step_ms']} ms; masks {out['ssl_step']['mask_fraction']}")
    print(f'wrote {args.out}')
    return out


if __name__ == '__main__':
    main()
