"""The dataset interface on real files: look-up-table remapping, errors that name the file, portable splits, batches."""
import numpy as np
import pytest
import torch
from PIL import Image
from classmix_lab.config import IGNORE_INDEX, ParameterError
from classmix_lab.data import (DatasetError, LabelMap, SegDataset, _pairs, labeled_split, save_split,
                               load_split, load_tensors, TensorBatches, labeled_count)
from classmix_lab.datasets import get_dataset
from classmix_lab.synthstreets import save_label_png, CLASSES, PALETTE


def make_tree(root, n=4, size=(20, 30)):
    "A tiny dataset in the SynthStreets layout: images/ and labels/ PNGs under a split folder."
    (root/'train'/'images').mkdir(parents=True); (root/'train'/'labels').mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root/'train'/'images'/f'{i:06d}.png')
        save_label_png(root/'train'/'labels'/f'{i:06d}.png', rng.integers(0, len(CLASSES), size).astype(np.uint8))
    return root


def dataset(root, lmap=None):
    return SegDataset(root, 'train', _pairs(root/'train'/'images', root/'train'/'labels'), CLASSES, PALETTE,
                      lmap or LabelMap.identity(len(CLASSES), name='SynthStreets'))


def test_lut_remap_is_one_gather():
    lm = LabelMap({7: 0, 26: 13, 0: IGNORE_INDEX, 1: IGNORE_INDEX}, 'Cityscapes')
    lab = np.array([[7, 26, 0, 1]], np.uint8)
    assert lm(lab).tolist() == [[0, 13, 255, 255]]
    with pytest.raises(DatasetError, match=r"x\.png: values \[40\] are not in the Cityscapes table"):
        lm(np.array([[7, 40]], np.uint8), 'x.png')


def test_reading_checks_and_names_the_file(tmp_path):
    ds = dataset(make_tree(tmp_path))
    img, lab = ds.load(1)
    assert img.shape == (20, 30, 3) and lab.shape == (20, 30)
    # a label whose size differs from its image
    save_label_png(tmp_path/'train'/'labels'/'000001.png', np.zeros((10, 30), np.uint8))
    with pytest.raises(DatasetError, match=r"000001\.png: label is 30x10 but its image .*000001\.png is 30x20"):
        ds.load(1)
    # a corrupt PNG
    (tmp_path/'train'/'images'/'000002.png').write_bytes(b'\x89PNG\r\n\x1a\nnot really')
    with pytest.raises(DatasetError, match=r"000002\.png: cannot read image"):
        ds.load(2)
    # a label value outside the table
    save_label_png(tmp_path/'train'/'labels'/'000003.png', np.full((20, 30), 42, np.uint8))
    with pytest.raises(DatasetError, match=r"000003\.png: values \[42\] are not in the SynthStreets table"):
        ds.load(3)


def test_missing_label_and_empty_split(tmp_path):
    root = make_tree(tmp_path, n=2)
    (root/'train'/'labels'/'000001.png').unlink()
    with pytest.raises(DatasetError, match=r"000001\.png: label file is missing for image"):
        dataset(root)
    (tmp_path/'e'/'train'/'images').mkdir(parents=True); (tmp_path/'e'/'train'/'labels').mkdir()
    with pytest.raises(DatasetError, match="split 'train' of dataset has no images"):
        dataset(tmp_path/'e')


def test_missing_root_names_it(tmp_path):
    with pytest.raises(DatasetError, match=r"nowhere: synthstreets root folder does not exist"):
        get_dataset('synthstreets', 'train', root=tmp_path/'nowhere')


def test_splits_are_portable(tmp_path):
    "The same names and seed give the same split whatever order they are listed in; a split file round-trips."
    names = [f'city/{i:04d}_leftImg8bit.png' for i in range(2975)]
    a = labeled_split(names, 372, seed=0)
    b = labeled_split(list(reversed(names)), 372, seed=0)
    assert a == b and len(a) == 372 and a == sorted(a)
    assert labeled_split(names, 372, seed=1) != a
    save_split(tmp_path/'s.txt', a)
    assert load_split(tmp_path/'s.txt') == a
    assert len(labeled_split(names, '1/8', seed=0)) == 372     # Cityscapes 1/8 is 372 images (thesis Table 4.1)
    (tmp_path/'empty.txt').write_text('\n')
    with pytest.raises(DatasetError, match="empty.txt: split file is empty"):
        load_split(tmp_path/'empty.txt')


@pytest.mark.parametrize('bad, msg', [(0, 'labeled=0 must be between 1 and 10'), (11, 'labeled=11 must be between 1 and 10'),
                                      ('1.5', 'a fraction must be in'), ('lots', "labeled='lots' is not a count")])
def test_labeled_count_errors(bad, msg):
    with pytest.raises(ParameterError, match=msg):
        labeled_count(bad, 10)


def test_subset_and_tensor_batches(tmp_path):
    ds = dataset(make_tree(tmp_path, n=5))
    sub = ds.subset(['train/images/000003.png', 'train/images/000001.png'])
    x, y = load_tensors(sub)
    assert x.shape == (2, 3, 20, 30) and x.dtype == torch.uint8 and y.dtype == torch.uint8
    assert torch.equal(x[0], ds[3][0])
    with pytest.raises(DatasetError, match="names of the split are not in 'train'"):
        ds.subset(['train/images/999.png'])
    b = TensorBatches(*load_tensors(ds), batch_size=2, seed=0)
    seen = torch.cat([b._indices() for _ in range(5)])
    assert sorted(seen[:5].tolist()) == [0, 1, 2, 3, 4]       # one epoch covers each image once
    st = b.state_dict(); x1, _ = next(b); b.load_state_dict(st); x2, _ = next(b)
    assert torch.equal(x1, x2)                                  # the sampler's state restores its stream
