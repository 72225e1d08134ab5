"""Sweeps through papermill: reports, the index (HTML and JSON), failures recorded, finished runs skipped, and the
reports rendered by a real headless Chromium with no network."""
import json, os, re, shutil
from pathlib import Path
import pytest
from classmix_lab.config import load_settings, ParameterError
from classmix_lab.runner import run_sweep, expand_grid, check_params, notebook_to_html, provenance
from classmix_lab.index import read_index
from classmix_lab.sweeps import demo_runs, ablation_runs, dacs_runs, gap_runs, french_runs
from classmix_lab.synthstreets import GENERATOR_VERSION
from classmix_lab.experiment import ExperimentParams, validate
from conftest import TINY, _session_cache
from training_helpers import checkpoint_of_other_settings

pytestmark = pytest.mark.slow
SMALL = dict(TINY, labeled='4', iterations=4, batch_size=4, batch_size_u=4, log_every=2)


@pytest.fixture(scope='module')
def sweep(tmp_path_factory):
    d = tmp_path_factory.mktemp('lab')
    env = dict(CLASSMIX_LAB_RUNS_DIR=str(d/'runs'), CLASSMIX_LAB_REPORTS_DIR=str(d/'reports'),
               CLASSMIX_LAB_CACHE_DIR=str(_session_cache()), CLASSMIX_LAB_DEVICE='cpu')
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    checkpoint_of_other_settings(d/'runs'/'smoke'/'broken')
    runs = [dict(SMALL, run='baseline', method='supervised'),
            dict(SMALL, run='broken', method='supervised'),
            dict(SMALL, run='classmix', method='classmix', compare_with=['baseline'])]
    try:
        records = run_sweep('smoke', runs, settings=load_settings(), stream=False)
        yield d, records, runs
    finally:
        for k, v in old.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v


def test_each_run_has_a_record_and_a_report(sweep):
    d, records, _ = sweep
    assert [r['status'] for r in records] == ['ok', 'failed', 'ok']
    index = json.loads((d/'reports'/'index.json').read_text())['runs']
    assert [(r['sweep'], r['run'], r['status']) for r in index] == [('smoke', 'baseline', 'ok'), ('smoke', 'broken', 'failed'), ('smoke', 'classmix', 'ok')]
    ok = index[2]
    assert ok['params']['method'] == 'classmix' and 0 <= ok['miou'] <= 100 and set(ok['iou']) and ok['start_miou'] is not None
    assert (d/'reports'/ok['report']).is_file() and (d/'reports'/ok['run_dir']/'metrics.json').is_file()


def test_a_failed_run_is_recorded_with_its_error_and_the_sweep_goes_on(sweep):
    d, records, _ = sweep
    broken = records[1]
    assert broken['miou'] is None and broken['error'].startswith('ParameterError:') and 'checkpoint was written by a run with other settings' in broken['error']
    html = (d/'reports'/'index.html').read_text()
    assert 'checkpoint was written by a run with other settings' in html and "class='failed'" in html
    assert (d/'reports'/'smoke'/'broken.html').is_file()      # the partial notebook is still readable


def test_reports_embed_their_figures_and_fetch_nothing(sweep):
    d, _, _ = sweep
    html = (d/'reports'/'smoke'/'classmix.html').read_text()
    assert html.count('data:image/png;base64,') >= 5          # curves, predictions, IoU, confidence, confusion
    assert not re.search(r'<script[^>]+src=', html) and not re.search(r'<link[^>]+href="https?:', html)
    assert 'supervised (4 labeled)' in html                   # the baseline's predictions are shown beside this run's
    index = (d/'reports'/'index.html').read_text()
    assert 'data:image/png;base64,' in index and "href='smoke/classmix.html'" in index


def test_finished_runs_are_not_run_again(sweep, capsys):
    d, records, runs = sweep
    again = run_sweep('smoke', [runs[0]], settings=load_settings(runs_dir=d/'runs', reports_dir=d/'reports'), stream=False)
    assert again[0]['status'] == 'ok' and again[0]['miou'] == records[0]['miou']
    assert 'already finished: skipped' in capsys.readouterr().out
    assert len(read_index(d/'reports')) == 3


