"""The six loaders on trees in each dataset's real layout, the real CamVid, label tables, the papers' splits, joint
transforms, batches from disk, and errors that name the file."""
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image
from classmix_lab.config import IGNORE_INDEX, ParameterError
from classmix_lab.data import (DatasetError, LoaderBatches, eval_batches, load_split, Compose, Resize,
                               RandomScale, RandomCrop, RandomHFlip, labeled_split)
from classmix_lab.datasets import (DATASETS, get_dataset, make_paper_splits, Cityscapes, VOC, GTA5, Synthia, CamVid,
                                   CITYSCAPES_CLASSES, CITYSCAPES_LABELS, SYNTHIA16_CLASSES, SYNTHIA13_CLASSES, to_cityscapes_ids)
import dataset_trees as trees
from conftest import ROOT, CAMVID


def corner(ds, i=0, n=10):
    return ds.load(i)[1][0, :n].tolist()


# ---------------------------------------------------------------- Cityscapes

def test_cityscapes_layout_and_train_ids(tmp_path):
    root = trees.cityscapes(tmp_path/'cityscapes')
    ds = get_dataset('cityscapes', 'train', root=root)
    assert ds.names == ['leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png',
                        'leftImg8bit/train/aachen/aachen_000001_000023_leftImg8bit.png',
                        'leftImg8bit/train/bochum/bochum_000000_000019_leftImg8bit.png']
    assert [p[1].name for p in ds.pairs][0] == 'aachen_000000_000019_gtFine_labelIds.png'   # not _color, _instanceIds
    assert ds.num_classes == 19 and ds.classes[0] == 'road' and ds.classes[-1] == 'bicycle'
    # road, sidewalk, car, bicycle, unlabeled, parking, terrain, sky, train, out of roi
    assert corner(ds) == [0, 1, 13, 18, 255, 255, 9, 10, 16, 255]
    assert set(np.unique(ds.load(1)[1]).tolist()) <= set(range(19)) | {255}
    val = get_dataset('cityscapes', 'val', root=root)
    assert len(val) == 2 and val.names[0].startswith('leftImg8bit/val/frankfurt/')
    # the 16 classes shared with SYNTHIA: terrain and train ignored, sky and car renumbered
    assert corner(Cityscapes('train', root, num_classes=16)) == [0, 1, 12, 15, 255, 255, 255, 9, 255, 255]


def test_cityscapes_training_and_evaluation_sizes(tmp_path):
    "Training images and labels at 512x1024 (nearest for labels); evaluation images at 512x1024 and labels at full size."
    ds = get_dataset('cityscapes', 'val', root=trees.cityscapes(tmp_path/'cs', size=(64, 128)))
    img, lab = ds.load(0)
    ti, tl = Cityscapes.train_transform()(img, lab)
    assert ti.shape == (512, 1024, 3) and tl.shape == (512, 1024) and set(np.unique(tl)) <= set(np.unique(lab))
    assert np.array_equal(tl[::8, ::8], lab)                                     # nearest: an exact 8x upsampling here
    x, y = next(eval_batches(ds, Cityscapes.eval_size, batch_size=2, workers=0))
    assert x.shape == (2, 3, 512, 1024) and x.dtype == torch.float32 and y.shape == (2, 64, 128) and y.dtype == torch.int64
    assert torch.equal(y[0], torch.from_numpy(lab).long())


def test_cityscapes_label_table_is_labels_py():
    "Our (id, name, train id, colour) table is cityscapesScripts' labels.py (when installed)."
    labels = pytest.importorskip('cityscapesscripts.helpers.labels', reason='cityscapesscripts is not installed').labels
    theirs = {l.id: (l.name, l.trainId if l.trainId not in (-1, 255) else 255, tuple(l.color)) for l in labels if l.id >= 0}
    assert {i: (n, t, c) for i, n, t, c in CITYSCAPES_LABELS} == theirs
    assert to_cityscapes_ids(np.arange(19)).tolist() == [l.id for l in sorted((l for l in labels if 0 <= l.trainId < 19), key=lambda l: l.trainId)]


# ---------------------------------------------------------------- Pascal VOC

