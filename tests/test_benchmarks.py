"""The mask benchmark runs end to end on a small size and writes the figures the issue asks for."""
import json, subprocess, sys
import pytest
from conftest import ROOT


def test_mask_benchmark_writes_its_ratios(tmp_path):
    out = tmp_path/'masks.json'
    res = subprocess.run([sys.executable, str(ROOT/'benchmarks'/'masks.py'), '--height', '48', '--width', '96', '--batch', '2',
                          '--repeats', '1', '--sigma', '2', '4', '--step-device', 'cpu', '--step-model', 'deeplabv2-tiny',
                          '--step-size', '32', '64', '--out', str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    d = json.loads(out.read_text())
    assert d['sizes'] == dict(batch=2, height=48, width=96, num_classes=11)
    for k in ('cowmix_speedup', 'classmix_speedup'): assert d[k] > 0
    assert d['cpu']['cowmix']['sigma'] == [2., 4.] and 'per_sample_listing1' in d['cpu']['cowmix']
    assert d['machine']['torch_threads'] == 1 and len(d['machine']['loadavg_before']) == 3
    assert 0 < d['ssl_step']['mask_fraction']['classmix'] < 1 and d['ssl_step']['step_ms'] > 0
    assert ('gpu' in d) and (d['gpu'] is None or 'classmix' in d['gpu'])


@pytest.mark.slow   # trains both steps for a benchmark
def test_step_benchmark_compares_the_lab_step_with_the_reference_step(tmp_path):
    out = tmp_path/'step.json'
    res = subprocess.run([sys.executable, str(ROOT/'benchmarks'/'step.py'), '--smoke', '--device', 'cpu', '--out', str(out)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    d = json.loads(out.read_text())
    (case,) = d['cases']
    assert case['model'] == 'deeplabv2-tiny' and case['batch'] == '2+2' and case['precision'] == 'fp32'
    for k in ('lab_classmix', 'lab_contrastive', 'reference_classmix', 'network_only'):
        assert case[k]['median_ms'] > 0 and case[k]['images_per_s'] > 0
    assert case['speedup_vs_reference'] > 0 and 0 <= case['outside_network'] < 1
    assert d['bf16_peak_tflops'] is None and 'fraction_of_bf16_peak' not in case     # a CPU has no bf16 peak in the table
