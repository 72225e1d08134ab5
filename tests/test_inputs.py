"""What a user puts in, checked once for the command line and for Python alike: a start that does not fit the run, values
given twice or of the wrong type, ranges, memory that cannot fit, relative and non-UTF-8 files, evaluations that must
not overwrite each other, and the mask explorer on a user's folder dataset."""
import json, os
from pathlib import Path
import pytest
import torch
from classmix_lab.config import ParameterError
from classmix_lab.data import DatasetError
from classmix_lab.experiment import ExperimentParams, validate, run_experiment, evaluate_run
from classmix_lab.runner import run_sweep
from classmix_lab.cli import main
import dataset_trees as trees
from conftest import TINY

T = dict(TINY, iterations=2, batch_size=2, batch_size_u=2, log_every=1, workers=0, labeled='4')


def P(tmp, **kw): return ExperimentParams.from_dict({**T, 'out_dir': str(tmp/'run'), **kw})
def _args(**kw): return [f'{k}={v}' for k, v in {**T, **kw}.items()]


def one_line(capsys, rc, want):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'Traceback' not in err, err
    assert want in err, err
    return err


def _start(path, num_classes, **meta):
    "A deeplabv2-tiny state dict file of `num_classes` classes (with `meta`: the keys a file may record beside it)."
    torch.manual_seed(0)
    from classmix_lab.model import get_model
    torch.save(dict(state_dict=get_model('deeplabv2-tiny', num_classes).state_dict(), **meta), path)
    return path


# --- 3. a start that does not fit the run

def test_a_start_of_another_class_count_is_refused_unless_backbone_only(lab_dirs, capsys):
    f = _start(lab_dirs/'five.pt', 5)
    with pytest.raises(ParameterError, match=r"init=.*five.pt.* is for 5 classes.*this run has 11.*init_parts=backbone"):
        validate(P(lab_dirs, init=str(f)))
    assert main(['run', *_args(init=str(f), init_parts='all'), '--sweep', 's3']) == 2   # the case
    one_line(capsys, 2, 'init_parts=backbone')
    assert not (lab_dirs/'reports'/'index.json').exists()
    m = run_experiment(P(lab_dirs, init=str(f), init_parts='backbone', method='supervised', iterations=0), progress=None).metrics
    assert m['init']['head'] == 'fresh' and any(k.startswith('layer5.') for k in m['init']['missing'])


def test_a_start_of_other_classes_is_refused_by_their_names(lab_dirs):
    with pytest.raises(ParameterError, match=r"init='synthstreets-camvid' was trained on the classes sky, building, .*this run's are road, sidewalk.*"
                                             r"classes=camvid.*init_parts=backbone"):
        validate(P(lab_dirs, init='synthstreets-camvid'))
    validate(P(lab_dirs, init='synthstreets-camvid', classes='camvid'))       # the classes it was made for
    validate(P(lab_dirs, init='synthstreets-camvid', init_parts='backbone'))  # its backbone alone
    validate(P(lab_dirs, init='synthstreets-sim'))
    named = _start(lab_dirs/'named.pt', 11, classes=[f'c{i}' for i in range(11)])
    with pytest.raises(ParameterError, match=r"was trained on the classes c0, c1"): validate(P(lab_dirs, init=str(named)))
    validate(P(lab_dirs, init=str(_start(lab_dirs/'unnamed.pt', 11))))        # no names recorded: the count fits


def test_a_runs_model_records_its_classes_and_is_checked_as_a_start(lab_dirs):
    m = run_experiment(P(lab_dirs, classes='camvid', init_parts='backbone', method='supervised', iterations=0, out_dir=str(lab_dirs/'cv')),
                      progress=None).metrics
    assert torch.load(lab_dirs/'cv'/'model.pt', weights_only=True)['classes'] == m['classes'] == list(m['iou'])
    def refused_unless_camvid(f):
        with pytest.raises(ParameterError, match=r"was trained on the classes sky, building"): validate(P(lab_dirs, init=str(f)))
        validate(P(lab_dirs, init=str(f), classes='camvid'))
    refused_unless_camvid(lab_dirs/'cv'/'model.pt')
    os.replace(lab_dirs/'cv'/'model.pt', lab_dirs/'moved.pt')   # out of its run folder: the file itself names its classes
    refused_unless_camvid(lab_dirs/'moved.pt')