def test_voc_lists_jpegs_and_augmented_labels(tmp_path):
    root = trees.voc(tmp_path/'VOC2012')
    ds = get_dataset('voc', root=root)                       # the training split of the papers: train_aug
    assert ds.split == 'train_aug' and ds.names == ['JPEGImages/2007_000032.jpg', 'JPEGImages/2007_000039.jpg',
                                                   'JPEGImages/2008_000002.jpg', 'JPEGImages/2009_000123.jpg']
    img, lab = ds.load(0)
    assert img.shape[2] == 3 and lab.shape == img.shape[:2] and lab[0, :4].tolist() == [0, 1, 20, 255]
    assert ds.num_classes == 21 and ds.classes[15] == 'person'
    assert len(get_dataset('voc', 'val', root=root)) == 2
    assert get_dataset('voc', 'train', root=root).names == ds.names[:2]       # DeepLab's 'image label' list lines
    pal = VOC('val', root, label_dir='SegmentationClass')                      # official palette PNGs give their indices
    assert np.array_equal(pal.load(1)[1], get_dataset('voc', 'val', root=root).load(1)[1])


def test_voc_training_transform_is_the_thesis(tmp_path):
    "Scale 0.5-1.5, flip, pad with ignore, 321x321 crop; the same seed gives the same crop."
    ds = get_dataset('voc', root=trees.voc(tmp_path/'VOC2012'))
    t = VOC.train_transform()
    assert [type(x) for x in t.transforms] == [RandomScale, RandomCrop, RandomHFlip]
    assert (t.transforms[0].low, t.transforms[0].high, t.transforms[1].height, t.transforms[1].width) == (0.5, 1.5, 321, 321)
    img, lab = ds.load(2)
    a, b = t(img, lab, np.random.default_rng(5)), t(img, lab, np.random.default_rng(5))
    assert a[0].shape == (321, 321, 3) and np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert (a[1] == IGNORE_INDEX).mean() > 0.5                                   # a ~50x60 image padded to 321: mostly ignored
    assert set(np.unique(a[1])) <= set(np.unique(lab)) | {IGNORE_INDEX}


# ---------------------------------------------------------------- GTA5 and SYNTHIA

def test_gta5_palette_labels_hold_cityscapes_ids(tmp_path):
    root = trees.gta5(tmp_path/'gta5')
    assert Image.open(root/'labels'/'00001.png').mode == 'P'
    ds = get_dataset('gta5', root=root)
    assert ds.names == ['images/00001.png', 'images/00002.png', 'images/00003.png'] and ds.classes == CITYSCAPES_CLASSES
    assert corner(ds) == [0, 1, 13, 18, 255, 255, 9, 10, 16, 255]
    t = GTA5.train_transform()
    assert isinstance(t.transforms[0], Resize) and (t.transforms[0].height, t.transforms[0].width) == (760, 1280)
    img, lab = t(*ds.load(0), rng=np.random.default_rng(0))
    assert img.shape == (512, 512, 3) and lab.shape == (512, 512)


def test_synthia_reads_the_class_channel_of_16_bit_labels(tmp_path):
    root = trees.synthia(tmp_path/'synthia')
    f = root/'GT'/'LABELS'/'0000000.png'
    assert np.array(Image.open(f))[..., 0].max() == 0          # what a plain PIL read gives: the high bytes
    ds = get_dataset('synthia', root=root)
    assert ds.names[0] == 'RGB/0000000.png' and ds.classes == SYNTHIA16_CLASSES and ds.num_classes == 16
    # SYNTHIA ids 3 road, 4 sidewalk, 2 building, 21 wall, 5 fence, 7 pole, 15 light, 9 sign, 6 vegetation, 1 sky,
    # 10 pedestrian, 17 rider, 8 car, 19 bus, 12 motorcycle, 11 bicycle; then void, parking, road work, terrain, truck, train, lane marking
    assert corner(ds, n=23) == list(range(16)) + [255]*7
    assert corner(Synthia('train', root, num_classes=19), n=23) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18, 255, 255, 255, 9, 14, 16, 255]
    assert len(SYNTHIA13_CLASSES) == 13 and not {'wall', 'fence', 'pole'} & set(SYNTHIA13_CLASSES)
    img, lab = Synthia.train_transform()(*ds.load(1), rng=np.random.default_rng(0))
    assert img.shape == (512, 512, 3)                          # a 24x40 fake padded to the 512x512 crop


def test_synthia_class_ids_above_255_are_an_error(tmp_path):
    root = trees.synthia(tmp_path/'synthia', n=1)
    trees.png16(root/'GT'/'LABELS'/'0000000.png', np.full((24, 40, 3), 259, np.uint16))
    with pytest.raises(DatasetError, match=r"0000000\.png: class ids up to .* do not fit the 0-255 table"):
        get_dataset('synthia', root=root).load(0)


