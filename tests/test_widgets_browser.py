"""The mask explorer in a real JupyterLab: a headless server, Debian's Chromium driven by Playwright, the explorer
notebook run from the Run menu (once the kernel is idle, and while it is still starting), a control changed, the drawn
image changed."""
import hashlib, json, os, re, secrets, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest
from conftest import ROOT

pytestmark = pytest.mark.browser
NOTEBOOK = ROOT/'nbs'/'explore'/'explore_masks.ipynb'
SMALL = "dataset_kwargs = {'synthstreets': dict(style='real', height=48, width=96, n_train=8, n_val=4)}"


def _chromium():
    for p in ('/usr/bin/chromium', '/usr/bin/chromium-browser'):
        if Path(p).is_file(): return p


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _notebook_copy(dest:Path) -> Path:
    "The shipped explorer notebook with a small SynthStreets in its parameters cell."
    nb = json.loads(NOTEBOOK.read_text())
    cell = next(c for c in nb['cells'] if 'parameters' in c.get('metadata', {}).get('tags', []))
    src = ''.join(cell['source']).splitlines()
    assert any(l.startswith('dataset_kwargs =') for l in src), 'the explorer notebook lost its dataset_kwargs parameter'
    cell['source'] = '\n'.join(SMALL if l.startswith('dataset_kwargs =') else l for l in src)
    out = dest/NOTEBOOK.name
    out.write_text(json.dumps(nb))
    return out


def _run_all(page):
    page.locator('.lm-MenuBar-item', has_text='Run').first.click()
    page.locator('.lm-Menu-item', has_text='Run All Cells').first.click()


_MSG_TYPE = re.compile(rb'"msg_type":\s*"(\w+)"')


class _KernelWire:
    """The page's kernel websockets: each opening and closing and the type of every message received, kept in `log`;
    `answered` turns true once a kernel_info_reply came back on one, i.e. once the kernel is connected."""
    def __init__(self, page, log:list):
        self.log, self.answered, self.sockets = log, False, 0
        page.on('websocket', self._opened)

    def _note(self, text): self.log.append(f'{time.strftime("%H:%M:%S")} {text}')

    def _opened(self, ws):
        if '/api/kernels/' not in ws.url: return
        self.sockets += 1; n = self.sockets
        self._note(f'kernel websocket {n} opened')
        ws.on('close', lambda _: self._note(f'kernel websocket {n} closed'))
        ws.on('framereceived', lambda payload: self._received(n, payload))

    def _received(self, n, payload):
        m = _MSG_TYPE.search(payload if isinstance(payload, bytes) else payload.encode())
        kind = m.group(1).decode() if m else '?'
        if kind == 'kernel_info_reply': self.answered = True
        if kind not in ('status', 'debug_reply'): self._note(f'kernel websocket {n}: {kind}')


def _first_run_shows(page, target, timeout:float):
    """Run All Cells once from the Run menu, as a user does, and wait for `target`.
    Nothing is asked for twice and the page is never reloaded: a run that starts no cell, a widget that shows 'Error
    displaying widget', or cells that ran without `target` showing, fail."""
    lost = page.locator('.jp-OutputArea-output', has_text='Error displaying widget')
    prompts = page.locator('.jp-CodeCell .jp-InputPrompt')
    _run_all(page)
    start, ran = time.time(), None
    while not target.is_visible():
        if lost.count(): raise AssertionError(f'the first run shows {lost.first.inner_text()!r}')
        texts = [t.strip() for t in prompts.all_inner_texts()]
        if all(t in ('[ ]:', '') for t in texts) and time.time() - start > 30:
            raise AssertionError(f'Run All Cells started no cell within 30 s (prompts {texts})')
        if texts and all(t.startswith('[') and t[1:-2].isdigit() for t in texts):   # every cell has run
            ran = ran or time.time()
            if time.time() - ran > 20: raise AssertionError(f'the cells ran ({texts}) but no widget showed')
        if time.time() > start + timeout: raise TimeoutError(f'the first run showed no widget within {timeout} s (prompts {texts})')
        page.wait_for_timeout(500)


def _wait_for_kernel(page, wire:_KernelWire, timeout:float=180):
    """Until the notebook shows, the status bar reads the kernel's name and Idle (what a user waits for) and the
    kernel has answered on a websocket. (While the status bar reads 'No Kernel | Initializing' the notebook's session
    has no kernel yet, the toolbar's indicator reads idle all the same, and JupyterLab by itself drops a Run All asked
    for then without running a cell; the lab's plugin makes it wait: `_click_while_starting`.)"""
    page.wait_for_selector('.jp-NotebookPanel .jp-Cell', state='visible')
    page.locator('.jp-StatusBar-Widget', has_text=re.compile(r'\(ipykernel\) \| Idle')).first.wait_for(timeout=timeout*1000)
    deadline = time.time() + timeout
    while not wire.answered:
        if time.time() > deadline: raise TimeoutError(f'the notebook\'s kernel did not answer within {timeout} s')
        page.wait_for_timeout(250)


