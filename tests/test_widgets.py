"""The mask explorer without a browser: its example is exactly the mix it claims, every control redraws, a checkpoint
adds the teacher's row, and bad settings are named."""
import math
import json
import numpy as np
import pytest
import torch
from classmix_lab.config import IGNORE_INDEX, ParameterError
from classmix_lab.datasets import get_dataset
from classmix_lab.model import get_model
from classmix_lab.masks import MASKS
from classmix_lab.widgets import MaskExplorer, explore_masks, mask_example, load_teacher, KINDS

SMALL = dict(synthstreets=dict(height=48, width=96, n_train=8, n_val=4))


@pytest.fixture
def pair():
    ds = get_dataset('synthstreets', 'train', **SMALL['synthstreets'])
    (xa, ya), (xb, yb) = ds[0], ds[1]
    return torch.stack([xa, xb]), torch.stack([ya, yb])


@pytest.mark.parametrize('kind', [k for k in KINDS if k not in ('mixup', 'phtps')])
def test_example_is_a_pasted_or_erased_on_the_pair(pair, kind):
    x, y = pair
    ex = mask_example(x, y, kind, 11, seed=2)
    M = ex['mask'].astype(bool)
    a, b = x[0].permute(1, 2, 0).numpy(), x[1].permute(1, 2, 0).numpy()
    assert 0 < M.mean() < 1
    if kind in ('cutout', 'cowout'):
        assert (ex['mixed_image'][M] == 0).all() and (ex['mixed_image'][~M] == a[~M]).all()
        assert (ex['mixed_label'][M] == IGNORE_INDEX).all() and (ex['mixed_label'][~M] == y[0].numpy()[~M]).all()
    else:
        assert (ex['mixed_image'][M] == a[M]).all() and (ex['mixed_image'][~M] == b[~M]).all()
        assert (ex['mixed_label'][M] == y[0].numpy()[M]).all() and (ex['mixed_label'][~M] == y[1].numpy()[~M]).all()


def test_mixup_example_blends_images_and_labels(pair):
    x, y = pair
    ex = mask_example(x, y, 'mixup', 11, seed=0, alpha=1.)
    lam = ex['lam']
    expect = lam*x[0].float() + (1 - lam)*x[1].float()
    assert np.abs(ex['mixed_image'].astype(float) - expect.permute(1, 2, 0).numpy()).max() <= 1
    onehot = lambda l: np.eye(11)[l.numpy()].transpose(2, 0, 1)
    assert np.allclose(ex['mixed_probs'], lam*onehot(y[0]) + (1 - lam)*onehot(y[1]), atol=1e-6)


def test_every_control_redraws():
    ex = explore_masks(['synthstreets'], dataset_kwargs=SMALL)
    seen = {ex.image.value}
    for widget, value in [(ex.index_b, 3), (ex.p, 0.3), (ex.seed, 5), (ex.kind, 'cutmix'), (ex.kind, 'cowout'),
                          (ex.sigma, (4., 8.)), (ex.kind, 'mixup'), (ex.alpha, 2.), (ex.split, 'val'), (ex.index_a, 2)]:
        widget.value = value
        assert ex.image.value not in seen, f'{widget.description}={value!r} did not redraw'
        seen.add(ex.image.value)
        assert 'color:#b00020' not in ex.status.value, ex.status.value


def test_controls_follow_the_mask_kind():
    ex = explore_masks(['synthstreets'], dataset_kwargs=SMALL, kind='cowout')
    shown = lambda w: w.layout.display != 'none'
    assert shown(ex.sigma) and shown(ex.p) and not shown(ex.classes) and not shown(ex.alpha)
    assert ex.p.value == pytest.approx(0.62, abs=0.01)         # the middle of CowOut's U(0.25, 1)
    ex.kind.value = 'classmix'
    assert shown(ex.classes) and not shown(ex.sigma) and ex.p.max == 1.
    ex.classes.value = ('road', 'car')
    pasted = ex.status.value.split('classes of A pasted: ')[1].split(' &middot;')[0].split('<')[0]
    assert set(pasted.split(', ')) <= {'road', 'car'}
    ex.classes.value = ()
    assert 'choose at least one class to paste' in ex.status.value