def test_force_trains_again_from_the_start(sweep, capsys):
    d, records, runs = sweep
    run_dir = d/'runs'/'smoke'/'baseline'
    old_ckpt, old_m = (run_dir/'checkpoint.pt').read_bytes(), json.loads((run_dir/'metrics.json').read_text())
    again = run_sweep('smoke', [runs[0]], settings=load_settings(runs_dir=d/'runs', reports_dir=d/'reports'), stream=False, force=True)
    out = capsys.readouterr().out
    assert again[0]['status'] == 'ok' and 'already finished' not in out and 'training starts over' in out
    assert (run_dir/'checkpoint.previous.pt').read_bytes() == old_ckpt          # set aside, not lost
    m = json.loads((run_dir/'metrics.json').read_text())
    # trained again: a run resumed from its final checkpoint would carry the old training time over unchanged
    assert m['train_seconds'] != old_m['train_seconds'] and [h['iteration'] for h in m['history']] == [2, 4]


def test_a_finished_run_from_other_weights_runs_again(sweep, capsys):
    "Same parameters, but the init weights file changed since the run: the report would describe other weights."
    d, _, _ = sweep
    import torch
    from classmix_lab.experiment import pretrained_path
    init = d/'init.pt'
    shutil.copy(pretrained_path('synthstreets-sim'), init)
    run = [dict(SMALL, run='from-file', method='supervised', init=str(init))]
    s = load_settings(runs_dir=d/'runs', reports_dir=d/'reports')
    first = run_sweep('smoke', run, settings=s, stream=False)[0]
    assert first['status'] == 'ok' and run_sweep('smoke', run, settings=s, stream=False)[0]['miou'] == first['miou']
    assert 'already finished: skipped' in capsys.readouterr().out
    state = torch.load(init, map_location='cpu', weights_only=True)
    sd = state['state_dict'] if 'state_dict' in state else state
    key = next(k for k, v in sd.items() if v.is_floating_point() and v.dim() == 4)
    sd[key] = sd[key] + 0.5                                                   # "pretrain --force" made new weights
    torch.save(state, init)
    again = run_sweep('smoke', run, settings=s, stream=False)[0]
    out = capsys.readouterr().out
    assert 'finished, but init_sha256' in out and 'already finished' not in out and 'training starts over' in out
    assert again['status'] == 'ok' and again['start_miou'] != first['start_miou']   # evaluated from the new weights
    recorded = json.loads((d/'runs'/'smoke'/'from-file'/'provenance.json').read_text())
    assert recorded == provenance('experiment', run[0]) and recorded['synthstreets_generator'] == GENERATOR_VERSION


def test_provenance_names_what_a_run_rests_on():
    assert provenance('dataset_stats', dict(dataset='camvid')) == {}
    assert provenance('dataset_stats', dict(dataset='camvid', compare='synthstreets')) == dict(synthstreets_generator=GENERATOR_VERSION)
    assert set(provenance('experiment', dict(dataset='synthstreets'))) == {'synthstreets_generator', 'init_sha256'}   # init defaults to synthstreets-sim
    assert provenance('experiment', dict(dataset='camvid', init='none')) == {}
    assert provenance('pretrain', {}) == dict(synthstreets_generator=GENERATOR_VERSION)


def test_a_run_starts_its_kernel_without_warnings(tmp_path, capfd):
    "The kernel's sockets are encrypted where jupyter_client and ipykernel can: no security warning on every run."
    import nbformat
    from classmix_lab.runner import execute_notebook
    nb = nbformat.v4.new_notebook(metadata=dict(kernelspec=dict(name='python3', language='python', display_name='Python 3')))
    nb.cells = [nbformat.v4.new_code_cell('x = 1', metadata={'tags': ['parameters']}), nbformat.v4.new_code_cell('print(x + 1)')]
    nbformat.write(nb, tmp_path/'t.ipynb')
    assert execute_notebook(tmp_path/'t.ipynb', dict(x=41), tmp_path/'out.ipynb', stream=True) == ('ok', None)
    out, err = capfd.readouterr()
    assert '42' in out and 'WARNING' not in err and 'without encryption' not in out + err


def test_grids_and_bad_sweeps():
    assert expand_grid(dict(iterations=5), method=['supervised', 'classmix'], seed=[0, 1]) == [
        dict(iterations=5, method='supervised', seed=0), dict(iterations=5, method='supervised', seed=1),
        dict(iterations=5, method='classmix', seed=0), dict(iterations=5, method='classmix', seed=1)]
    with pytest.raises(ParameterError, match="method='fixmatch' is not one of"):
        run_sweep('bad', [dict(SMALL, method='fixmatch')])
    with pytest.raises(ParameterError, match="two runs named 'classmix_labeled-4_[0-9a-f]{8}'"):
        run_sweep('bad', [dict(SMALL, method='classmix'), dict(SMALL, method='classmix')])


