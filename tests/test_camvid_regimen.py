"""The parameters of the CamVid regimen: a sequence left out and scored apart (holdout), a reduced training resolution
scored at the labels' full resolution (image_scale), and SynthStreets trained as CamVid's classes (classes='camvid')."""
import json
import pytest
import torch
from classmix_lab.config import ParameterError
from classmix_lab.data import load_split
from classmix_lab.datasets import CAMVID_CLASSES, SYNTHSTREETS_AS, get_dataset
from classmix_lab.experiment import ExperimentParams, run_experiment, validate, evaluate_run, rescale
import dataset_trees as trees

pytestmark = pytest.mark.slow


@pytest.fixture
def camvid(tmp_path, monkeypatch):
    "A CamVid tree in the SegNet layout with two sequences in train, its root in the environment."
    root = trees.camvid(tmp_path/'camvid', splits={'train': 8, 'val': 2}, size=(36, 48), sequences=('0001TP', '0006R0'))
    monkeypatch.setenv('CLASSMIX_LAB_CAMVID_ROOT', str(root))
    return root


def _params(tmp_path, **kw):
    return ExperimentParams(**{**dict(dataset='camvid', labeled='2', method='classmix', init='none', iterations=2, batch_size=2, batch_size_u=2,
                                      log_every=1, out_dir=str(tmp_path/'run')), **kw})


def test_a_left_out_sequence_is_neither_trained_on_nor_labeled_and_is_scored_apart(tmp_path, camvid):
    m = run_experiment(_params(tmp_path, holdout='0006R0', image_scale=0.5), progress=None).metrics
    held = [n for n in get_dataset('camvid', 'train').names if '0006R0' in n]
    assert len(held) == 4 and m['holdout']['n_images'] == 4 and m['holdout']['prefix'] == '0006R0'
    assert (m['n_labeled'], m['n_unlabeled']) == (2, 2)                      # the 4 frames of 0001TP only
    assert not any('0006R0' in n for n in load_split(tmp_path/'run'/'labeled.txt'))
    assert 0 <= m['holdout']['miou'] <= 100 and set(m['holdout']['iou']) == set(CAMVID_CLASSES)
    # scored against the labels at full resolution: every pixel of the 2 val labels of 36x48 is counted but void
    void = sum(int((get_dataset('camvid', 'val').load(i)[1] == 255).sum()) for i in range(2))
    assert sum(map(sum, m['confusion'])) == 2*36*48 - void


def test_a_split_file_loses_its_left_out_images(tmp_path, camvid):
    from classmix_lab.data import save_split
    split = save_split(tmp_path/'s.txt', ['train/0001TP_006690.png', 'train/0006R0_006720.png', 'train/0001TP_006750.png'])
    m = run_experiment(_params(tmp_path, labeled=str(split), holdout='0006R0', method='supervised'), progress=None).metrics
    assert m['n_labeled'] == 2 and load_split(tmp_path/'run'/'labeled.txt') == ['train/0001TP_006690.png', 'train/0001TP_006750.png']
    only = save_split(tmp_path/'only.txt', ['train/0006R0_006720.png'])
    with pytest.raises(ParameterError, match="holdout='0006R0' leaves none of the labeled images"):
        validate(_params(tmp_path, labeled=str(only), holdout='0006R0'))


@pytest.mark.parametrize('kw, msg', [
    (dict(holdout='0016E5'), "holdout='0016E5' must name some but not all of camvid's 8 training images .* it names 0"),
    (dict(holdout='0'), "holdout='0' must name some but not all .* it names 8"),
    (dict(image_scale=0), r"image_scale=0.0 must be in \(0, 1\]"),
    (dict(classes='camvid'), "classes='camvid' is not one of: own"),   # only SynthStreets is mapped to other classes
])
def test_bad_regimen_parameters(tmp_path, camvid, kw, msg):
    with pytest.raises(ParameterError, match=msg):
        validate(_params(tmp_path, **kw))


def test_a_run_at_half_resolution_is_evaluated_at_its_scale(tmp_path, camvid):
    m = run_experiment(_params(tmp_path, image_scale=0.5, method='supervised'), progress=None).metrics
    r = evaluate_run(tmp_path/'run', workers=0)       # the run's own val split, images at the run's scale: its final mIoU again
    assert r['image_scale'] == 0.5 and r['miou'] == pytest.approx(m['miou'], abs=1e-6)


def test_rescale_keeps_dtype_and_labels_exact():
    x = torch.randint(0, 256, (3, 3, 36, 48), dtype=torch.uint8)
    y = torch.randint(0, 12, (3, 36, 48), dtype=torch.uint8)
    xs, ys = rescale(x, 0.5), rescale(y, 0.5)
    assert xs.shape == (3, 3, 18, 24) and xs.dtype == torch.uint8 and ys.shape == (3, 18, 24) and ys.dtype == torch.uint8
    assert set(ys.unique().tolist()) <= set(y.unique().tolist())       # nearest neighbour: no label value is made up
    assert torch.equal(ys, y[:, ::2, ::2]) and rescale(x, 1.0) is x
    flat = torch.full((1, 3, 36, 48), 77, dtype=torch.uint8)
    assert (rescale(flat, 0.5) == 77).all()                             # antialiased resizing keeps a flat image's value


def test_synthstreets_trained_as_camvid_classes(tmp_path):
    from conftest import TINY
    p = ExperimentParams.from_dict({**TINY, 'classes': 'camvid', 'labeled': 'all', 'method': 'supervised', 'init': 'none', 'iterations': 2,
                                    'batch_size': 4, 'out_dir': str(tmp_path/'run')})
    m = run_experiment(p, progress=None).metrics
    assert m['classes'] == list(CAMVID_CLASSES) and m['iou']['bicyclist'] is None   # no SynthStreets pixel is a bicyclist
    assert SYNTHSTREETS_AS['camvid']['vegetation'] == 'tree' and 'terrain' not in SYNTHSTREETS_AS['camvid']
