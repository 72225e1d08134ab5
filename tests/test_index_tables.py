"""The index's thesis-style tables: means and sample standard deviations over seeds, Deltas to the right baseline."""
import re
import pytest
from classmix_lab.index import thesis_tables


def rec(label, labeled, seed, miou, method='classmix', n=None, baseline=None, iou=None):
    return dict(sweep='s', run=f'{label}-{labeled}-{seed}', label=label, baseline=baseline, status='ok', miou=miou, teacher_miou=miou + 1,
                n_labeled=n or int(labeled), iou=iou or {'road': miou, 'sky': None}, params=dict(method=method, labeled=labeled, seed=seed))


def cells(html, row):
    "The cell texts of the table row whose first cell is `row`."
    m = re.search(r'<tr[^>]*><td>' + re.escape(row) + r'</td>(.*?)</tr>', html)
    return [re.sub('<[^>]+>', '', c) for c in re.findall(r'<td[^>]*>(.*?)</td>', m.group(1))]


def test_methods_by_labeled_amount_with_deltas():
    rs = [rec('Baseline', '12', 0, 30., 'supervised'), rec('Baseline', '12', 1, 32., 'supervised'),
          rec('ClassMix', '12', 0, 35.), rec('ClassMix', '12', 1, 39.),
          rec('Baseline', '30', 0, 40., 'supervised'), rec('ClassMix', '30', 0, 43.)]
    html = thesis_tables(rs)
    assert 'Table 4.1 layout' in html
    assert cells(html, 'Baseline')[:2] == ['31.0 &plusmn; 1.41', '40.0']
    assert cells(html, 'ClassMix')[:2] == ['37.0 &plusmn; 2.83', '43.0']
    assert cells(html, '&Delta; ClassMix vs Baseline') == ['+6.00', '+3.00']
    assert html.index('12 (12)') < html.index('30 (30)')            # columns ordered by labeled count


def test_settings_table_uses_each_rows_baseline():
    rs = [rec('Baseline', '12', 0, 30., 'supervised'), rec('ClassMix', '12', 0, 36.),
          rec('Random crop baseline', '12', 0, 33., 'supervised'), rec('Random crop', '12', 0, 37., baseline='Random crop baseline')]
    html = thesis_tables(rs)
    assert 'Table 5.1 layout' in html
    assert cells(html, 'ClassMix')[:2] == ['36.0', '+6.00'] and cells(html, 'Random crop')[:2] == ['37.0', '+4.00']
    assert cells(html, 'Baseline')[1] == '' and cells(html, 'Random crop baseline')[1] == ''


def test_failed_runs_are_left_out_of_the_means_and_absent_classes_stay_empty():
    rs = [rec('Baseline', '12', 0, 30., 'supervised'), dict(rec('Baseline', '12', 1, 99., 'supervised'), status='failed')]
    html = thesis_tables(rs)
    assert cells(html, 'Baseline')[0] == '30.0'
    per_class = html[html.index('Table 4.3'):]
    assert cells(per_class, 'Baseline') == ['30.0', '', '30.0']


def test_runs_that_differ_in_more_than_the_seed_are_separate_rows():
    untrained = dict(rec(None, '12', 0, 30., 'supervised'), params=dict(method='supervised', labeled='12', seed=0, iterations=0))
    trained = [dict(rec(None, '12', s, m, 'supervised'), params=dict(method='supervised', labeled='12', seed=s, iterations=1000)) for s, m in ((0, 39.), (1, 41.))]
    mixed = dict(rec(None, '12', 0, 44.), params=dict(method='classmix', labeled='12', seed=0, iterations=1000))
    html = thesis_tables([untrained, *trained, mixed])
    assert cells(html, 'supervised (iterations=0)')[0] == '30.0'
    assert cells(html, 'supervised (iterations=1000)')[0] == '40.0 &plusmn; 1.41'
    assert cells(html, 'classmix')[:2] == ['44.0', '+5.00']     # compared with the baseline trained as long, paired by seed (39.0)


def test_domain_adaptation_sweeps_use_the_table_5_2_layout():
    da = lambda label, method, miou: dict(rec(label, 'all', 0, miou, method, n=600), params=dict(method=method, labeled='all', seed=0, source='gta5'))
    html = thesis_tables([da('Source only', 'supervised', 30.), da('InterMix (DACS)', 'dacs', 41.)])
    assert 'Table 5.2 layout; source: gta5' in html and 'Table 5.1' not in html
    assert cells(html, 'InterMix (DACS)')[:2] == ['41.0', '+11.00']


