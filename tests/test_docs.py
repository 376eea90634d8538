"""The documentation as a reader meets it: the site that `python tools/make_docs.py` builds, opened in headless
Chromium, and a docstring on every public function and class of the package."""
import html, importlib, inspect, os, pkgutil, re, shutil, subprocess, sys, tempfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / '_docs'                      # where the documented command writes the site
SHOTS = SITE / 'screenshots'
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
IN_CI = os.environ.get('CI', '').lower() in ('1', 'true', 'yes')

def _titles() -> list[tuple[str, str]]:
    "(page, title) of every notebook in navigation order, from the notebooks themselves."
    import nbformat
    sys.path.insert(0, str(ROOT / 'tools'))
    import make_docs
    pages = []
    for nb_path in make_docs.notebook_paths(ROOT):
        cells = nbformat.read(nb_path, as_version=4).cells
        title = next(m.group(1) for c in cells if c.cell_type == 'markdown' for m in [re.search(r'^#\s+(\S.*?)\s*$', c.source, re.M)] if m)
        pages.append((make_docs.page_name(nb_path), title))
    return pages

@pytest.fixture(scope='module')
def site() -> Path:
    "The site, built by the documented command (executing the notebooks; cached in _proc/make_docs/)."
    out = subprocess.run([sys.executable, 'tools/make_docs.py'], cwd=ROOT, capture_output=True, text=True, timeout=3000)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return SITE

@pytest.fixture(scope='module')
def browser():
    "Headless Chromium (Debian's `chromium`, installed by .ci/run)."
    if CHROMIUM is None:
        if IN_CI: pytest.fail("chromium is not installed: .ci/run should have installed Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium): the browser check of the docs is skipped")
    def run(url: str, *args: str) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory() as profile:
            cmd = [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                   '--disable-sync', '--no-first-run', '--disable-quic', f'--user-data-dir={profile}', '--virtual-time-budget=15000', *args, url]
            return subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return run

def dom(browser, page: Path) -> str:
    "The page's DOM after its scripts ran (KaTeX, image check)."
    out = browser(page.as_uri(), '--dump-dom')
    assert '<html' in out.stdout, out.stderr[-2000:]
    return out.stdout

def screenshot(browser, page: Path, height: int = 1800) -> Path:
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / f'{page.stem}.png'
    browser(page.as_uri(), '--window-size=1280,%d' % height, '--hide-scrollbars', f'--screenshot={path}')
    assert path.exists() and path.stat().st_size > 20_000, f"no screenshot of {page.name}"
    return path

def test_site_has_a_page_per_notebook_with_the_sidebar(site):
    pages = _titles()
    assert pages[0][0] == 'index.html' and ('feedback.html', 'Feedback pathways without weight transport') in pages
    for name, title in pages:
        text = (site / name).read_text()
        assert f'<h1 class="title">{html.escape(title)}</h1>' in text, name
        nav = re.search(r'<ol class="nav">(.*?)</ol>', text, re.S).group(1)
        assert re.findall(r'<a href="([^"]+)"', nav) == [n for n, _ in pages], name       # every notebook, in order
        assert re.search(r'<li class=current><a href="%s"' % re.escape(name), nav), name
        for target in re.findall(r'<a\b[^>]*href="([^"#:]+\.html)', text): assert (site / target).exists(), (name, target)

def test_pages_in_the_browser(site, browser, capsys):
    "Title, a show_doc signature, rendered maths, figures and the sidebar, as Chromium shows them; screenshots for a person to look at."
    katex_local = (site / 'katex' / 'katex.min.js').exists()
    if IN_CI: assert katex_local, "KaTeX was not vendored into the site: .ci/run should have installed Debian's libjs-katex"
    pages = {name: title for name, title in _titles()}
    doms = {name: dom(browser, site / name) for name in pages}
    for name, text in doms.items():
        assert re.search(r'<title>%s · ' % re.escape(html.escape(pages[name], quote=False)), text), name   # the DOM escapes text's &, <, > only
        assert text.count('<li') >= len(pages) and 'class="sidebar"' in text, name
        if katex_local:
            assert 'data-math="rendered"' in text, name                                     # the KaTeX script ran
            assert 'katex-error' not in text, (name, re.findall(r'katex-error[^>]*title="([^"]*)"', text)[:3])
        images = re.search(r'data-images="(\d+)/(\d+)"', text)
        assert images and images.group(1) == images.group(2), (name, images and images.group(0))   # every figure decoded

    # the feedback page: a show_doc signature, an equation rendered by KaTeX in the browser
    feedback = doms['feedback.html']
    entry = re.search(r'<div class="cell code-cell doc-entry">(?:(?!doc-entry).)*?<h3 id="init_theta">.*?</div>\s*</div>', feedback, re.S)
    assert entry, "no show_doc entry for init_theta on the feedback page"
    text = html.unescape(re.sub(r'<[^>]+>', '', entry.group(0)))
    assert re.search(r'def init_theta\(\s*cfg:Config, generator:torch.Generator \| None=None', text), text    # the signature
    assert 'The meta-parameters' in text and 'class="highlight"' in entry.group(0)                           # docstring, styled code
    if katex_local:
        assert 'class="katex"' not in (site / 'feedback.html').read_text()                # rendered by the browser, not stored
        tex = [html.unescape(t) for t in re.findall(r'<annotation encoding="application/x-tex">(.*?)</annotation>', feedback, re.S)]
        assert any(r'f_\ell = \phi_B\big(\color{teal}{B_\ell}\, t + \color{teal}{c_\ell}\big)' in t for t in tex)
        assert feedback.count('class="katex-display"') >= 3 and feedback.count('class="katex"') > 50

    # figures: the landing page's result figure and a plot produced by executing a notebook
    for name, kind in (('index.html', 'image/png'), ('continual.html', 'image/png'), ('explorer.html', 'image/png')):
        srcs = re.findall(r'<img src="data:%s;base64,([A-Za-z0-9+/=]+)"' % re.escape(kind), doms[name])
        assert srcs and max(map(len, srcs)) > 10_000, name
    assert 'class="output figure"' in doms['continual.html']
    assert 'An interactive widget is displayed here' in doms['explorer.html']

    shots = [screenshot(browser, site / name) for name in ('index.html', 'feedback.html', 'continual.html', 'explorer.html')]
    with capsys.disabled(): print('\ndocs screenshots (look at them):', *map(str, shots), sep='\n  ')

def _undocumented() -> list[str]:
    "Public functions and classes (a module's `__all__`) without a docstring of their own."
    import feedback_plasticity
    missing = []
    for info in pkgutil.iter_modules(feedback_plasticity.__path__):
        if info.name.startswith('_'): continue
        module = importlib.import_module(f'feedback_plasticity.{info.name}')
        for name in getattr(module, '__all__', [n for n in vars(module) if not n.startswith('_')]):
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or obj.__module__ != module.__name__: continue
            doc = (obj.__doc__ or '').strip()
            if inspect.isclass(obj) and doc.startswith(obj.__name__ + '('): doc = ''          # a dataclass's generated signature
            if not doc: missing.append(f'{module.__name__}.{name}')
    return sorted(missing)

def test_public_callables_have_docstrings():
    missing = _undocumented()
    assert not missing, f"public functions and classes without a docstring: {missing}"