@pytest.fixture
def cpu_load():
    "One busy process beside the test for its whole length, as a training run beside a user's JupyterLab."
    proc = subprocess.Popen([sys.executable, '-c', 'while True: pass'])
    try: yield proc
    finally: proc.kill(); proc.wait(10)


@pytest.fixture
def lab(tmp_path):
    "A JupyterLab server on a free localhost port with a token, its files and settings in tmp_path; stopped after."
    port, token = _free_port(), secrets.token_hex(16)
    work = tmp_path/'work'; work.mkdir()
    _notebook_copy(work)
    for name, value in (('notebook-extension/tracker', dict(autoStartDefaultKernel=True)),       # no kernel dialog
                        ('apputils-extension/notification', dict(fetchNews='false', checkForUpdates=False))):  # no news toast
        f = tmp_path/'settings'/'@jupyterlab'/f'{name}.jupyterlab-settings'
        f.parent.mkdir(parents=True, exist_ok=True); f.write_text(json.dumps(value))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path/'config'), JUPYTER_RUNTIME_DIR=str(tmp_path/'runtime'),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path/'settings'), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path/'workspaces'),
               IPYTHONDIR=str(tmp_path/'ipython'), MPLBACKEND='Agg')
    log = open(tmp_path/'jupyter.log', 'w')
    proc = subprocess.Popen([sys.executable, '-m', 'jupyterlab', '--no-browser', '--ip=127.0.0.1', f'--port={port}',
                             f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={work}', '--ServerApp.port_retries=0',
                             '--allow-root', '--LabApp.news_url=', '--LabApp.extension_manager=readonly',
                             '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate'],
                            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}'
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f'{url}/api/status?token={token}', timeout=5): break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f'JupyterLab did not start:\n{(tmp_path/"jupyter.log").read_text()[-3000:]}')
                time.sleep(0.5)
        yield url, token, tmp_path
    finally:
        try: urllib.request.urlopen(urllib.request.Request(f'{url}/api/shutdown?token={token}', method='POST'), timeout=10)
        except OSError: pass
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait(10)
        log.close()


def _click_while_starting(page, wire:_KernelWire):
    """As soon as the notebook's cells show, while its kernel is still starting: the moment JupyterLab alone drops a Run
    All (jupyterlab/jupyterlab#8490) and the lab's plugin (`labextension/`) makes it wait for the kernel."""
    page.wait_for_selector('.jp-NotebookPanel .jp-Cell', state='visible')
    assert not wire.answered, 'the kernel answered before the cells showed: this run cannot click while it starts'


@pytest.mark.parametrize('click', ['once the kernel is idle', 'while the kernel starts'])
def test_explorer_redraws_when_a_control_changes(lab, cpu_load, click):
    exe = _chromium()
    if exe is None: pytest.skip('Chromium is not installed (apt-get install chromium)')
    pw = pytest.importorskip('playwright.sync_api', reason='playwright is not installed (pip install playwright)')
    url, token, tmp = lab
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=['--no-sandbox', '--disable-gpu', '--disable-background-networking'])
        console = []   # the page's console and its websockets, left in the test's tmp_path as console.log
        try:
            page = browser.new_page(viewport=dict(width=1500, height=1000))
            page.set_default_timeout(180_000)   # a loaded CI machine imports torch slowly
            page.on('console', lambda m: console.append(f'{time.strftime("%H:%M:%S")} {m.type}: {m.text}'))
            wire = _KernelWire(page, console)
            page.goto(f'{url}/lab/tree/{NOTEBOOK.name}?token={token}')
            if click == 'while the kernel starts': _click_while_starting(page, wire)
            else: _wait_for_kernel(page, wire)
            image = page.locator('.jp-OutputArea-output img.widget-image').first
            _first_run_shows(page, image, timeout=240)
            page.wait_for_function("() => { const i = document.querySelector('img.widget-image'); return i && i.complete && i.naturalWidth > 0; }")
            status = page.locator('.jp-OutputArea-output .widget-html-content', has_text='classmix').first
            status.wait_for()
            before_src, before_png = image.get_attribute('src'), image.screenshot()
            mask = page.locator('.widget-dropdown', has_text='mask').locator('select')
            mask.select_option(label='cowmix')
            page.wait_for_function("old => { const i = document.querySelector('img.widget-image'); return i && i.src !== old && i.complete && i.naturalWidth > 0; }",
                                   arg=before_src)
            page.locator('.jp-OutputArea-output .widget-html-content', has_text='cowmix').first.wait_for()
            after_png = image.screenshot()
            (tmp/'before.png').write_bytes(before_png); (tmp/'after.png').write_bytes(after_png)
            assert hashlib.sha256(before_png).digest() != hashlib.sha256(after_png).digest()
            assert page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]', has_text='Traceback').count() == 0
        except Exception:
            page.screenshot(path=str(tmp/'failure.png'), full_page=True)   # left in the test's tmp_path
            raise
        finally:
            (tmp/'console.log').write_text('\n'.join(console))
            browser.close()