def test_demo_runs_are_valid_experiments(tmp_path):
    runs = demo_runs()
    assert [r['run'] for r in runs] == ['sim-pretrained', 'supervised', 'full-supervision', 'classmix']
    for r in runs:
        validate(ExperimentParams.from_dict({**{k: v for k, v in r.items() if k not in ('run', 'compare_with', 'label', 'baseline')}, 'out_dir': str(tmp_path)}))
    assert {r['labeled'] for r in runs if r['run'] != 'full-supervision'} == {'12'} and runs[2]['labeled'] == 'all'
    # every run but the one under test starts from the same weights with the same iterations and seed
    assert len({(r['init'], r['seed']) for r in runs}) == 1
    assert runs[3]['baseline'] == runs[1]['label'] == runs[2]['label'] != runs[0]['label']   # the untrained start is its own row


def test_thesis_sweeps_are_valid_experiments(tmp_path):
    for runs in (ablation_runs(500, seeds=(0, 1)), dacs_runs(1000), dacs_runs(source='synthstreets-game'), gap_runs(3000, seeds=(0, 1)),
                 gap_runs(source='synthstreets-game'), french_runs(seeds=(0, 1))):
        names = [r['run'] for r in runs]
        assert len(set(names)) == len(names)
        for r in runs:
            check_params('experiment', {**{k: v for k, v in r.items() if k not in ('run', 'label', 'baseline', 'paper')}, 'out_dir': str(tmp_path)})
            for other in r.get('compare_with', []): assert other in names, (r['run'], other)   # Fig. 4.2 partners exist
    ab = {r['label']: r for r in ablation_runs(500)}
    assert ab['2x iterations']['iterations'] == 1000 and ab['CowMix']['method'] == 'cowmix'
    assert ab['Random crop']['baseline'] == 'Random crop baseline' and ab['Random crop']['crop'] == '96x96'
    da = {r['label']: r for r in dacs_runs()}
    assert [da[k]['method'] for k in ('Source only', 'IntraMix', 'Distribution-aligned IntraMix', 'InterMix (DACS)')] == ['supervised', 'classmix', 'classmix', 'dacs']
    assert all(r['source'] == 'synthstreets-sim' and r['labeled'] == 'all' for r in da.values())
    gap = {r['label']: r for r in gap_runs()}
    assert [gap[k]['source'] for k in ('Sim', 'Sim, real camera', 'Sim, real layout', 'Sim, real look', 'Real (no gap)')] == [
        'synthstreets-sim', 'synthstreets-sim+real-camera', 'synthstreets-sim+real-layout', 'synthstreets-sim+real-look', 'synthstreets-real']
    assert all(r['method'] == 'supervised' and r['init'] == 'none' and r['style'] == 'real' for r in gap.values())   # from scratch, on real val
    assert {r.get('baseline') for r in gap.values()} == {None, 'Sim'} and 'baseline' not in gap['Sim']
    game = {r['label']: r for r in gap_runs(source='synthstreets-game')}   # the same rows for the game source
    assert [game[k]['source'] for k in ('Game', 'Game, real camera', 'Game, real layout', 'Game, real look', 'Real (no gap)')] == [
        'synthstreets-game', 'synthstreets-game+real-camera', 'synthstreets-game+real-layout', 'synthstreets-game+real-look', 'synthstreets-real']
    assert {r.get('baseline') for r in game.values()} == {None, 'Game'}
    assert all(r['source'] == 'synthstreets-game' for r in dacs_runs(source='synthstreets-game'))
    fr = {r['label']: r for r in french_runs()}   # French et al. Table 1: their consistency settings on every consistency row
    assert [fr[k]['method'] for k in ('Supervised baseline', 'Standard augmentation', 'ICT', 'CutOut', 'CutMix', 'CowOut', 'CowMix', 'Fully supervised')] == [
        'supervised', 'augment', 'ict', 'cutout', 'cutmix', 'cowout', 'cowmix', 'supervised']
    assert all(r.get('preset') == 'french' for k, r in fr.items() if r['method'] in ('cutout', 'cutmix', 'cowout', 'cowmix'))
    assert fr['Fully supervised']['labeled'] == 'all' and fr['CowMix']['baseline'] == 'Supervised baseline'
    for bad in ('synthstreets-real', 'synthstreets-sim+real-look', 'gta5'):   # no gap to measure, or not a SynthStreets style
        with pytest.raises(ParameterError, match=re.escape(f"source='{bad}': the gap sweep measures a SynthStreets style's gap to real; use one of: synthstreets-sim, synthstreets-game")):
            gap_runs(source=bad)