def test_a_start_without_a_classifier_says_it_starts_fresh(lab_dirs, capsys):
    from classmix_lab.model import get_model
    state = {k: v for k, v in get_model('deeplabv2-tiny', 11).state_dict().items() if not k.startswith('layer5.')}
    torch.save(state, lab_dirs/'bare.pt')
    m = run_experiment(P(lab_dirs, init=str(lab_dirs/'bare.pt'), method='supervised', iterations=0), progress=None).metrics
    assert m['init']['head'] == 'fresh'
    assert 'has no classifier' in capsys.readouterr().out


def test_the_explorer_refuses_a_teacher_of_other_classes(lab_dirs):
    from classmix_lab.widgets import load_teacher
    with pytest.raises(ParameterError, match=r"synthstreets-camvid.*classes sky, building.*road, sidewalk"):
        load_teacher('synthstreets-camvid', 11, classes=('road', 'sidewalk', 'building', 'fence', 'pole', 'traffic sign', 'vegetation',
                                                          'terrain', 'sky', 'person', 'car'))


# --- 6. evaluate never overwrites its own results

def test_evaluations_with_other_arguments_go_to_other_files(lab_dirs):
    run_experiment(P(lab_dirs, method='supervised', iterations=0), progress=None)
    real = evaluate_run(lab_dirs/'run', workers=0)
    game = evaluate_run(lab_dirs/'run', style='game', workers=0)
    whole = evaluate_run(lab_dirs/'run', window='24x48', workers=0)
    files = {real['file'], game['file'], whole['file']}
    assert len(files) == 3 and Path(real['file']).name == 'eval_synthstreets_val.json'
    for r in (real, game, whole): assert json.loads(Path(r['file']).read_text())['miou'] == r['miou']
    assert 'style-game' in Path(game['file']).name and '24x48' in Path(whole['file']).name
    assert evaluate_run(lab_dirs/'run', style='real', workers=0)['file'] == real['file']   # the run's own value is no new argument
    before = Path(real['file']).read_bytes()   # the case: `classmix-lab evaluate RUN style=game` after the real-style one
    assert main(['evaluate', str(lab_dirs/'run'), 'style=game', 'workers=0']) == 0
    assert Path(real['file']).read_bytes() == before and json.loads(Path(game['file']).read_text())['miou'] == game['miou']


# --- 7. a relative folder dataset

@pytest.mark.slow
def test_a_relative_folder_dataset_runs(lab_dirs, monkeypatch):
    monkeypatch.chdir(lab_dirs)
    trees.folder(lab_dirs/'fd'/'ok')
    rec = run_sweep('fd', [dict(run='r', dataset='folder:fd/ok', labeled='2', init='none', iterations=2, batch_size=2, batch_size_u=2,
                                log_every=1, workers=0)], stream=False)[0]
    assert rec['status'] == 'ok', rec['error']
    assert rec['params']['dataset'] == f"folder:{lab_dirs/'fd'/'ok'}"
    # the case, from the command line: `classmix-lab run dataset=folder:fd/ok labeled=4 init=none ...`
    assert main(['run', 'dataset=folder:fd/ok', 'labeled=4', 'init=none', 'iterations=2', 'batch_size=2', 'batch_size_u=2', 'log_every=1',
                 'workers=0', '--sweep', 'fd', '--name', 'f_ok']) == 0
    rec = json.loads((lab_dirs/'reports'/'index.json').read_text())['runs']
    assert {r['run']: (r['status'], r['params']['dataset']) for r in rec}['f_ok'] == ('ok', f"folder:{lab_dirs/'fd'/'ok'}")