def test_a_checkpoint_adds_the_teacher_row(tmp_path):
    net = get_model('deeplabv2-tiny', 11)
    run = tmp_path/'run'; run.mkdir()
    torch.save(dict(state_dict=net.state_dict(), model='deeplabv2-tiny', num_classes=11), run/'model.pt')
    ex = explore_masks(['synthstreets'], checkpoint=run, dataset_kwargs=SMALL)
    e = ex.example
    assert {'pseudo', 'confidence', 'confident', 'mixed_pseudo'} <= set(e) and e['confidence'].shape == (48, 96)
    assert np.array_equal(e['confident'], e['confidence'] > 0.968) and 'teacher: weights of' in ex.status.value
    assert ex.teacher_box.layout.display != 'none'
    before = ex.image.value
    ex.tau.value = 0.2
    assert ex.image.value != before and ex.example['confident_fraction'] >= e['confident_fraction']
    ex.mask_from.value = 'pseudo-label'
    with torch.no_grad(): pseudo = net.eval()(ex._pair(ex._dataset())[0].float()/255).argmax(1)[0].numpy()
    M = ex.example['mask'].astype(bool)
    assert len(np.unique(pseudo[M])) == int(np.ceil(0.5*len(np.unique(pseudo))))   # half of the pseudo-label's classes


def test_teacher_of_a_training_checkpoint_and_bad_checkpoints(tmp_path):
    student, teacher = get_model('deeplabv2-tiny', 11), get_model('deeplabv2-tiny', 11)
    torch.save(dict(student=student.state_dict(), teacher=teacher.state_dict(), iteration=3), tmp_path/'checkpoint.pt')
    (tmp_path/'metrics.json').write_text(json.dumps(dict(params=dict(model='deeplabv2-tiny'))))
    net, what = load_teacher(tmp_path, 11)
    assert what.startswith('teacher of') and torch.equal(net.conv1.weight, teacher.conv1.weight)
    with pytest.raises(ParameterError, match='checkpoint=.*does not exist'):
        explore_masks(['synthstreets'], checkpoint=tmp_path/'missing.pt', dataset_kwargs=SMALL)
    (tmp_path/'junk.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(ParameterError, match='junk.pt: not a loadable checkpoint'):
        explore_masks(['synthstreets'], checkpoint=tmp_path/'junk.pt', dataset_kwargs=SMALL)
    torch.save(get_model('deeplabv2-tiny', 19).state_dict(), tmp_path/'cityscapes.pt')
    with pytest.raises(ParameterError, match='the weights fit none of .* with 11 classes'):
        explore_masks(['synthstreets'], checkpoint=tmp_path/'cityscapes.pt', dataset_kwargs=SMALL)


def test_bad_settings_are_named():
    with pytest.raises(ParameterError, match="dataset='kitti' is not one of"):
        explore_masks(['kitti'])
    with pytest.raises(ParameterError, match="kind='fmix' is not one of"):
        MaskExplorer(['synthstreets'], dataset_kwargs=SMALL, kind='fmix')
    with pytest.raises(ParameterError, match=r'index_a=99 must be between 0 and 7 \(the images of synthstreets train\)'):
        MaskExplorer(['synthstreets'], dataset_kwargs=SMALL, index_a=99)
    assert MaskExplorer(['synthstreets'], dataset_kwargs=SMALL).index_b.value == 4     # B defaults to the middle of the split
    x, y = torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2, 8, 8, dtype=torch.long)
    with pytest.raises(ParameterError, match="mask_from='pseudo-label' needs a teacher's probs"):
        mask_example(x, y, 'cutmix', 3, mask_from='pseudo-label')
    with pytest.raises(ParameterError, match='must be a pair'):
        mask_example(x[:1], y[:1], 'cutmix', 3)
    assert set(KINDS) == {*MASKS, 'mixup', 'phtps'}


def test_an_unreadable_split_is_a_message_not_a_crash(tmp_path):
    import shutil
    src = get_dataset('synthstreets', 'train', **SMALL['synthstreets']).root
    shutil.copytree(src/'train', tmp_path/'train')                          # a root with no 'val' split
    ex = explore_masks(['synthstreets'], dataset_kwargs=dict(synthstreets=dict(root=tmp_path)))
    first = ex.image.value
    ex.split.value = 'val'
    assert 'color:#b00020' in ex.status.value and 'val' in ex.status.value and ex.image.value == first
    ex.split.value = 'train'
    assert 'color:#b00020' not in ex.status.value


def test_explorer_shows_kims_boxes_and_a_phtps_warp():
    ex = MaskExplorer(['synthstreets'], dataset_kwargs=SMALL)
    ex.kind.value = 'multibox'
    assert abs(ex.p.value - math.log(2)/32) < 1e-6, 'p starts at ln 2 / 32 per box'
    assert len(ex.example['boxes']) == 32 and ex.example['sc_boxes'] == list(range(16, 32)) and 'error' not in ex.status.value
    ex.kind.value = 'phtps'
    assert ex.tps_sigma.layout.display is None and ex.p.layout.display == 'none'
    ex.tps_sigma.value = 0.2
    valid = ex.example['mask'].astype(bool)
    assert 0 < valid.mean() < 1 and 'valid:' in ex.status.value
    assert (ex.example['mixed_label'][~valid] == IGNORE_INDEX).all()