# ---------------------------------------------------------------- CamVid and SynthStreets

def test_camvid_segnet_layout(tmp_path):
    root = trees.camvid(tmp_path/'camvid')
    ds = get_dataset('camvid', root=root)
    assert ds.names == [f'train/0001TP_{6690 + 30*k:06d}.png' for k in range(4)] and ds.num_classes == 11
    assert corner(ds, n=3) == [0, 10, 255]                     # 11 is void
    assert len(get_dataset('camvid', 'test', root=root)) == 2 and CamVid.in_memory


@pytest.mark.skipif(not CAMVID.is_dir(), reason='the real CamVid is not at ../shared/data/camvid')
def test_real_camvid():
    "The real CamVid: 367 training and 101 validation frames of 360x480, labels 0-10 plus ignore."
    tr, va = get_dataset('camvid', 'train'), get_dataset('camvid', 'val')  # root from settings.ini
    assert len(tr) == 367 and len(va) == 101 and tr.root.resolve() == CAMVID.resolve()
    seen = np.zeros(256, np.int64)
    for ds in (tr, va):
        for i in range(len(ds)):
            img, lab = ds.load(i)
            assert img.shape == (360, 480, 3)
            seen += np.bincount(lab.ravel(), minlength=256)
    assert set(np.flatnonzero(seen).tolist()) == set(range(11)) | {255}
    lines = (CAMVID/'train.txt').read_text().split()
    assert sorted(l for l in lines if l.startswith('train/')) == tr.names       # the same frames as the dataset's own list


def test_synthstreets_is_in_the_registry(tmp_path):
    ds = get_dataset('synthstreets', 'val', style='sim', height=48, width=96, n_train=4, n_val=2)
    assert len(ds) == 2 and list(DATASETS)[0] == 'synthstreets'
    assert set(DATASETS) == {'synthstreets', 'cityscapes', 'voc', 'gta5', 'synthia', 'camvid'}


# ---------------------------------------------------------------- bad input names the file

@pytest.mark.parametrize('name', ['cityscapes', 'voc', 'gta5', 'synthia', 'camvid'])
def test_missing_root_names_it(tmp_path, name):
    with pytest.raises(DatasetError, match=f"nowhere: {name} root folder does not exist"):
        get_dataset(name, root=tmp_path/'nowhere')


def test_missing_split_folder_names_it(tmp_path):
    root = trees.cityscapes(tmp_path/'cs', cities={'train': {'aachen': 1}})
    with pytest.raises(DatasetError, match=r"leftImg8bit/val: missing; is .* a cityscapes root\?"):
        get_dataset('cityscapes', 'val', root=root)
    with pytest.raises(ParameterError, match="split='testing' is not one of: train, val, test"):
        get_dataset('cityscapes', 'testing', root=root)


def test_bad_files_name_the_file(tmp_path):
    root = trees.cityscapes(tmp_path/'cs', cities={'train': {'aachen': 4}})
    ds = get_dataset('cityscapes', root=root)
    lbl = lambda k: root/'gtFine'/'train'/'aachen'/f'aachen_{k:06d}_{19 + 4*k:06d}_gtFine_labelIds.png'
    trees.save(lbl(0), np.zeros((16, 64), np.uint8), 'L')                                  # size differs from its image
    with pytest.raises(DatasetError, match=r"aachen_000000_000019_gtFine_labelIds\.png: label is 64x16 but its image .*_leftImg8bit\.png is 64x32"):
        ds.load(0)
    trees.save(lbl(1), np.full((32, 64), 40, np.uint8), 'L')                               # a value outside the table
    with pytest.raises(DatasetError, match=r"aachen_000001_000023_gtFine_labelIds\.png: values \[40\] are not in the Cityscapes labelIds"):
        ds.load(1)
    img = root/'leftImg8bit'/'train'/'aachen'/'aachen_000002_000027_leftImg8bit.png'
    img.write_bytes(img.read_bytes()[:60])                                                    # a truncated (corrupt) PNG
    with pytest.raises(DatasetError, match=r"aachen_000002_000027_leftImg8bit\.png: cannot read image"):
        ds.load(2)
    lbl(3).unlink()
    with pytest.raises(DatasetError, match=r"aachen_000003_000031_gtFine_labelIds\.png: label file is missing for image"):
        get_dataset('cityscapes', root=root)