def test_other_templates_take_a_folder_dataset_by_a_relative_path(lab_dirs, monkeypatch):
    from classmix_lab.runner import check_params
    monkeypatch.chdir(lab_dirs)
    root = trees.folder(lab_dirs/'fd'/'ok')
    p = check_params('dataset_stats', dict(dataset='folder:fd/ok', compare='synthstreets', out_dir=str(lab_dirs/'x')))
    assert p['dataset'] == f'folder:{root}'   # (it was refused: not one of the registered names)


# --- 10. split files that are not UTF-8

@pytest.mark.parametrize('data', [b'frame000.jpg\nframe001.jpg\ncaf\xe9.jpg\n', b'frame000.jpg\nframe001.jpg\n\x80\x81\xfe\xff\x00\n'])
def test_a_split_file_that_is_not_utf8_is_named_with_its_line(lab_dirs, capsys, data):
    from classmix_lab.data import load_split
    f = lab_dirs/'latin1.txt'; f.write_bytes(data)
    with pytest.raises(DatasetError, match=rf"{f}: line 3 is not UTF-8 text"): load_split(f)
    assert main(['run', *_args(labeled=str(f)), '--sweep', 's10']) == 2
    one_line(capsys, 2, f'{f}: line 3 is not UTF-8 text')


def test_other_text_files_that_are_not_utf8_are_named(lab_dirs, monkeypatch):
    from classmix_lab.config import load_settings
    from classmix_lab.datasets import get_dataset
    ini = lab_dirs/'settings.ini'; ini.write_bytes(b'[classmix_lab]\n# caf\xe9\ncache_dir = x\n')
    with pytest.raises(ParameterError, match=rf"{ini}: line 2 is not UTF-8 text"): load_settings(ini)
    root = trees.voc(lab_dirs/'voc')
    lst = root/'ImageSets'/'Segmentation'/'train.txt'
    lst.write_bytes(lst.read_bytes() + b'caf\xe9\n')
    n = len(lst.read_bytes().splitlines())
    with pytest.raises(DatasetError, match=rf"{lst}: line {n} is not UTF-8 text"): get_dataset('voc', 'train', root=root)


# --- 11. conflicting values, and values with their types

def test_a_parameter_given_twice_with_different_values_is_refused(lab_dirs, capsys):
    assert main(['run', 'method=supervised', 'iterations=3', 'iterations=0', '--sweep', 's11']) == 2
    one_line(capsys, 2, "iterations is given twice, 3 and 0")
    assert main(['sweep', 's11', 'method=supervised,classmix', 'method=cutmix']) == 2
    one_line(capsys, 2, "method is given twice")
    assert main(['run', 'method_args={"tau":0.9}', 'tau=0.5', '--sweep', 's11']) == 2
    one_line(capsys, 2, "tau is given twice, in method_args (0.9) and as tau=0.5")
    with pytest.raises(ParameterError, match=r"tau is given twice"):
        ExperimentParams.from_dict(dict(method_args={'tau': 0.9}, tau=0.5))
    assert ExperimentParams.from_dict(dict(method_args={'tau': 0.5}, tau='0.5')).method_args == {'tau': 0.5}   # the same value twice
    assert not (lab_dirs/'reports'/'index.json').exists()


def test_values_are_stored_with_their_types(lab_dirs):
    from classmix_lab.runner import check_params
    p = ExperimentParams.from_dict(dict(method='classmix', tau='0.5', strong_aug='true', ramp_iters='10', iterations='3'))
    assert p.method_args == dict(tau=0.5, strong_aug=True, ramp_iters=10) and p.iterations == 3
    checked = check_params('experiment', dict(T, method='classmix', tau='0.5', strong_aug='yes', out_dir=str(lab_dirs/'r')))
    assert checked['tau'] == 0.5 and checked['strong_aug'] is True and checked['iterations'] == 2


@pytest.mark.slow
def test_the_index_records_typed_values(lab_dirs):
    assert main(['run', *_args(method='classmix', iterations=0), 'tau=0.5', '--sweep', 's11', '--name', 'r']) == 0
    rec = json.loads((lab_dirs/'reports'/'index.json').read_text())['runs'][0]
    assert rec['params']['tau'] == 0.5
    assert json.loads((lab_dirs/'runs'/'s11'/'r'/'metrics.json').read_text())['params']['method_args'] == {'tau': 0.5}


