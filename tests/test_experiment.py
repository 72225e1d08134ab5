"""One experiment end to end (small sizes): metrics, split, weights, the pretrained start, and a killed run resumed."""
import json, os, re, signal, subprocess, sys, time
from pathlib import Path
import pytest
import torch
from classmix_lab.config import ParameterError
from classmix_lab.data import load_split
from classmix_lab.experiment import ExperimentParams, run_experiment, validate, load_run_model, pretrained_path, PRETRAINED
from conftest import TINY

pytestmark = pytest.mark.slow


def params(tmp_path, **kw):
    return ExperimentParams.from_dict({**TINY, 'labeled': '4', 'iterations': 6, 'batch_size': 4, 'batch_size_u': 4, 'log_every': 3,
                               'out_dir': str(tmp_path/'run'), **kw})


def test_classmix_experiment_writes_everything(tmp_path):
    exp = run_experiment(params(tmp_path, method='classmix'), progress=None)
    out = tmp_path/'run'
    m = json.loads((out/'metrics.json').read_text())
    assert m['status'] == 'ok' and m['n_labeled'] == 4 and m['n_unlabeled'] == 20 and m['n_val'] == 8
    assert 0 <= m['miou'] <= 100 and set(m['iou']) == set(exp.classes) and len(m['confident']) == 6
    assert m['init']['backbone_coverage'] == 1.0 and m['init']['file'].endswith(PRETRAINED['synthstreets-sim']['file'])
    assert len(load_split(out/'labeled.txt')) == 4
    model = load_run_model(out)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), exp.trainer.model.state_dict().values()))


def test_zero_iterations_evaluates_the_starting_weights(tmp_path):
    m = run_experiment(params(tmp_path, method='supervised', iterations=0), progress=None).metrics
    assert m['miou'] == m['start_miou'] and m['history'] == []


def test_full_supervision_and_the_same_split_everywhere(tmp_path):
    a = run_experiment(params(tmp_path, method='supervised', labeled='all', iterations=2), progress=None).metrics
    assert a['n_labeled'] == 24 and a['n_unlabeled'] == 0
    validate(params(tmp_path, labeled='1/6'))
    with pytest.raises(ParameterError, match="labeled='all' leaves no unlabeled images for method='classmix'"):
        validate(params(tmp_path, labeled='all'))


@pytest.mark.parametrize('kw, msg', [
    (dict(method='mixmatch'), "method='mixmatch' is not one of: supervised, classmix"),
    (dict(dataset='kitti'), "dataset='kitti' is not one of: synthstreets"),
    (dict(labeled='25'), r"labeled=25 must be between 1 and 24 \(the images in synthstreets train\)"),
    (dict(out_dir='/proc/cannot/create'), "out_dir='/proc/cannot/create' cannot be created"),
    (dict(batch_size_u=1), "batch_size_u=1: method='classmix' needs at least 2 unlabeled images per step"),
    (dict(init='/no/such/weights.pt'), "init='/no/such/weights.pt' is not one of: none, imagenet, synthstreets-sim"),
    (dict(device='tpu'), "device='tpu' is not one of: auto, cpu, cuda"),
])
def test_bad_parameters(tmp_path, kw, msg):
    with pytest.raises(ParameterError, match=msg):
        validate(params(tmp_path, **kw))


KILLABLE = '''
import sys, torch
from classmix_lab.experiment import ExperimentParams, run_experiment
torch.set_num_threads(int(sys.argv[2]))   # the same reduction order as the reference run
run_experiment(ExperimentParams(**eval(sys.argv[1])), progress=None)
'''

def test_killed_run_resumes_to_the_same_metrics(tmp_path):
    "A run killed (SIGKILL) after a checkpoint and started again ends with the same metrics as an uninterrupted run."
    kw = dict(method='classmix', iterations=24, checkpoint_every=4)
    ref = run_experiment(params(tmp_path/'ref', **kw), progress=None).metrics
    p = params(tmp_path/'killed', **kw)
    proc = subprocess.Popen([sys.executable, '-c', KILLABLE, repr(p.__dict__), str(torch.get_num_threads())])
    ck, t0 = Path(p.out_dir)/'checkpoint.pt', time.time()
    try:
        while time.time() - t0 < 240:
            if ck.is_file():
                try:
                    if torch.load(ck, weights_only=True)['iteration'] >= 8: break
                except Exception: pass   # never happens with atomic writes, but a read racing a rename is not an error
            assert proc.poll() is None, 'the run finished before it could be killed'
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL); proc.wait()
    finally:
        if proc.poll() is None: proc.kill()
    killed_at = torch.load(ck, weights_only=True)['iteration']
    assert 8 <= killed_at < 24 and not (Path(p.out_dir)/'metrics.json').exists()
    res = run_experiment(p, progress=None).metrics
    assert res['miou'] == ref['miou'] and res['teacher_miou'] == ref['teacher_miou'] and res['iou'] == ref['iou']
    assert res['confident'] == ref['confident']