def test_bad_files_of_the_other_formats(tmp_path):
    syn = trees.synthia(tmp_path/'synthia', n=2)
    (syn/'GT'/'LABELS'/'0000001.png').write_bytes(b'\x89PNG\r\n\x1a\n garbage')
    with pytest.raises(DatasetError, match=r"GT/LABELS/0000001\.png: cannot read label"):
        get_dataset('synthia', root=syn).load(1)
    cam = trees.camvid(tmp_path/'camvid')
    trees.save(cam/'trainannot'/'0001TP_006720.png', np.full((18, 24), 12, np.uint8), 'L')
    with pytest.raises(DatasetError, match=r"trainannot/0001TP_006720\.png: values \[12\] are not in the CamVid table"):
        get_dataset('camvid', root=cam).load(1)
    voc = trees.voc(tmp_path/'VOC2012')
    (voc/'JPEGImages'/'2008_000002.jpg').unlink()
    with pytest.raises(DatasetError, match=r"JPEGImages/2008_000002\.jpg: image file is missing for 2008_000002 of ImageSets/Segmentation/train_aug\.txt"):
        get_dataset('voc', root=voc)


def test_empty_splits_are_errors(tmp_path):
    root = trees.cityscapes(tmp_path/'cs', cities={'train': {'aachen': 1}, 'val': {}})
    (root/'leftImg8bit'/'val').mkdir(parents=True); (root/'gtFine'/'val').mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"cs: split 'val' of cityscapes has no images"):
        get_dataset('cityscapes', 'val', root=root)
    voc = trees.voc(tmp_path/'VOC2012')
    (voc/'ImageSets'/'Segmentation'/'val.txt').write_text('\n\n')
    with pytest.raises(DatasetError, match=r"ImageSets/Segmentation/val\.txt: split list is empty"):
        get_dataset('voc', 'val', root=voc)


# ---------------------------------------------------------------- the papers' splits

def _empty_tree(root, names):
    "Empty files are enough to list a split (images are only read when used)."
    for n in names: p = Path(root)/n; p.parent.mkdir(parents=True, exist_ok=True); p.touch()


def test_paper_splits_of_cityscapes_and_voc(tmp_path):
    "Cityscapes 100/372/744/1488 of 2,975 and VOC 1/100-1/4 of 10,582; the same files from a tree listed anywhere."
    cities = ['aachen', 'bochum', 'bremen', 'cologne', 'darmstadt']
    stems = [f'{cities[i % 5]}_{i:06d}_000019' for i in range(2975)]
    for r in ('a', 'b'):
        _empty_tree(tmp_path/r/'cs', [f'leftImg8bit/train/{s.split("_")[0]}/{s}_leftImg8bit.png' for s in stems] +
                    [f'gtFine/train/{s.split("_")[0]}/{s}_gtFine_labelIds.png' for s in stems])
    made = make_paper_splits('cityscapes', tmp_path/'a'/'cs', tmp_path/'splits_a', seeds=(0, 1))
    assert [p.name for p in made] == ['100_seed0.txt', '100_seed1.txt', '372_seed0.txt', '372_seed1.txt', '744_seed0.txt',
                                      '744_seed1.txt', '1488_seed0.txt', '1488_seed1.txt']
    again = make_paper_splits('cityscapes', tmp_path/'b'/'cs', tmp_path/'splits_b', seeds=(0, 1))
    assert [load_split(p) for p in made] == [load_split(p) for p in again]                  # portable: the same names
    assert load_split(made[0]) != load_split(made[1]) and load_split(made[0])[0].startswith('leftImg8bit/train/')
    ids = [f'20{7 + i % 5:02d}_{i:06d}' for i in range(10582)]
    _empty_tree(tmp_path/'voc', [f'JPEGImages/{i}.jpg' for i in ids] + [f'SegmentationClassAug/{i}.png' for i in ids])
    (tmp_path/'voc'/'ImageSets'/'Segmentation').mkdir(parents=True)
    (tmp_path/'voc'/'ImageSets'/'Segmentation'/'train_aug.txt').write_text('\n'.join(ids))
    made = make_paper_splits('voc', tmp_path/'voc', tmp_path/'splits')
    assert [p.name for p in made] == ['106_seed0.txt', '212_seed0.txt', '529_seed0.txt', '1323_seed0.txt', '2646_seed0.txt']