# --- 12. one range syntax

def test_ranges_are_lo_colon_hi_and_sweeps_say_how_many_runs(lab_dirs, capsys):
    from classmix_lab.methods.registry import make_method
    assert make_method('cowmix', sigma='8:32').config.sigma == '8:32'
    with pytest.raises(ParameterError, match=r"sigma='32:8' must be 'auto', a number or 'lo:hi' with 0 < lo <= hi"):
        make_method('cowmix', sigma='32:8')
    with pytest.raises(ParameterError, match=r"sigma='8,32' must be .*'lo:hi'.*a comma separates a sweep's runs"):
        make_method('cowmix', sigma='8,32')
    for k in ('scale', 'contrast'): make_method('augment', **{k: '0.5:1.5'})
    make_method('augment')   # its defaults are ranges too
    assert main(['sweep', 's12', 'method=cowmix', 'sigma=8,32', 'seed=0,1', 'colour=red']) == 2
    out = capsys.readouterr().out
    assert "s12: 4 runs (2 sigma x 2 seed)" in out


# --- 13. memory

def test_a_first_step_that_cannot_fit_in_memory_is_refused(lab_dirs, capsys):
    with pytest.raises(ParameterError, match=r"batch_size=10000000: the first training step needs about .* of memory.*available.*lower batch_size"):
        validate(P(lab_dirs, batch_size=10**7))
    with pytest.raises(ParameterError, match=r"batch_size_u=10000000: .*lower batch_size_u"):
        validate(P(lab_dirs, batch_size_u=10**7))
    assert main(['run', *_args(batch_size=10**7), '--sweep', 's13']) == 2
    one_line(capsys, 2, 'batch_size=10000000: the first training step needs about')
    # the issue's case: `$CL run $T batch_size=100000` at SynthStreets' own size (it grew a kernel to 19.8 GB before)
    assert main(['run', 'iterations=2', 'batch_size=100000', 'batch_size_u=2', 'n_train=40', 'n_val=8', 'log_every=1', 'workers=0', '--sweep', 's13']) == 2
    one_line(capsys, 2, 'batch_size=100000: the first training step needs about')
    with pytest.raises(ParameterError, match=r"n_train=100000000: the images synthstreets holds in memory take about .*lower n_train"):
        validate(P(lab_dirs, n_train=10**8))
    validate(P(lab_dirs, batch_size=64, batch_size_u=64))   # what fits is not refused


@pytest.mark.slow
def test_a_killed_kernel_is_reported_as_killed(lab_dirs, capsys):
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('x = 1', metadata=dict(tags=['parameters'])),
                nbformat.v4.new_code_cell('import os, signal; os.kill(os.getpid(), signal.SIGKILL)')]
    nb.metadata['kernelspec'] = dict(name='python3', display_name='Python 3', language='python')
    tpl = lab_dirs/'killed.ipynb'; nbformat.write(nb, str(tpl))
    rec = run_sweep('s13', [dict(run='k', x=2)], template=str(tpl), stream=False)[0]
    assert rec['status'] == 'failed' and rec['error'].startswith('the run was killed (out of memory?)'), rec['error']


# --- 16. the Python API is checked as the command line is

@pytest.mark.parametrize('runs', ['notalist', dict(method='supervised'), [1, 2], ['method=supervised']])
def test_run_sweep_refuses_runs_that_are_not_a_list_of_dicts(lab_dirs, runs):
    with pytest.raises(ParameterError, match=r"runs=.* must be a list of dicts, one per run"): run_sweep('api', runs)


