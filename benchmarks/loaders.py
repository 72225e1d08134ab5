"""Loader throughput: images per second of each dataset loader (decode + label look-up table + the papers' training
transform), on trees in each dataset's real layout at its real image size (and on the real CamVid when it is there),
and the look-up-table remap against a per-class loop. Writes benchmarks/results/loaders.json.

    python benchmarks/loaders.py [--quick]
"""
import argparse, json, os, platform, sys, tempfile, time
from pathlib import Path
import numpy as np
import PIL, torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from classmix_lab.data import LoaderBatches, eval_batches
from classmix_lab.datasets import DATASETS, CITYSCAPES_LABELS, cityscapes_label_map, get_dataset, write_fake_dataset

# each dataset at the size it ships in (height, width)
REAL_SIZES = {'cityscapes': (1024, 2048), 'voc': (375, 500), 'gta5': (1052, 1914), 'synthia': (760, 1280), 'camvid': (360, 480)}


def rate(fn, n, min_seconds=1.0):
    "Calls per second of fn(i), cycling over n items for at least `min_seconds` (after one warm-up call)."
    fn(0)
    k, t0 = 0, time.perf_counter()
    while True:
        fn(k % n); k += 1
        dt = time.perf_counter() - t0
        if dt >= min_seconds and k >= n: return k/dt


def bench_dataset(name, ds, seconds):
    cls, rng = type(ds), np.random.default_rng(0)
    t = cls.train_transform()
    files = [Path(p) for pair in ds.pairs for p in pair]
    out = dict(images=len(ds), image_size=list(ds.load(0)[0].shape[:2]), mean_bytes_per_pair=int(sum(f.stat().st_size for f in files)/len(ds)),
               train_transform=repr(t), decode_and_remap_per_s=rate(ds.load, len(ds), seconds))
    if t is not None: out['with_train_transform_per_s'] = rate(lambda i: t(*ds.load(i), rng), len(ds), seconds)
    if cls.eval_size: out['eval_item_per_s'] = rate(lambda i: eval_batches(ds.subset([ds.names[i]]), cls.eval_size, 1, 0).__next__(), len(ds), seconds)
    return out


def bench_remap(repeats):
    "Cityscapes label ids -> train ids on a full 1024x2048 label: the look-up table against one masked assignment per id."
    lab = np.random.default_rng(0).integers(0, 34, (1024, 2048)).astype(np.uint8)
    lm = cityscapes_label_map()
    def loop(x):
        out = np.full(x.shape, 255, np.uint8)
        for i, _, t, _ in CITYSCAPES_LABELS:
            if t != 255: out[x == i] = t
        return out
    assert np.array_equal(loop(lab), lm(lab)) and np.array_equal(loop(lab), lm.lut[lab])
    def best(fn):
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter(); fn(lab); ts.append(time.perf_counter() - t0)
        return min(ts)*1000
    checked, gather, per_class = best(lm), best(lambda x: lm.lut[x]), best(loop)
    return dict(label_size=[1024, 2048], lut_checked_ms=checked, lut_gather_ms=gather, per_class_loop_ms=per_class,
                speedup_checked=per_class/checked, speedup_gather=per_class/gather,
                note='lut_checked: LabelMap.__call__ (gather plus the check that every value is in the table); lut_gather: the gather alone')


def bench_batches(ds, seconds):
    "LoaderBatches (batch 2, the Cityscapes training transform) with 0 and 2 worker processes: images per second."
    out = {}
    for w in (0, 2):
        src = LoaderBatches(ds, 2, type(ds).train_transform(), seed=0, workers=w)
        next(src)
        k, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or k < 4: next(src); k += 2
        out[f'workers_{w}_images_per_s'] = k/(time.perf_counter() - t0)
        del src
    return out


def main(quick=False):
    torch.set_num_threads(max(1, torch.get_num_threads()))
    seconds, n = (0.3, 3) if quick else (1.5, 6)
    res = dict(machine=dict(platform=platform.platform(), processor=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                            python=platform.python_version(), torch=torch.__version__, pillow=PIL.__version__, numpy=np.__version__,
                            load_average=os.getloadavg()),
               note='single process, one image at a time; fake trees are written by classmix_lab.datasets.write_fake_dataset at each '
                    "dataset's real size (blocky labels, noisy images: their PNGs are about as large as real ones, see mean_bytes_per_pair)",
               loaders={})
    with tempfile.TemporaryDirectory() as tmp:
        for name, size in REAL_SIZES.items():
            ds = get_dataset(name, root=write_fake_dataset(name, Path(tmp)/name, n=n if name != 'voc' else 4*n, size=size))
            res['loaders'][f'{name} (fake, real size)'] = bench_dataset(name, ds, seconds)
            print(name, json.dumps(res['loaders'][f'{name} (fake, real size)']), flush=True)
            if name == 'cityscapes': res['loader_batches_cityscapes'] = bench_batches(ds, seconds)
        try:
            cam = get_dataset('camvid')
            res['loaders']['camvid (real)'] = bench_dataset('camvid', cam.subset(cam.names[:30 if quick else 120]), seconds)
            print('camvid real', json.dumps(res['loaders']['camvid (real)']), flush=True)
        except Exception as e: res['loaders']['camvid (real)'] = f'not measured: {e}'
        ss = get_dataset('synthstreets', 'train', n_train=600)
        res['loaders']['synthstreets (real style, 96x192)'] = bench_dataset('synthstreets', ss.subset(ss.names[:60]), seconds)
    res['remap'] = bench_remap(3 if quick else 10)
    print('remap', json.dumps(res['remap']))
    out = ROOT/'benchmarks'/'results'/'loaders.json'
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f'wrote {out}')
    return res


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='fewer images and shorter timings (a smoke run)')
    main(ap.parse_args().quick)