def test_camvid_sweeps_pair_each_method_with_supervised_in_the_same_regimen(tmp_path):
    "Every Delta of the CamVid sweeps is to a supervised run of the list that differs from it in the method alone."
    from classmix_lab.sweeps import camvid_runs, camvid_check_runs
    same = ('image_scale', 'labeled', 'iterations', 'batch_size', 'lr', 'model', 'init', 'holdout', 'seed')
    for runs in (camvid_runs(), camvid_check_runs(seeds=(0,))):
        by = {r['run']: r for r in runs}
        assert len(by) == len(runs)
        for r in runs:
            for other in r.get('compare_with', []):   # (check_params needs the CamVid root: 09b_sweeps checks them where it is)
                b = by[other]
                assert b['method'] == 'supervised' and b['label'] == r['baseline'], (r['run'], other)
                assert {k: b.get(k) for k in same} == {k: r.get(k) for k in same}, (r['run'], other)
    full = {r['label']: r for r in camvid_check_runs()}['ClassMix, aligned, extra augmentations, full resolution']
    assert full['image_scale'] == 1.0 and full['compare_with'] == ['supervised-full-resolution_seed-0']

# --- in a real browser ---------------------------------------------------------------------------------------------

def _chromium():
    for p in ('/usr/bin/chromium', '/usr/bin/chromium-browser'):
        if Path(p).is_file(): return p


@pytest.mark.browser
def test_reports_show_their_figures_in_headless_chromium(sweep, tmp_path):
    "Every <img> of a run report and of the index decodes (naturalWidth > 0) with all network requests blocked."
    exe = _chromium()
    if exe is None: pytest.skip('Chromium is not installed (apt-get install chromium)')
    pw = pytest.importorskip('playwright.sync_api', reason='playwright is not installed (pip install playwright)')
    d, _, _ = sweep
    blocked = []
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=['--no-sandbox', '--disable-gpu', '--disable-background-networking'])
        page = browser.new_page(viewport=dict(width=1280, height=900))
        page.route('**/*', lambda route: route.continue_() if route.request.url.startswith(('file:', 'data:')) else (blocked.append(route.request.url), route.abort()))
        for name in ('smoke/classmix.html', 'index.html'):
            page.goto((d/'reports'/name).as_uri()); page.wait_for_load_state('load')
            sizes = page.eval_on_selector_all('img', 'els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])')
            assert len(sizes) >= (5 if 'classmix' in name else 1)
            assert all(c and w > 0 and h > 0 for c, w, h in sizes), sizes
            page.screenshot(path=str(tmp_path/(Path(name).stem + '.png')), full_page=True)
        browser.close()
    assert not blocked, f'reports tried to fetch {blocked}'
    assert (tmp_path/'classmix.png').stat().st_size > 20_000


def test_dataset_statistics_report(tmp_path, monkeypatch):
    "The dataset_stats template on a CamVid-layout tree: two splits side by side, figures embedded, listed in the index, not re-run."
    import dataset_trees as trees
    from classmix_lab.sweeps import dataset_stats
    monkeypatch.setenv('CLASSMIX_LAB_CAMVID_ROOT', str(trees.camvid(tmp_path/'camvid', size=(36, 48))))
    index = dataset_stats([dict(dataset='camvid', compare='camvid', compare_split='val', grid_height=12, workers=1)])
    d = load_settings().reports_dir
    rec = [r for r in read_index(d) if r['sweep'] == 'dataset-stats'][0]
    assert rec['run'] == 'camvid-vs-camvid-val' and rec['status'] == 'ok' and rec['template'] == 'dataset_stats'
    html = (d/rec['report']).read_text()
    assert html.count('data:image/png;base64,') >= 4 and 'camvid train' in html and 'camvid val' in html
    m = json.loads((d/rec['run_dir']/'metrics.json').read_text())
    freq = m['datasets']['camvid train']['frequency']
    assert set(freq) == {'sky', 'building', 'pole', 'road', 'pavement', 'tree', 'sign symbol', 'fence', 'car', 'pedestrian', 'bicyclist'}
    assert abs(sum(freq.values()) - 1) < 1e-9 and m['datasets']['camvid train']['images'] == 4
    assert 'camvid-vs-camvid-val' in index.read_text()
    mtime = (d/rec['report']).stat().st_mtime_ns
    again = run_sweep('dataset-stats', [dict(run='camvid-vs-camvid-val', dataset='camvid', compare='camvid', compare_split='val',
                                            grid_height=12, workers=1)], template='dataset_stats', stream=False)
    assert again[0]['status'] == 'ok' and (d/rec['report']).stat().st_mtime_ns == mtime   # finished: not executed again
    with pytest.raises(ParameterError, match="unknown parameter 'colour' of template 'dataset_stats'"):
        dataset_stats([dict(dataset='camvid', colour='red')])


