"""The workbench's mIoU is the official Cityscapes evaluator's (cityscapesScripts' evalPixelLevelSemanticLabeling) on
the same predictions and labels, on a tree in the Cityscapes layout."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from classmix_lab.data import eval_batches
from classmix_lab.datasets import get_dataset, to_cityscapes_ids, CITYSCAPES_CLASSES
from classmix_lab.metrics import evaluate
import dataset_trees as trees

cs_eval = pytest.importorskip('cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling',
                              reason='the official evaluator (pip install cityscapesscripts) is not installed')


class Replay(torch.nn.Module):
    "A 'model' that returns, call after call, one-hot logits of stored predictions (train ids)."
    def __init__(self, preds): super().__init__(); self.preds = list(preds)
    def forward(self, x):
        p = torch.from_numpy(self.preds.pop(0)).long()
        assert p.shape == x.shape[-2:]
        return F.one_hot(p, 19).permute(2, 0, 1)[None].float()


def official_scores(pred_files, gt_files):
    "Class IoUs and their mean from the official evaluator (pixel level; its instance-level scoring, which calls the removed np.in1d, off)."
    args = cs_eval.args
    args.evalInstLevelScore, args.evalPixelAccuracy, args.JSONOutput, args.quiet = False, False, False, True
    res = cs_eval.evaluateImgLists([str(p) for p in pred_files], [str(g) for g in gt_files], args)
    return res['classScores'], res['averageScoreClasses']


def test_miou_equals_the_official_cityscapes_evaluator(tmp_path):
    rng = np.random.default_rng(0)
    root = trees.cityscapes(tmp_path/'cityscapes', cities={'val': {'frankfurt': 3, 'lindau': 2, 'munster': 2}}, size=(48, 96))
    ds = get_dataset('cityscapes', 'val', root=root)
    preds, pred_files = [], []
    for i in range(len(ds)):
        gt = ds.load(i)[1].astype(np.int64)
        p = np.where(gt == 255, rng.integers(0, 19, gt.shape), gt)
        noise = rng.random(gt.shape) < 0.35
        p[noise] = rng.choice([c for c in range(19) if c != 16], noise.sum())   # 'train' never predicted ...
        p[(p == 16)] = 13                                                        # ... and, here, never present either
        preds.append(p)
        f = tmp_path/'pred'/ds.names[i].replace('leftImg8bit/', '').replace('_leftImg8bit.png', '_pred_labelIds.png')
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(to_cityscapes_ids(p)).save(f)                             # the benchmark's format: label ids
        pred_files.append(f)
    gt_files = [lp for _, lp in ds.pairs]
    for f in gt_files:   # no label id 31 ('train') in the labels, so its IoU is undefined on both sides
        lab = np.array(Image.open(f)); lab[lab == 31] = 26; Image.fromarray(lab).save(f)
    ours = evaluate(Replay(preds), eval_batches(ds, size=None, batch_size=1, workers=0), 19, classes=CITYSCAPES_CLASSES)
    theirs, mean = official_scores(pred_files, gt_files)
    print(f"workbench mIoU {ours['miou']/100:.12f}, official {mean:.12f}")
    assert abs(ours['miou']/100 - mean) < 1e-6
    for c in CITYSCAPES_CLASSES:
        if ours['iou'][c] is None: assert np.isnan(theirs[c])
        else: assert abs(ours['iou'][c]/100 - theirs[c]) < 1e-9, c
    assert ours['iou']['train'] is None and 0.3 < mean < 0.95