def _real_dataset_params(tmp_path, **kw):
    return ExperimentParams(**{'model': 'deeplabv2-tiny', 'init': 'none', 'iterations': 3, 'batch_size': 2, 'batch_size_u': 2,
                               'log_every': 1, 'workers': 2, 'out_dir': str(tmp_path/'run'), **kw})


def test_experiment_on_a_dataset_streamed_from_disk(tmp_path, monkeypatch):
    "VOC (its layout, from the settings' voc_root): the training transform with a crop, batches from worker processes, full-size evaluation."
    import dataset_trees as trees
    monkeypatch.setenv('CLASSMIX_LAB_VOC_ROOT', str(trees.voc(tmp_path/'VOC2012')))
    exp = run_experiment(_real_dataset_params(tmp_path, dataset='voc', labeled='2', method='classmix', crop='32', checkpoint_every=3), progress=None)
    m = exp.metrics
    assert (m['n_labeled'], m['n_unlabeled'], m['n_val'], len(m['classes'])) == (2, 2, 2, 21) and 0 <= m['miou'] <= 100
    assert len(m['confident']) == 3 and exp.val_images.shape[:2] == (2, 3) and exp.val_images.shape[-2:] == exp.val_labels.shape[-2:]
    ck = torch.load(tmp_path/'run'/'checkpoint.pt', weights_only=True)
    assert ck['labeled'] == dict(seed=0, consumed=6) and ck['unlabeled'] == dict(seed=1, consumed=6)   # the streams resume from here
    with pytest.raises(ParameterError, match="crop='huge' is not a size"):
        validate(_real_dataset_params(tmp_path, dataset='voc', crop='huge'))


def test_a_split_file_is_the_labeled_set(tmp_path, monkeypatch):
    import dataset_trees as trees
    from classmix_lab.data import save_split
    monkeypatch.setenv('CLASSMIX_LAB_CAMVID_ROOT', str(trees.camvid(tmp_path/'camvid', splits={'train': 6, 'val': 2})))
    split = save_split(tmp_path/'two.txt', ['train/0001TP_006750.png', 'train/0001TP_006690.png'])
    m = run_experiment(_real_dataset_params(tmp_path, dataset='camvid', labeled=str(split), method='classmix', iterations=2), progress=None).metrics
    assert (m['n_labeled'], m['n_unlabeled']) == (2, 4)
    assert load_split(tmp_path/'run'/'labeled.txt') == ['train/0001TP_006750.png', 'train/0001TP_006690.png']
    save_split(tmp_path/'bad.txt', ['train/0001TP_999999.png'])
    with pytest.raises(ParameterError, match=r"bad\.txt': 1 of its 1 names are not in camvid's training split, e.g. 'train/0001TP_999999.png'"):
        validate(_real_dataset_params(tmp_path, dataset='camvid', labeled=str(tmp_path/'bad.txt')))
    save_split(tmp_path/'bare.txt', ['0001TP_006750.png'])   # a file name without its folder: the message shows the form the names take
    with pytest.raises(ParameterError, match=r"e.g. '0001TP_006750.png' \(its names are paths in the dataset's folder, such as 'train/0001TP_"):
        validate(_real_dataset_params(tmp_path, dataset='camvid', labeled=str(tmp_path/'bare.txt')))


@pytest.mark.skipif(not (Path(__file__).parent.parent.parent/'shared'/'data'/'camvid').is_dir(), reason='the real CamVid is not present')
def test_committed_camvid_split_validates_against_the_real_data(tmp_path):
    p = validate(_real_dataset_params(tmp_path, dataset='camvid', labeled='splits/camvid/30_seed3.txt', method='classmix'))
    assert p.labeled == 'splits/camvid/30_seed3.txt'


# --- domain adaptation -------------------------------------------------------------------------------------------

def da(tmp_path, **kw):
    return params(tmp_path, **{'source': 'synthstreets-sim', 'n_source': 12, 'labeled': 'all', **kw})


@pytest.mark.parametrize('method, align', [('supervised', False), ('classmix', True), ('dacs', False)])
def test_domain_adaptation_on_synthstreets(tmp_path, method, align):
    "Source-only, distribution-aligned IntraMix and InterMix: every source image labeled, every target image unlabeled."
    m = run_experiment(da(tmp_path, method=method, **({'align': True} if align else {})), progress=None).metrics
    assert m['n_labeled'] == 12 and m['n_unlabeled'] == (0 if method == 'supervised' else 24) and m['n_val'] == 8
    if align:
        from classmix_lab.datasets import get_dataset
        from classmix_lab.experiment import class_distribution
        target = get_dataset('synthstreets', 'train', style='real', **{k: TINY[k] for k in ('height', 'width', 'n_train', 'n_val')})
        assert m['align_to'] == pytest.approx(list(class_distribution(target, 11))) and sum(m['align_to']) == pytest.approx(1)