def test_mask_gallery_report_is_linked_from_the_index(tmp_path):
    "The gallery template runs through the runner; its report embeds its figures and the index links it."
    run = dict(run='synthstreets', dataset='synthstreets', height=48, width=96, n_train=8, n_val=6, fig_sigmas=[4, 16])
    rec = run_sweep('masks', [run], template='mask_gallery', stream=False)[0]
    assert rec['status'] == 'ok', rec['error']
    reports = load_settings().reports_dir
    page = (reports/'masks'/'synthstreets.html').read_text()
    assert page.count('data:image/png;base64,') >= 6 and 'mask border on a label border' in page
    index = (reports/'index.html').read_text()
    assert "href='masks/synthstreets.html'" in index and 'mask_gallery' in index and 'n_val=6' in index


def test_a_run_resumed_alone_compares_with_the_finished_runs_of_its_sweep(sweep):
    "compare_with names a run of the sweep that is not in this call: its finished folder is found, not taken as a path."
    d, _, _ = sweep
    late = dict(SMALL, run='classmix-late', method='classmix', seed=1, compare_with=['baseline'])
    rec = run_sweep('smoke', [late], settings=load_settings(runs_dir=d/'runs', reports_dir=d/'reports'), stream=False)[0]
    assert rec['status'] == 'ok'
    html = (d/'reports'/'smoke'/'classmix-late.html').read_text()
    assert 'supervised (4 labeled)' in html and 'cannot compare' not in html


def test_a_report_of_a_failed_attempt_is_not_a_finished_run(sweep, capsys):
    "An attempt that wrote its metrics and then failed (in a figure) is run again, not skipped as finished."
    from classmix_lab.index import update_index
    d, _, runs = sweep
    rec = next(r for r in read_index(d/'reports') if r['run'] == 'baseline')
    update_index(d/'reports', [dict(rec, status='failed', error='NameError: a figure failed')])
    again = run_sweep('smoke', [runs[0]], settings=load_settings(runs_dir=d/'runs', reports_dir=d/'reports'), stream=False)
    assert 'already finished' not in capsys.readouterr().out and again[0]['status'] == 'ok'


@pytest.mark.parametrize('change', [dict(log_every=4), dict(checkpoint_every=2, workers=1), dict(compile=False, tensorboard=False)])
def test_a_finished_run_given_other_ways_to_run_is_the_same_run(sweep, capsys, change):
    "Settings of how a run executes (`config.HOW_IT_RUNS`) leave a finished run finished: skipped, its name and results kept."
    from classmix_lab.config import HOW_IT_RUNS
    from classmix_lab.runner import default_run_name
    d, _, _ = sweep
    assert set(change) <= set(HOW_IT_RUNS)
    s = load_settings(runs_dir=d/'runs', reports_dir=d/'reports')
    base = dict(SMALL, method='supervised', seed=7)
    first = run_sweep('how', [base], settings=s, stream=False)[0]
    log = (d/'runs'/'how'/first['run']/'log.jsonl').read_text()
    capsys.readouterr()
    again = run_sweep('how', [dict(base, **change)], settings=s, stream=False)[0]
    assert default_run_name(dict(base, **change)) == first['run'] == again['run']
    assert again['status'] == 'ok' and again['miou'] == first['miou'] and 'already finished: skipped' in capsys.readouterr().out
    assert (d/'runs'/'how'/first['run']/'log.jsonl').read_text() == log