@pytest.mark.skipif(not CAMVID.is_dir(), reason='the real CamVid is not at ../shared/data/camvid')
def test_committed_camvid_splits_are_reproducible(tmp_path):
    "splits/camvid/30_seed{0-9}.txt (French et al.: ten subsets of 30) are what make_paper_splits gives on the real data."
    made = make_paper_splits('camvid', None, tmp_path, seeds=range(10))
    for p in made:
        assert load_split(p) == load_split(ROOT/'splits'/'camvid'/p.name) and len(load_split(p)) == 30
    assert len({tuple(load_split(p)) for p in made}) == 10


# ---------------------------------------------------------------- joint transforms and batches

def test_joint_transforms_move_image_and_label_together():
    img = np.zeros((10, 20, 3), np.uint8); img[:, :5] = 255
    lab = np.zeros((10, 20), np.uint8); lab[:, :5] = 1
    rng = np.random.default_rng(0)
    fi, fl = RandomHFlip(p=1.0)(img, lab, rng)
    assert fl[:, -5:].all() and (fi[:, -5:] == 255).all()
    si, sl = RandomScale(2.0, 2.0)(img, lab, rng)
    assert si.shape == (20, 40, 3) and set(np.unique(sl)) == {0, 1}              # nearest: no new label values
    ci, cl = RandomCrop(16, 30)(img, lab, rng)
    assert ci.shape == (16, 30, 3) and (cl == IGNORE_INDEX).sum() == 16*30 - 10*20
    assert (ci[cl == IGNORE_INDEX] == (124, 116, 104)).all()                      # padding: the ImageNet mean pixel
    with pytest.raises(ParameterError, match=r'RandomHFlip\(0.5\) is random: call it with rng='):
        RandomHFlip()(img, lab)
    ui, ul = Compose([RandomScale(), RandomCrop(8)])(img, None, rng)
    assert ui.shape == (8, 8, 3) and ul is None                                   # unlabeled images go through alone


def test_loader_batches_are_seeded_resumable_and_worker_independent(tmp_path):
    ds = get_dataset('voc', root=trees.voc(tmp_path/'VOC2012'))
    t = VOC.train_transform(crop=24)
    a = LoaderBatches(ds, batch_size=3, transform=t, seed=7, workers=0)
    stream = [next(a) for _ in range(4)]                                           # 12 items: 3 epochs of 4 images
    b = LoaderBatches(ds, batch_size=3, transform=t, seed=7, workers=2)
    for x, y in stream:
        bx, by = next(b)
        assert torch.equal(x, bx) and torch.equal(y, by)
    assert stream[0][0].shape == (3, 3, 24, 24) and stream[0][1].dtype == torch.int64 and 0 <= stream[0][0].min() <= stream[0][0].max() <= 1
    c = LoaderBatches(ds, batch_size=3, transform=t, seed=7, workers=0)
    next(c); state = c.state_dict()
    d = LoaderBatches(ds, batch_size=3, transform=t, seed=7, workers=2); d.load_state_dict(state)
    assert all(torch.equal(next(d)[0], x) for x, _ in stream[1:])                  # a restored stream goes on where it was
    assert not torch.equal(next(LoaderBatches(ds, 3, t, seed=8, workers=0))[0], stream[0][0])
    u = LoaderBatches(ds, batch_size=2, transform=t, seed=0, workers=0, labels=False)
    assert next(u)[1] is None
    with pytest.raises(ParameterError, match='batch state of seed 7 cannot resume a stream of seed 8'):
        LoaderBatches(ds, 3, t, seed=8).load_state_dict(state)


def test_one_epoch_sees_every_image_once(tmp_path):
    ds = get_dataset('camvid', root=trees.camvid(tmp_path/'camvid', splits={'train': 7}))
    src = LoaderBatches(ds, batch_size=7, seed=3, workers=0)
    x, y = next(src)
    imgs = torch.stack([ds[i][0] for i in range(7)]).float()/255
    assert sorted(int((imgs == xi).all(dim=(1, 2, 3)).nonzero()) for xi in x) == list(range(7))