def test_a_source_of_any_synthstreets_style(tmp_path):
    "The source of a run on SynthStreets can be any of its styles: the images the run trains on are drawn in that style."
    import numpy as np
    from classmix_lab import synthstreets as ss
    from classmix_lab.data import load_tensors
    from classmix_lab.experiment import source_dataset, run_classes
    for style in ('sim+real-look', 'real'):
        p = da(tmp_path, source=f'synthstreets-{style}', method='supervised', n_source=3)
        validate(p)
        x, y = load_tensors(source_dataset(p.group('data')))
        img, lab = ss.render_scene(p.data_seed, 2, style, p.height, p.width, 'train')
        assert len(x) == 3 and np.array_equal(y[2].numpy(), lab) and np.array_equal(x[2].permute(1, 2, 0).numpy(), img)
    m = run_experiment(da(tmp_path, source='synthstreets-sim+real-layout', method='supervised', n_source=6), progress=None).metrics
    assert m['status'] == 'ok' and m['n_labeled'] == 6 and m['params']['source'] == 'synthstreets-sim+real-layout'
    p = da(tmp_path, source='synthstreets-sim', method='supervised', n_source=3, classes='camvid', init_parts='backbone')   # both domains as CamVid's
    validate(p)
    d = p.group('data')
    assert tuple(source_dataset(d).classes) == run_classes(d) and 'pavement' in run_classes(d)


@pytest.mark.parametrize('kw, msg', [
    (dict(method='dacs', source=''), "method='dacs' does not do semi-supervised learning .no source domain.; give source="),
    (dict(source='carla'), re.escape("source='carla' is not one of: synthstreets-sim, synthstreets-real, synthstreets-game, "
                                     "synthstreets-sim+real-camera, synthstreets-sim+real-layout, synthstreets-sim+real-look, "
                                     "synthstreets-game+real-camera, synthstreets-game+real-layout, synthstreets-game+real-look, gta5, synthia")),
    (dict(source='gta5'), "source='gta5' adapts to cityscapes, not dataset='synthstreets'"),
    (dict(source='synthstreets-sim', method='cutout', labeled='all'), r"method='cutout' does not do domain adaptation \(a source domain\)"),
    (dict(method='cowmix', sigma='9:3'), r"sigma='9:3' must be 'auto', a number or 'lo:hi' with 0 < lo <= hi"),
    (dict(method='cutmix', p=1.5), r'p=1.5 must be in \(0, 1\]'),
    (dict(method='classmix', lambda_u=-1), r'lambda_u=-1.0 must be >= 0'),
    (dict(method='supervised', tau=0.9), r"unknown parameter 'tau' \(method='supervised' has no such setting\)"),
    (dict(method='contrastive', source='synthstreets-sim'), r"some target images must be labeled \(target_labeled=...\)"),
    (dict(target_labeled='4'), r"target_labeled='4' labels target images of a domain adaptation run: give source= too"),
    (dict(label_relax=4), r"label_relax=4 must be an odd window size >= 1"),
    (dict(precision='fp16', device='cpu'), r"precision='fp16' needs a CUDA device"),
    (dict(eval_window='crop'), r"eval_window='crop': this run trains on whole images"),
    (dict(eval_window='wide'), r"eval_window='wide' must be 'none', 'crop' or a size"),
])
def test_bad_adaptation_and_mask_parameters(tmp_path, kw, msg):
    with pytest.raises(ParameterError, match=msg):
        validate(params(tmp_path, **kw))


def test_synthia_to_cityscapes_reports_16_and_13_class_miou(tmp_path, monkeypatch):
    "SYNTHIA (16-bit labels) -> Cityscapes in their real layouts: 16 shared classes, mIoU over 16 and over 13 (Table 4.4)."
    import dataset_trees as trees
    from classmix_lab.datasets import SYNTHIA16_CLASSES
    monkeypatch.setenv('CLASSMIX_LAB_SYNTHIA_ROOT', str(trees.synthia(tmp_path/'synthia', n=3)))
    monkeypatch.setenv('CLASSMIX_LAB_CITYSCAPES_ROOT', str(trees.cityscapes(tmp_path/'cityscapes')))
    p = ExperimentParams(dataset='cityscapes', source='synthia', method='dacs', labeled='all', init='none', iterations=2,
                         batch_size=2, batch_size_u=2, crop='64x64', workers=0, log_every=1, out_dir=str(tmp_path/'run'))
    m = run_experiment(p, progress=None).metrics
    assert tuple(m['classes']) == SYNTHIA16_CLASSES and 'miou13' in m and 0 <= m['miou13'] <= 100
    assert m['n_labeled'] == 3 and m['n_unlabeled'] == 3