@pytest.mark.parametrize('kw, msg', [
    (dict(iterations='abc'), "iterations='abc' must be an integer"),
    (dict(iterations=2.7), "iterations=2.7 must be an integer"),
    (dict(iterations=True), "iterations=True must be an integer"),
    (dict(lr='fast'), "lr='fast' must be a number"),
    (dict(height=None), "height=None must be an integer"),
    (dict(freeze_bn='maybe'), "freeze_bn='maybe' must be true or false"),
    (dict(style=3), "style='3' is not one of"),
    (dict(workers=-1), "workers=-1 must be >= 0"),
    (dict(method_args=['tau']), "method_args=['tau'] must be a dict"),
])
def test_python_parameters_are_checked_as_the_cli_checks_them(lab_dirs, kw, msg):
    for make in (lambda: validate(P(lab_dirs, **kw)), lambda: validate(ExperimentParams(**{**T, **kw, 'out_dir': str(lab_dirs/'run')}))):
        with pytest.raises(ParameterError) as e: make()
        assert msg in str(e.value)
    with pytest.raises(ParameterError) as e: run_sweep('api', [dict(T, **kw)])
    assert msg in str(e.value)


def test_python_numbers_given_as_text_or_integral_floats_are_taken(lab_dirs):
    p = P(lab_dirs, iterations='3', lr='0.01', seed=1.0, freeze_bn='true', labeled=4)
    assert (p.iterations, p.lr, p.seed, p.freeze_bn, p.labeled) == (3, 0.01, 1, True, '4')


def test_evaluate_run_checks_its_arguments(lab_dirs, capsys):
    run_experiment(P(lab_dirs, method='supervised', iterations=0), progress=None)
    for kw, msg in [(dict(run_dir=None), "run_dir=None must be a run's folder"), (dict(split=None), "split=None is not one of"),
                    (dict(workers=-1), "workers=-1 must be an integer >= 0"), (dict(workers='two'), "workers='two' must be an integer >= 0"),
                    (dict(foo=1), "foo=1 is not an argument of evaluate_run or of synthstreets (its arguments:"),
                    (dict(window='abc'), "window='abc' must be 'run', 'none' or a size such as 512 or '512x1024'")]:
        with pytest.raises(ParameterError) as e: evaluate_run(**{'run_dir': lab_dirs/'run', **kw})
        assert msg in str(e.value)
    assert main(['evaluate', str(lab_dirs/'run'), 'foo=1']) == 2
    one_line(capsys, 2, 'foo=1 is not an argument of evaluate_run or of synthstreets')


def test_explore_masks_takes_one_dataset_name(lab_dirs):
    from classmix_lab.widgets import explore_masks
    ex = explore_masks('synthstreets', dataset_kwargs=dict(synthstreets=dict(TINY)))
    assert ex.names == ['synthstreets']
    with pytest.raises(ParameterError, match=r"datasets=3 must be a dataset name or a list of them"): explore_masks(3)


# --- 17. smaller ones

def test_eval_window_lists_what_it_accepts(lab_dirs):
    with pytest.raises(ParameterError) as e: validate(P(lab_dirs, eval_window='abc'))
    assert "eval_window='abc' must be 'none', 'crop' or a size such as 512 or '512x512'" in str(e.value) and 'auto' not in str(e.value)


def _folder_params(lab_dirs, root, **kw):
    return ExperimentParams.from_dict({**dict(dataset=f'folder:{root}', labeled='2', init='none', iterations=2, batch_size=2, batch_size_u=2,
                                              log_every=1, workers=0, out_dir=str(lab_dirs/'run')), **kw})


def test_settings_a_dataset_does_not_use_are_refused(lab_dirs):
    root = trees.folder(lab_dirs/'mine')
    validate(_folder_params(lab_dirs, root))
    for k, v in dict(style='game', n_train=40, n_val=4, height=48, width=64, data_seed=3).items():
        with pytest.raises(ParameterError, match=rf"{k}={v!r} is a setting of the generated dataset synthstreets; dataset='folder:.*' does not use it"):
            validate(_folder_params(lab_dirs, root, **{k: v}))


def test_n_source_is_named_for_a_synthstreets_source(lab_dirs):
    with pytest.raises(ParameterError, match=r"n_source=0 must be >= 1"):
        validate(P(lab_dirs, method='dacs', source='synthstreets-sim', n_source=0))