def test_images_of_different_sizes_in_a_batch_are_an_error(tmp_path):
    ds = get_dataset('voc', root=trees.voc(tmp_path/'VOC2012'))
    with pytest.raises(DatasetError, match=r"JPEGImages/\S+\.jpg and JPEGImages/\S+\.jpg differ in size .* use batch_size=1"):
        next(LoaderBatches(ds, batch_size=4, seed=0, workers=0))
    sizes = [tuple(y.shape[-2:]) for _, y in eval_batches(ds, batch_size=1, workers=0)]      # evaluation: one at a time, as stored
    assert sizes == [ds.load(i)[1].shape for i in range(len(ds))]


def test_a_users_folder_dataset_without_code(tmp_path):
    import json
    import numpy as np
    from PIL import Image
    import dataset_trees as trees
    from classmix_lab.datasets import get_dataset, dataset_class
    root = trees.folder(tmp_path/'mine')
    ds = get_dataset(f'folder:{root}', 'train')
    assert (len(ds), ds.classes, tuple(ds.palette[2])) == (6, ('floor', 'wall', 'door'), (30, 60, 200))
    assert dataset_class(f'folder:{root}').splits == ('train', 'val') and dataset_class(f'folder:{root}').val_split == 'val'
    img, lab = ds.load(0)
    assert img.shape == (16, 24, 3) and lab[0, :3].tolist() == [0, 1, 2] and set(np.unique(lab)) <= {0, 1, 2, 255}
    # bad input: each error names the file and what was expected
    Image.fromarray(np.full((16, 24), 9, np.uint8)).save(root/'labels'/'train'/'frame001.png')
    with pytest.raises(DatasetError, match=r"frame001.png: values \[9\] are not in the classes.json class table \(known: \[0, 1, 5, 255\]\)"):
        ds.load(1)
    Image.fromarray(np.zeros((15, 24), np.uint8)).save(root/'labels'/'train'/'frame002.png')
    with pytest.raises(DatasetError, match=r"frame002.png: label is 24x15 but its image .*frame002.jpg is 24x16"):
        ds.load(2)
    (root/'labels'/'train'/'frame003.png').unlink()
    with pytest.raises(DatasetError, match=r"frame003.png: label file is missing for image .*frame003.jpg"):
        get_dataset(f'folder:{root}', 'train')
    bare = trees.folder(tmp_path/'bare', table=False)
    with pytest.raises(DatasetError, match=r"bare/classes.json: missing; a folder dataset needs a class table"):
        get_dataset(f'folder:{bare}')
    for table, msg in [({'classes': []}, "'classes' must be a non-empty list"),
                       ({'classes': [{'name': 'a', 'color': [1, 2, 3]}, {'name': 'a', 'color': [1, 2, 3]}]}, "class name 'a' appears twice"),
                       ({'classes': [{'name': 'a', 'color': [1, 2, 3], 'value': 255}]}, 'value 255 is both a class and ignored'),
                       ({'classes': [{'name': 'a', 'color': [1, 2, 300]}]}, r"class 'a': 'color' must be \[r, g, b\] with values 0-255")]:
        (bare/'classes.json').write_text(json.dumps(table))
        with pytest.raises(DatasetError, match=msg): get_dataset(f'folder:{bare}')
    (bare/'classes.json').write_text('{"classes": [')
    with pytest.raises(DatasetError, match='classes.json: not valid JSON'): get_dataset(f'folder:{bare}')
    with pytest.raises(ParameterError, match=r"split='test' is not one of: train, val"):
        get_dataset(f'folder:{root}', 'test')


def test_a_dataset_says_what_a_runs_data_parameters_make_of_it():
    "SynthStreets knows its size, classes and memory without making its images; a dataset on disk answers None, 0 or its stored facts."
    from classmix_lab.experiment import ExperimentParams
    from classmix_lab.datasets import SynthStreets, CamVid
    d = ExperimentParams(height=48, width=96, n_train=10, n_val=4, classes='camvid').group('data')
    assert SynthStreets.run_memory(d) == 14*48*96*4 and SynthStreets.run_memory(d, ('train',)) == 10*48*96*4   # a source holds its training images
    assert SynthStreets.run_image_size(d) == (48, 96) and SynthStreets.run_train_count(d) == 10 and 'pavement' in SynthStreets.run_classes(d)
    assert SynthStreets.run_kwargs(d) == dict(style='real', height=48, width=96, seed=0, n_train=10, n_val=4, classes='camvid')
    assert (CamVid.run_kwargs(d), CamVid.run_classes(d), CamVid.run_train_count(d), CamVid.run_memory(d), CamVid.run_settings) == ({}, None, None, 0, ())