def test_semi_supervised_domain_adaptation_mixes_source_and_target_labels(tmp_path):
    "Alonso et al. Section 4.5: labeled batches half source, half the target's labeled images; the rest of the target unlabeled."
    m = run_experiment(da(tmp_path, source='synthstreets-sim', target_labeled='4', method='contrastive', n_source=6, iterations=3), progress=None).metrics
    assert m['status'] == 'ok' and m['n_labeled'] == 4 and m['n_unlabeled'] == 20
    assert len(load_split(tmp_path/'run'/'labeled.txt')) == 4
    assert len(m['method_summary']['bank_fill']) == 11 and m['method_summary']['bank_size'] == 256


def test_label_relaxation_class_uniform_sampling_and_precision_reach_the_run(tmp_path):
    exp = run_experiment(params(tmp_path, method='supervised', label_relax=3, class_uniform=True, iterations=2,
                                precision='bf16', channels_last=True), progress=None)
    assert exp.trainer.cfg.label_relax == 3 and exp.trainer.labeled.by_class is not None
    assert exp.metrics['precision'] == 'bf16' and exp.trainer.cfg.channels_last and 0 <= exp.metrics['miou'] <= 100
    assert exp.metrics['params']['label_relax'] == 3 and exp.metrics['params']['class_uniform'] is True


def test_a_finished_run_is_evaluated_on_another_split_or_style(tmp_path):
    from classmix_lab.experiment import evaluate_run
    m = run_experiment(params(tmp_path, method='supervised', iterations=2), progress=None).metrics
    r = evaluate_run(tmp_path/'run')                                  # its own val split: its final mIoU again
    assert r['miou'] == pytest.approx(m['miou'], abs=1e-6) and r['n_images'] == 8
    assert json.loads((tmp_path/'run'/'eval_synthstreets_val.json').read_text())['miou'] == r['miou']
    g = evaluate_run(tmp_path/'run', style='game')                    # the same scenes drawn in the game style
    assert g['dataset_kwargs']['style'] == 'game' and g['miou'] != r['miou']
    import dataset_trees as trees
    with pytest.raises(ParameterError, match="dataset='camvid' has the classes sky, building, pole.*the run .* predicts road, sidewalk"):
        evaluate_run(tmp_path/'run', dataset='camvid', split='test', root=trees.camvid(tmp_path/'camvid'))
    with pytest.raises(ParameterError, match=r"split='tset' is not one of"):
        evaluate_run(tmp_path/'run', split='tset')


def test_an_experiment_and_its_evaluation_on_a_users_folder_dataset(tmp_path):
    import dataset_trees as trees
    from classmix_lab.experiment import evaluate_run
    root = trees.folder(tmp_path/'mine')
    p = ExperimentParams(dataset=f'folder:{root}', labeled='2', method='classmix', init='none', model='deeplabv2-tiny', iterations=2,
                         batch_size=2, batch_size_u=2, workers=0, log_every=1, out_dir=str(tmp_path/'run'))
    m = run_experiment(p, progress=None).metrics
    assert m['status'] == 'ok' and m['classes'] == ['floor', 'wall', 'door'] and m['n_labeled'] == 2 and m['n_unlabeled'] == 4 and m['n_val'] == 2
    r = evaluate_run(tmp_path/'run', split='train')
    assert r['n_images'] == 6 and set(r['iou']) == {'floor', 'wall', 'door'}
    assert Path(r['file']).parent == tmp_path/'run' and Path(r['file']).name.startswith('eval_folder-') and Path(r['file']).is_file()


def test_sliding_window_evaluation_of_a_run(tmp_path):
    "Windows of the training crop slide over the larger validation images; the same model scored on whole images differs."
    from classmix_lab.experiment import evaluate_run
    m = run_experiment(params(tmp_path, method='supervised', iterations=2, crop='24x48', eval_window='crop', workers=0), progress=None).metrics
    assert m['params']['eval_window'] == 'crop'
    same = evaluate_run(tmp_path/'run', workers=0)                      # as the run was evaluated: windows of 24x48
    whole = evaluate_run(tmp_path/'run', window='none', workers=0)
    assert tuple(same['window']) == (24, 48)
    assert same['miou'] == pytest.approx(m['miou'], abs=1e-6) and whole['window'] is None and whole['miou'] != same['miou']