def test_recorded_runs_without_labels_keep_their_settings_apart(tmp_path):
    "Records made by the runner (no label given) of one method with different iterations are two rows, not one mean."
    import json
    from classmix_lab.index import record_for
    recs = []
    for its, seed, miou in ((0, 0, 30.), (1000, 0, 39.), (1000, 1, 41.)):
        d = tmp_path/f'run-{its}-{seed}'; d.mkdir()
        (d/'metrics.json').write_text(json.dumps(dict(miou=miou, teacher_miou=miou, iou={'road': miou}, n_labeled=12)))
        recs.append(record_for('s', d.name, 'experiment', dict(method='supervised', labeled='12', iterations=its, seed=seed),
                               'ok', None, d, d/'report.html', tmp_path))
    assert all(r['label'] is None for r in recs)
    html = thesis_tables(recs)
    assert cells(html, 'supervised (iterations=0)')[0] == '30.0'
    assert cells(html, 'supervised (iterations=1000)')[0] == '40.0 &plusmn; 1.41'


def _add_records(reports_dir, worker, n):
    from classmix_lab.index import update_index
    for i in range(n): update_index(reports_dir, [dict(rec('ClassMix', '12', i, 30. + i), sweep=f'w{worker}', run=f'r{i}', template='experiment')])


@pytest.mark.slow   # processes writing one index
def test_sweeps_writing_one_index_at_once_keep_every_record(tmp_path):
    "Four processes merge records into the same index at the same time; none of them is lost."
    import multiprocessing as mp
    from classmix_lab.index import read_index
    ctx = mp.get_context('fork')
    procs = [ctx.Process(target=_add_records, args=(tmp_path, w, 6)) for w in range(4)]
    for p in procs: p.start()
    for p in procs: p.join(120)
    assert [p.exitcode for p in procs] == [0]*4
    assert sorted((r['sweep'], r['run']) for r in read_index(tmp_path)) == sorted((f'w{w}', f'r{i}') for w in range(4) for i in range(6))


def test_rebuilding_the_page_waits_for_a_sweep_that_is_merging(tmp_path):
    "`write_index_html()` (what `classmix-lab index` runs) reads index.json only once the lock is free."
    import threading, time
    from classmix_lab.index import update_index, write_index_html, _index_lock
    update_index(tmp_path, [dict(rec('ClassMix', '12', 0, 30.), template='experiment')])
    (tmp_path/'index.html').unlink()
    with _index_lock(tmp_path):
        t = threading.Thread(target=write_index_html, args=(tmp_path,)); t.start()
        time.sleep(1.0)
        assert t.is_alive() and not (tmp_path/'index.html').exists()
    t.join(60)
    assert not t.is_alive() and 'ClassMix' in (tmp_path/'index.html').read_text()


def test_settings_table_gives_each_rows_cost_per_iteration_relative_to_its_baseline():
    rs = [dict(rec('Supervised', '12', s, 30., 'supervised'), ms_per_iteration=ms) for s, ms in ((0, 190.), (1, 210.))]
    rs += [dict(rec('PhTPS', '12', s, 33., 'phtps'), ms_per_iteration=ms) for s, ms in ((0, 450.), (1, 470.))]
    rs += [rec('Old run', '12', 0, 31.)]                              # a record from before the lab measured it
    html = thesis_tables(rs)
    assert cells(html, 'Supervised')[3] == '200'                   # the baseline itself: its own time
    assert cells(html, 'PhTPS')[3] == '460 (2.30&times;)'
    assert cells(html, 'Old run')[3] == ''


def test_a_record_from_before_a_parameter_existed_shares_the_row_of_its_default():
    "A run recorded before `momentum` was a parameter ran with today's default, so it is averaged with runs that give it."
    old = dict(rec(None, '30', 0, 40., 'supervised'), params=dict(method='supervised', labeled='30', seed=0, iterations=2000))
    new = dict(rec(None, '30', 1, 42., 'supervised'), params=dict(method='supervised', labeled='30', seed=1, iterations=2000, momentum=0.9))
    other = dict(rec(None, '30', 0, 30., 'supervised'), params=dict(method='supervised', labeled='30', seed=0, iterations=2000, momentum=0.5))
    html = thesis_tables([old, new, other])
    assert cells(html, 'supervised (momentum=0.9)')[0] == '41.0 &plusmn; 1.41' and cells(html, 'supervised (momentum=0.5)')[0] == '30.0'


def test_rows_of_one_setting_with_other_labeled_amounts_are_rows_of_their_own():
    "Unlabelled runs that differ only in their labeled amount (30 labels, full supervision) are two rows; each method row pairs with the baseline of as many labels."
    from classmix_lab.index import settings_rows
    run = lambda method, labeled, n, seed, miou: dict(rec(None, '30', seed, miou, method, n=n), params=dict(method=method, labeled=labeled, seed=seed, iterations=2000))
    rs = [run('supervised', 'split0.txt', 30, 0, 40.), run('supervised', 'all', 266, 0, 58.), run('supervised', 'all', 266, 1, 60.),
          run('classmix', 'split0.txt', 30, 0, 46.)]
    rows = {(r['label'], r['n_labeled']): r for r in settings_rows(rs, pm='±')}
    assert rows[('supervised', 30)]['miou'] == '40.0' and rows[('supervised', 266)]['miou'] == '59.0 ± 1.41'
    assert rows[('classmix', 30)]['delta'] == '+6.00'