def test_seeds_that_name_no_run_are_refused(lab_dirs, capsys):
    assert main(['ablation', '--seeds', '3-1']) == 2
    one_line(capsys, 2, "seeds='3-1' must be like '0', '0,1,2' or '0-9'")


def test_a_folder_label_outside_the_table_stops_before_training(lab_dirs):
    from PIL import Image
    import numpy as np
    root = trees.folder(lab_dirs/'mine', splits={'train': 8, 'val': 2})
    lab = np.array(Image.open(root/'labels'/'train'/'frame005.png')); lab[3, 3] = 7
    Image.fromarray(lab).save(root/'labels'/'train'/'frame005.png')
    p = _folder_params(lab_dirs, root, labeled='all', method='supervised', iterations=50)
    with pytest.raises(DatasetError, match=r"frame005.png: values \[7\] are not in the classes.json class table"):
        run_experiment(p, progress=None)
    assert not (lab_dirs/'run'/'log.jsonl').exists()


# --- beyond: the explorer lists folder datasets by path

def test_the_explorer_lists_a_folder_dataset_by_path(lab_dirs, monkeypatch):
    from classmix_lab.widgets import explore_masks
    root = trees.folder(lab_dirs/'mine')
    monkeypatch.chdir(lab_dirs)
    ex = explore_masks(['synthstreets', 'folder:mine'], dataset_kwargs=dict(synthstreets=dict(TINY)))
    assert ex.names == ['synthstreets', f'folder:{root}'] and dict(ex.dataset.options)[str(root)] == f'folder:{root}'
    ex.dataset.value = f'folder:{root}'
    assert ex.example is not None and str(root) in ex.status.value and 'door' in list(ex.classes.options)


# --- siblings

def test_values_a_named_sweep_sets_itself_are_refused(lab_dirs, capsys):
    assert main(['ablation', 'seed=3']) == 2
    one_line(capsys, 2, "seed=3: the ablation sweep sets seed in its runs (seed=0), so it would not be used; give the seeds with --seeds")
    assert main(['ablation', 'weighting=sigmoid', 'iterations=abc']) == 2   # (a bad value is named first)
    one_line(capsys, 2, "iterations='abc' must be an integer")
    assert main(['run', 'method=supervised', 'run=a', '--name', 'b']) == 2
    one_line(capsys, 2, "run is given twice, a and --name b")


def test_expand_grid_takes_one_value_as_one_run(lab_dirs):
    from classmix_lab.runner import expand_grid
    assert expand_grid(dict(iterations=5), method='classmix', seed=[0, 1]) == [dict(iterations=5, method='classmix', seed=0),
                                                                              dict(iterations=5, method='classmix', seed=1)]
    with pytest.raises(ParameterError, match=r"seed is given twice, in base \(0\) and in the grid"): expand_grid(dict(seed=0), seed=[1, 2])


def test_other_python_entry_points_name_a_bad_argument(lab_dirs):
    from classmix_lab.config import resolve_device
    from classmix_lab.model import load_checkpoint_file
    with pytest.raises(ParameterError, match=r"device=3 is not one of: auto, cpu, cuda"): resolve_device(3)
    assert str(resolve_device(torch.device('cpu'))) == 'cpu'
    with pytest.raises(ParameterError, match=r"weights=None must be a path"): load_checkpoint_file(None)
    assert validate(dict(T, method='supervised', out_dir=str(lab_dirs/'run'))).iterations == 2   # a dict is taken as from_dict takes it
    with pytest.raises(ParameterError, match=r"is not the parameters of an experiment"): validate(['method=supervised'])


def test_a_start_of_another_model_is_refused_before_anything_runs(lab_dirs, capsys):
    f = _start(lab_dirs/'tiny.pt', 11)
    for parts in ('all', 'backbone'):
        with pytest.raises(ParameterError, match=r"init=.*tiny.pt' does not fit model='deeplabv2-r50': weights do not fit the backbone"):
            validate(P(lab_dirs, init=str(f), model='deeplabv2-r50', init_parts=parts))