def test_folder_datasets_are_listed_by_path_beside_registered_ones(tmp_path, monkeypatch):
    "`folder:PATH` (relative to the working folder) is accepted, listed once by its absolute path, and explored as any dataset."
    import dataset_trees as trees
    root = trees.folder(tmp_path/'mine', splits={'train': 6, 'val': 2})
    monkeypatch.chdir(tmp_path)
    ex = explore_masks(['synthstreets', 'folder:mine', 'folder:./mine/'], dataset_kwargs=SMALL)
    assert ex.names == ['synthstreets', f'folder:{root}']
    assert list(ex.dataset.options) == [('synthstreets', 'synthstreets'), (str(root), f'folder:{root}')]
    ex.dataset.value = f'folder:{root}'
    assert 'color:#b00020' not in ex.status.value, ex.status.value
    assert ex.status.value.split('>', 1)[1].startswith(f'folder:{root} train') and ex.index_a.max == 5
    assert list(ex.classes.options) == ['floor', 'wall', 'door'] and ex.example['mixed_label'].shape == (16, 24)
    ex.split.value = 'val'
    assert ex.index_b.max == 1 and 'color:#b00020' not in ex.status.value
    ex.dataset.value = 'synthstreets'
    assert 'road' in ex.classes.options and ex.example['mixed_label'].shape == (48, 96)
    # a teacher of the folder's classes adds its row; weights of other classes are named, not shown
    torch.save(dict(state_dict=get_model('deeplabv2-tiny', 3).state_dict(), model='deeplabv2-tiny', num_classes=3,
                    classes=['floor', 'wall', 'door']), tmp_path/'mine.pt')
    ex = explore_masks('folder:mine', checkpoint=tmp_path/'mine.pt')
    assert 'pseudo' in ex.example and 'teacher: ' in ex.status.value
    with pytest.raises(ParameterError, match=r"was trained on the classes road, .*the dataset's are floor, wall, door"):
        explore_masks('folder:mine', checkpoint='synthstreets-sim')
    with pytest.raises(Exception, match=rf"{tmp_path/'nope'}: no such folder"):
        explore_masks('folder:nope')


def test_the_explorer_draws_what_the_methods_draw(pair):
    "MixUp, PhTPS and Kim et al.'s boxes come from ICT's, PhTPS's and the structured method's own code, same seed, same draw."
    from classmix_lab.methods.registry import make_method
    from classmix_lab.viz import to_image
    x, y = pair
    g = lambda: torch.Generator().manual_seed(5)
    ex = mask_example(x, y, 'phtps', 11, seed=5, tps_sigma=0.15)
    warped, grid = make_method('phtps', tps_sigma=0.15).perturb(x[:1].float()/255, g())
    assert (ex['mixed_image'] == to_image(warped[0])).all()
    ict = make_method('ict', alpha=0.3)
    lam = ict.lambdas(2, g(), 'cpu')
    ex = mask_example(x, y, 'mixup', 11, seed=5, alpha=0.3)
    assert ex['lam'] == float(lam[0]) and (ex['mixed_image'] == to_image(ict.blend(lam, x.float()/255)[0])).all()
    ex = mask_example(x, y, 'multibox', 11, seed=5, n=12, sc_boxes=5)
    owners, rects, structured = make_method('structured', boxes=12, sc_boxes=5).boxes(y.shape, g())
    assert ex['boxes'] == rects[0].long().tolist() and ex['sc_boxes'] == structured == list(range(7, 12))
    assert (ex['mask'].astype(bool) == (owners[0] >= 0).numpy()).all()


def test_the_lab_jupyterlab_plugin_is_where_jupyterlab_finds_it():
    """The plugin that makes an early Run All wait for the kernel (labextension/) is in this environment's JupyterLab,
    as the checkout's own file, and a wheel would install the file its package.json names."""
    import tomllib
    from pathlib import Path
    from jupyter_core.paths import jupyter_path
    from jupyterlab_server.config import get_federated_extensions
    from conftest import ROOT
    pkg = json.loads((ROOT/'labextension'/'package.json').read_text())
    load = pkg['jupyterlab']['_build']['load']
    ext = get_federated_extensions(jupyter_path('labextensions')).get(pkg['name'])
    assert ext is not None, f"JupyterLab does not find {pkg['name']} (make setup links labextension/ into .venv)"
    assert (Path(ext['ext_path'])/load).read_bytes() == (ROOT/'labextension'/load).read_bytes()
    files = tomllib.loads((ROOT/'pyproject.toml').read_text())['tool']['setuptools']['data-files']
    shipped = {f"{dest}/{Path(f).name}" for dest, fs in files.items() for f in fs}
    assert f"share/jupyter/labextensions/{pkg['name']}/{load}" in shipped
    assert f"share/jupyter/labextensions/{pkg['name']}/package.json" in shipped
