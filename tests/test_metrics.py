"""Confusion matrix and IoU against a straightforward per-pixel reference."""
import numpy as np
import pytest
import torch
from classmix_lab.metrics import ConfusionMatrix, evaluate, tensor_batches


def reference_iou(pred, gt, n, ignore=255):
    ious = []
    for c in range(n):
        tp = np.sum((pred == c) & (gt == c)); fp = np.sum((pred == c) & (gt != c) & (gt != ignore)); fn = np.sum((pred != c) & (gt == c))
        ious.append(np.nan if tp + fp + fn == 0 else tp/(tp + fp + fn))
    return np.array(ious)


def test_matches_reference_on_random_batches():
    rng = np.random.default_rng(0)
    cm = ConfusionMatrix(7)
    P, G = [], []
    for _ in range(5):
        gt = rng.integers(0, 7, (3, 20, 30)); gt[rng.random(gt.shape) < 0.1] = 255
        pred = np.where(rng.random(gt.shape) < 0.6, np.where(gt == 255, 0, gt), rng.integers(0, 7, gt.shape))
        cm.update(torch.from_numpy(pred), torch.from_numpy(gt)); P.append(pred); G.append(gt)
    ref = reference_iou(np.concatenate(P), np.concatenate(G), 7)
    assert np.allclose(cm.iou().numpy(), ref)
    assert abs(cm.miou() - np.nanmean(ref)) < 1e-12


def test_absent_class_is_left_out_of_the_mean():
    cm = ConfusionMatrix(3).update(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]))
    s = cm.summary(['a', 'b', 'c'])
    assert s['iou']['c'] is None and s['miou'] == pytest.approx(100*(0.5 + 0.5)/2)


def test_evaluate_upsamples_predictions_to_label_resolution():
    "Labels larger than the network input: the logits are upsampled, the labels are never downsampled."
    class Half(torch.nn.Module):   # predicts class 1 on the left half
        def forward(self, x):
            out = torch.zeros(x.shape[0], 2, *x.shape[-2:]); out[:, 1, :, :x.shape[-1]//2] = 1; out[:, 0, :, x.shape[-1]//2:] = 1
            return out
    y = torch.zeros(2, 40, 80, dtype=torch.long); y[:, :, :40] = 1
    res = evaluate(Half(), [(torch.rand(2, 3, 10, 20), y)], 2)
    assert res['miou'] == pytest.approx(100.)
    assert np.array(res['confusion']).sum() == 2*40*80


def test_predict_neither_changes_batchnorm_statistics_nor_the_mode():
    from classmix_lab.metrics import predict
    from classmix_lab.model import get_model
    torch.manual_seed(0)
    model = get_model('deeplabv2-tiny', 5).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(3, 3, 48, 96)
    p = predict(model, x)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert p.shape == (3, 5, 48, 96) and torch.allclose(p.sum(1), torch.ones(3, 48, 96), atol=1e-5)
    assert torch.allclose(p, model.eval()(x).softmax(1), atol=1e-6)   # the prediction of the eval-mode model
