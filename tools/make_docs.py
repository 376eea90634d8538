"""Build the documentation site from index.ipynb and nbs/*.ipynb without quarto.

Usage: python tools/make_docs.py [--out _docs] [--no-exec] [--workers 2] [--force]

Each notebook goes through nbdev's own doc processing (frontmatter, `show_doc` for every exported
name, directives, hidden and exported cells removed, links to the API), and is executed as
`nbdev_test` executes it (same skipped cells and flags), so the pages show the cells' outputs and
figures. The pages are then written as static HTML with a sidebar of all notebooks in order; maths
is rendered in the browser by KaTeX, copied into the site from a local installation (Debian's
`libjs-katex`, or the folder named by $KATEX_DIR), so the site works offline; without one the pages
load KaTeX from a CDN. Processed notebooks are cached in `_proc/make_docs/` and reused while the
notebook, the package, settings.ini and this script's processing code are unchanged.
`nbdev_docs` builds the quarto site where quarto is installed.
"""
from __future__ import annotations
import argparse, base64, hashlib, html, inspect, json, mimetypes, multiprocessing, os, re, shutil, sys, time, warnings
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / '_proc' / 'make_docs'
KATEX_CANDIDATES = [os.environ.get('KATEX_DIR', ''), '/usr/share/javascript/katex']
KATEX_CDN = 'https://cdn.jsdelivr.net/npm/katex@0.16.4/dist'

# ---------------------------------------------------------------- notebooks -> processed notebooks

def notebook_paths(root: Path = ROOT) -> list[Path]:
    "The site's notebooks in reading order: the top-level index, then nbs/*.ipynb by name (no scratch `_` notebooks)."
    nbs = sorted(p for p in (root / 'nbs').glob('*.ipynb')
                 if not p.name.startswith(('_', '.')) and not (p.name == 'index.ipynb' and (root / 'index.ipynb').exists()))
    return ([root / 'index.ipynb'] if (root / 'index.ipynb').exists() else []) + nbs

def page_name(nb_path: Path) -> str:
    "The page of a notebook, named as nbdev names it (numeric prefix dropped): `01_feedback.ipynb` -> `feedback.html`."
    from nbdev.doclinks import _nbpath2html
    return _nbpath2html(Path(nb_path)).name

def _ordered_show_docs():
    "nbdev's `add_show_docs`, but the added `show_doc` cells keep the order in which the names are defined."
    from nbdev.processors import add_show_docs, _want_doc, _def_names, _show_docs, _get_nm
    from nbdev.process import NbCell
    from execnb.nbio import mk_cell
    from fastcore.foundation import L
    class add_show_docs_in_order(add_show_docs):
        def begin(self):
            nb = self.nb
            exports = L(cell for cell in nb.cells if _want_doc(cell))
            shown = {_get_nm(t) for t in _show_docs(L(nb.cells).map(NbCell.parsed_).concat())}
            for cell in reversed(exports):
                for i, name in enumerate(_def_names(cell, shown)):
                    new_cell = mk_cell(f'show_doc({name})')
                    new_cell.has_sd = True
                    nb.cells.insert(cell.idx_ + 1 + i, new_cell)
            nb.has_docs_ = shown or exports
    add_show_docs_in_order.__name__ = 'add_show_docs'
    return add_show_docs_in_order

def _executor(nb_path: Path, skip_flags: set):
    "A processor that runs every cell `nbdev_test` runs (in place of nbdev's `exec_show_docs`), so that the page shows outputs."
    from nbdev.processors import exec_show_docs
    class exec_all(exec_show_docs):
        def __call__(self, cell):
            if cell.cell_type != 'code' or not cell.source or 'nbdev_export' + '(' in cell.source: return
            directives = getattr(cell, 'directives_', {}) or {}
            if directives.get('eval:', [''])[0].lower() == 'false' or skip_flags & directives.keys(): return
            self.k.cell(cell)
            if self.k.exc:
                raise RuntimeError(f"{nb_path.name}, cell {cell.idx_}, failed while building the docs:\n{self.k.prettytb(fname=nb_path)}")
        def end(self): pass                               # static pages cannot use the widget state nbdev would store
    exec_all.__name__ = 'exec_show_docs'
    return exec_all

def _imports_only():
    "nbdev's `exec_show_docs` for pages that are not executed: of a cell that mixes imports with other code, only the imports run."
    import ast
    from nbdev.processors import exec_show_docs, _do_eval
    class exec_imports(exec_show_docs):
        def __call__(self, cell):
            if not _do_eval(cell): return
            trees = cell.parsed_()
            has = lambda kinds: any(isinstance(node, kinds) for tree in trees for node in ast.walk(tree))
            if cell.directives_.keys() & {'export', 'exports', 'exporti', 'exec_doc'} or not (has((ast.Import, ast.ImportFrom)) and has((ast.Expr, ast.Assign))):
                return super().__call__(cell)
            imports = [node for node in trees if isinstance(node, (ast.Import, ast.ImportFrom))]
            if imports: self.k.run_cell('\n'.join(ast.unparse(node) for node in imports))
    exec_imports.__name__ = 'exec_show_docs'
    return exec_imports

def process_notebook(nb_path: str, execute: bool) -> dict:
    "Run nbdev's doc processors on the notebook at `nb_path` (executing it if `execute`); returns the processed notebook as JSON."
    from nbdev.config import get_config
    from nbdev.process import NBProcessor
    from nbdev.processors import FilterDefaults, add_show_docs, exec_show_docs
    from execnb.nbio import nb2dict
    warnings.filterwarnings('ignore', message='Found cells containing imports and other code')   # nbdev's FAQ warning
    nb_path = Path(nb_path)
    os.chdir(nb_path.parent)                          # notebooks run from their own folder, as under nbdev_test
    os.environ['IN_TEST'] = '1'
    os.environ.setdefault('MPLBACKEND', 'Agg')
    skip_flags = set(get_config().get('tst_flags', '').split())
    procs = []
    for proc in FilterDefaults().procs():
        if proc is add_show_docs: proc = _ordered_show_docs()
        elif proc is exec_show_docs: proc = _executor(nb_path, skip_flags) if execute else _imports_only()
        procs.append(proc)
    processor = NBProcessor(nb_path, procs=procs)
    processor.process()
    return nb2dict(processor.nb)

def _cache_key(nb_path: Path, execute: bool) -> str:
    "What the processed notebook depends on: itself, the package, settings.ini, the run results it reads, and the processing code."
    h = hashlib.sha256()
    h.update(nb_path.read_bytes()); h.update(str(execute).encode())
    for p in sorted((ROOT / 'feedback_plasticity').glob('*.py')) + [ROOT / 'settings.ini']: h.update(p.name.encode() + p.read_bytes())
    for p in sorted((ROOT / 'results').rglob('*')) if (ROOT / 'results').exists() else []:
        if p.is_file(): h.update(str(p.relative_to(ROOT)).encode() + str(p.stat().st_size).encode() + str(p.stat().st_mtime_ns).encode())
    for f in (process_notebook, _executor, _imports_only, _ordered_show_docs): h.update(inspect.getsource(f).encode())
    return h.hexdigest()

def _cache_file(nb_path: Path, execute: bool) -> Path:
    return CACHE / f"{nb_path.stem}.{'run' if execute else 'norun'}.json"

def _process_job(job):
    "Process one notebook in a worker; a failure comes back as its message, so that the other notebooks still finish."
    nb_path, execute = job
    start = time.time()
    try: return nb_path, process_notebook(nb_path, execute), None, time.time() - start
    except Exception as e:
        import traceback
        return nb_path, None, f"{e}" if isinstance(e, RuntimeError) else traceback.format_exc(), time.time() - start

def processed_notebooks(paths: list[Path], execute: bool = True, workers: int = 2, force: bool = False) -> dict[Path, dict]:
    "The processed notebooks of `paths`, from the cache or processed in `workers` fresh processes (nbdev's processing needs them)."
    CACHE.mkdir(parents=True, exist_ok=True)
    out, todo = {}, []
    for p in paths:
        key = _cache_key(p, execute)
        cached = _cache_file(p, execute)
        if not force and cached.exists():
            data = json.loads(cached.read_text())
            if data.get('key') == key: out[p] = data['nb']; continue
        todo.append((p, key))
    if todo:
        print(f"processing {len(todo)} notebook(s){' (executing them)' if execute else ''}: " + ', '.join(p.name for p, _ in todo), flush=True)
        context = multiprocessing.get_context('spawn')
        keys = dict(todo)
        with context.Pool(max(1, min(workers, len(todo))), maxtasksperchild=1) as pool:
            failed = []
            for nb_path, nb, error, seconds in pool.imap_unordered(_process_job, [(str(p), execute) for p, _ in todo]):
                p = Path(nb_path)
                if error is not None:
                    failed.append(p.name); print(f"  {p.name}: FAILED after {seconds:.0f} s\n{error}", file=sys.stderr, flush=True); continue
                _cache_file(p, execute).write_text(json.dumps({'key': keys[p], 'nb': nb}))
                out[p] = nb
                print(f"  {p.name}: {seconds:.0f} s", flush=True)
        if failed: sys.exit(f"make_docs: processing failed for {', '.join(failed)} (the errors are above); no site written")
    return {p: out[p] for p in paths}

# ---------------------------------------------------------------- processed notebooks -> HTML

ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')
DIRECTIVE = re.compile(r'^\s*#\|\s*(.*?)\s*$')

def _text(x) -> str: return ''.join(x) if isinstance(x, list) else (x or '')

def _directives(source: str) -> tuple[dict, str]:
    "Quarto/nbdev `#| key: value` lines at the top of a cell, and the source without them."
    lines, directives = source.split('\n'), {}
    while lines and DIRECTIVE.match(lines[0]):
        key, _, value = DIRECTIVE.match(lines.pop(0)).group(1).partition(':')
        directives[key.strip()] = value.strip()
    return directives, '\n'.join(lines).strip('\n')

def _slug(text: str) -> str:
    text = re.sub(r'\$[^$]*\$', '', re.sub(r'<[^>]+>', '', html.unescape(text)))
    return re.sub(r'[^a-z0-9_.]+', '-', text.lower()).strip('-') or 'section'

class PageRenderer:
    "Turns one processed notebook into the HTML of its article (cells, outputs, headings with anchors)."
    def __init__(self, nb_path: Path, pages: dict[str, str], doc_url: str):
        self.nb_path, self.pages, self.doc_url = nb_path, pages, doc_url.rstrip('/') + '/'
        self.ids, self.toc = set(), []

    def _image_src(self, src: str) -> str:
        "Local image files become data URIs, so that every page carries its figures."
        if re.match(r'^(https?:|data:|//)', src): return src
        path = (self.nb_path.parent / unquote(src)).resolve()
        if not path.is_file():
            print(f"  warning: {self.nb_path.name}: image {src} not found", file=sys.stderr); return src
        mime = mimetypes.guess_type(path.name)[0] or 'image/png'
        return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"

    def _link(self, target: str) -> str:
        "Links to the docs host or to notebooks become links between the site's pages."
        if target.startswith(self.doc_url): return target[len(self.doc_url):]
        m = re.match(r'^(?:\.\./|\./)?(?:nbs/)?([^/#]+\.ipynb)(#.*)?$', target)
        if m and m.group(1) in self.pages: return self.pages[m.group(1)] + (m.group(2) or '')
        return target

    def markdown(self, source: str) -> str:
        from nbconvert.filters.markdown_mistune import markdown2html_mistune
        source = re.sub(r'^:::.*$', '', source, flags=re.M)                                   # quarto fenced divs
        # show_doc's `[source](url){target="_blank" ...}`: pandoc attributes that markdown does not know
        source = re.sub(r'\[source\]\(([^)]+)\)\{[^}]*\}', r'<a class="source-link" href="\1" target="_blank">source</a>', source)
        source = re.sub(r'(!\[[^\]]*\]\([^)]+\))\{[^}]*\}', r'\1', source)
        body = markdown2html_mistune(source)
        body = re.sub(r'(<img\b[^>]*\bsrc=")([^"]+)(")', lambda m: m.group(1) + self._image_src(html.unescape(m.group(2))) + m.group(3), body)
        body = re.sub(r'(<a\b[^>]*\bhref=")([^"]+)(")', lambda m: m.group(1) + self._link(html.unescape(m.group(2))) + m.group(3), body)
        body = re.sub(r'<a class="anchor-link"[^>]*>.*?</a>', '', body, flags=re.S)                # nbconvert's own anchors
        return re.sub(r'<h([1-6])(?:\s[^>]*)?>(.*?)</h\1>', self._heading, body, flags=re.S)

    def _heading(self, m) -> str:
        level, inner = int(m.group(1)), m.group(2)
        base = _slug(inner); anchor, i = base, 1
        while anchor in self.ids: anchor, i = f'{base}-{i}', i + 1
        self.ids.add(anchor)
        if level == 2: self.toc.append((anchor, re.sub(r'<[^>]+>', '', inner)))
        return f'<h{level} id="{anchor}">{inner}<a class="anchor" href="#{anchor}" aria-label="link to this section">#</a></h{level}>'

    def code(self, source: str) -> str:
        from pygments import highlight
        from pygments.lexers import PythonLexer
        from pygments.formatters import HtmlFormatter
        return '<div class="cell-input">' + highlight(source, PythonLexer(), HtmlFormatter(cssclass='highlight')) + '</div>'

    def output(self, out: dict) -> str:
        kind = out.get('output_type')
        if kind == 'stream':
            text = ANSI.sub('', _text(out.get('text')))
            return f'<pre class="output stream {html.escape(out.get("name", ""))}">{html.escape(text)}</pre>' if text.strip() else ''
        if kind == 'error':
            return f'<pre class="output error">{html.escape(ANSI.sub("", chr(10).join(out.get("traceback", []))))}</pre>'
        data, meta = out.get('data', {}), out.get('metadata', {})
        if 'application/vnd.jupyter.widget-view+json' in data:
            return ('<div class="output widget-note">An interactive widget is displayed here when the notebook runs in '
                    'JupyterLab or Jupyter Notebook: open <code>' + html.escape(self.nb_path.name) + '</code> there to use it.</div>')
        if 'image/svg+xml' in data: return f'<div class="output figure">{_text(data["image/svg+xml"])}</div>'
        for mime in ('image/png', 'image/jpeg', 'image/gif'):
            if mime in data:
                size = meta.get(mime, {}) if isinstance(meta.get(mime), dict) else {}
                width = f' width="{int(size["width"])}"' if 'width' in size else ''
                b64 = _text(data[mime]).replace('\n', '')
                return f'<div class="output figure"><img src="data:{mime};base64,{b64}"{width} alt="figure"></div>'
        if 'text/markdown' in data: return f'<div class="output markdown">{self.markdown(_text(data["text/markdown"]))}</div>'
        if 'text/html' in data: return f'<div class="output html">{_text(data["text/html"])}</div>'
        if 'text/latex' in data: return f'<div class="output latex">{html.escape(_text(data["text/latex"]))}</div>'
        if 'text/plain' in data: return f'<pre class="output text">{html.escape(ANSI.sub("", _text(data["text/plain"])))}</pre>'
        return ''

    def cell(self, cell: dict) -> str:
        source = _text(cell.get('source'))
        if cell['cell_type'] == 'markdown':
            return f'<section class="cell markdown-cell">{self.markdown(source)}</section>' if source.strip() else ''
        if cell['cell_type'] != 'code': return ''
        directives, source = _directives(source)
        if directives.get('include') == 'false': return ''
        is_doc = bool(re.match(r'^show_doc\(', source))
        parts = [] if directives.get('echo') == 'false' or not source.strip() else [self.code(source)]
        if directives.get('output') != 'false': parts += [self.output(o) for o in cell.get('outputs', [])]
        parts = [p for p in parts if p]
        if not parts: return ''
        return f'<div class="cell code-cell{" doc-entry" if is_doc else ""}">' + ''.join(parts) + '</div>'

    def article(self, nb: dict) -> tuple[dict, str]:
        "The frontmatter (title, description) and the HTML of the article's cells."
        from nbdev.frontmatter import _fm2dict
        cells, front = nb['cells'], {}
        if cells and cells[0]['cell_type'] == 'raw':
            front = _fm2dict(_text(cells[0]['source'])) or {}
            cells = cells[1:]
        return front, '\n'.join(filter(None, map(self.cell, cells)))

# ---------------------------------------------------------------- the site

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · {project}</title>
<meta name="description" content="{description_attr}">
<link rel="stylesheet" href="{katex}/katex.min.css">
<link rel="stylesheet" href="style.css">
<script defer src="{katex}/katex.min.js"></script>
<script defer src="{katex}/contrib/auto-render.min.js"></script>
<script defer src="site.js"></script>
</head>
<body>
<nav class="sidebar" aria-label="notebooks">
  <a class="brand" href="index.html">{project}</a>
  <p class="tagline">{tagline}</p>
  <ol class="nav">
{nav}
  </ol>
  <p class="sidebar-foot"><a href="{git_url}">source on GitHub</a></p>
</nav>
<main>
<article class="page" data-notebook="{nb_rel}">
<header class="page-header">
<h1 class="title">{title}</h1>
{description}
</header>
{body}
<footer class="page-footer">
<div class="prev-next">{prev}{next}</div>
<p>Generated from <code>{nb_rel}</code> by <code>tools/make_docs.py</code>.</p>
</footer>
</article>
</main>
{toc}
</body>
</html>
"""

SITE_JS = r"""// Render every $...$ and $$...$$ of the page with KaTeX, then mark the page as rendered.
document.addEventListener("DOMContentLoaded", function () {
  if (!window.renderMathInElement) { document.body.dataset.math = "missing"; return; }
  renderMathInElement(document.querySelector("main"), {
    delimiters: [
      {left: "$$", right: "$$", display: true}, {left: "\\[", right: "\\]", display: true},
      {left: "$", right: "$", display: false}, {left: "\\(", right: "\\)", display: false}],
    ignoredTags: ["script", "noscript", "style", "textarea", "pre", "code", "option"],
    throwOnError: false, strict: "ignore"});
  document.body.dataset.math = "rendered";
});
// Record how many images the browser decoded (the browser check reads it).
window.addEventListener("load", function () {
  const images = [...document.images];
  document.body.dataset.images = images.filter(i => i.complete && i.naturalWidth > 0).length + "/" + images.length;
});
"""

CSS = """
:root { --text: #1f2328; --muted: #59636e; --border: #d1d9e0; --bg-soft: #f6f8fa; --accent: #0b6e6e; --sidebar: 18rem; }
* { box-sizing: border-box; }
html { font-size: 16px; }
body { margin: 0; color: var(--text); background: #fff; line-height: 1.6;
  font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", "Liberation Sans", Helvetica, Arial, sans-serif; }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
code, pre, kbd { font-family: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace; }
.sidebar { position: fixed; top: 0; left: 0; bottom: 0; width: var(--sidebar); overflow-y: auto; padding: 1.4rem 1.1rem;
  background: var(--bg-soft); border-right: 1px solid var(--border); font-size: .9rem; }
.sidebar .brand { display: block; font-weight: 700; font-size: 1.15rem; color: var(--text); }
.sidebar .tagline { color: var(--muted); font-size: .8rem; margin: .3rem 0 1rem; line-height: 1.4; }
.sidebar ol.nav { list-style: none; margin: 0; padding: 0; }
.sidebar ol.nav li a { display: block; padding: .35rem .6rem; border-radius: 6px; color: var(--text); line-height: 1.35; }
.sidebar ol.nav li a:hover { background: #e7ecf0; text-decoration: none; }
.sidebar ol.nav li.current a { background: #dcefee; color: var(--accent); font-weight: 600; }
.sidebar ol.nav .nbname { display: block; font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .72rem; color: var(--muted); font-weight: 400; }
.sidebar-foot { margin-top: 1.2rem; font-size: .8rem; }
main { margin-left: var(--sidebar); padding: 2rem 3rem 4rem; }
article.page { max-width: 54rem; margin: 0 auto; }
.page-header { border-bottom: 1px solid var(--border); margin-bottom: 1.5rem; padding-bottom: .8rem; }
h1.title { font-size: 2.1rem; line-height: 1.2; margin: .2rem 0 .6rem; }
.description { font-size: 1.1rem; color: var(--muted); margin: 0; }
h2 { font-size: 1.55rem; margin: 2.2rem 0 .8rem; padding-bottom: .25rem; border-bottom: 1px solid #eaeef2; }
h3 { font-size: 1.2rem; margin: 1.6rem 0 .6rem; } h4 { font-size: 1.05rem; }
h2 .anchor, h3 .anchor, h4 .anchor { visibility: hidden; margin-left: .4rem; color: var(--muted); font-weight: 400; }
h2:hover .anchor, h3:hover .anchor, h4:hover .anchor { visibility: visible; }
p, li { font-size: 1rem; } img { max-width: 100%; height: auto; }
:not(pre) > code { background: #eff2f5; padding: .1em .35em; border-radius: 4px; font-size: .86em; }
blockquote { margin: 1rem 0; padding: .2rem 1rem; border-left: 4px solid var(--border); color: var(--muted); }
table { border-collapse: collapse; margin: 1rem 0; font-size: .92rem; display: block; overflow-x: auto; }
th, td { border: 1px solid var(--border); padding: .35rem .7rem; text-align: left; vertical-align: top; }
th { background: var(--bg-soft); } tr:nth-child(even) td { background: #fafbfc; }
.highlight { background: var(--bg-soft); border: 1px solid var(--border); border-radius: 8px; margin: .8rem 0; }
.highlight pre { margin: 0; padding: .8rem 1rem; overflow-x: auto; font-size: .85rem; line-height: 1.5; }
.cell.code-cell { margin: 1rem 0; }
.cell-input .highlight { margin-bottom: 0; border-bottom-left-radius: 0; border-bottom-right-radius: 0; }
.cell-input:last-child .highlight { border-radius: 8px; }
pre.output { margin: 0; padding: .6rem 1rem; border: 1px solid var(--border); border-top: none; background: #fff;
  font-size: .82rem; line-height: 1.45; overflow-x: auto; white-space: pre; border-bottom-left-radius: 8px; border-bottom-right-radius: 8px; }
pre.output.stderr { background: #fff8f0; } pre.output.error { background: #fff0f0; color: #8a1c1c; }
.cell:not(:has(.cell-input)) > pre.output, .cell:not(:has(.cell-input)) > div.output { border-top: 1px solid var(--border); border-radius: 8px; }
div.output.figure { border: 1px solid var(--border); border-top: none; padding: .6rem; text-align: center; background: #fff;
  border-bottom-left-radius: 8px; border-bottom-right-radius: 8px; }
div.output.markdown, div.output.html { padding: .2rem 1rem; border: 1px solid var(--border); border-top: none; }
div.output.widget-note { padding: .6rem 1rem; border: 1px dashed #9bb; background: #f3fbfb; color: var(--muted); font-size: .9rem; }
.doc-entry { margin: 1.8rem 0 1.2rem; }
.doc-entry div.output.markdown { border: 1px solid var(--border); border-left: 4px solid var(--accent); border-radius: 8px;
  padding: .2rem 1.2rem .6rem; background: #fcfefe; }
.doc-entry hr { display: none; }
.doc-entry h3 { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 1.12rem; margin: .8rem 0 .4rem; }
.doc-entry .highlight { background: #f2f7f7; }
.source-link { float: right; font-size: .8rem; margin-top: .9rem; }
.page-footer { margin-top: 3rem; padding-top: 1rem; border-top: 1px solid var(--border); color: var(--muted); font-size: .85rem; }
.prev-next { display: flex; justify-content: space-between; gap: 1rem; margin-bottom: .8rem; font-size: .95rem; }
.toc { position: fixed; top: 2rem; right: 1.2rem; width: 14rem; font-size: .82rem; display: none; }
.toc p { font-weight: 600; margin: 0 0 .4rem; } .toc ol { list-style: none; padding: 0; margin: 0; }
.toc li { margin: .25rem 0; line-height: 1.3; } .toc a { color: var(--muted); }
@media (min-width: 1500px) { .toc { display: block; } main { margin-right: 15rem; } }
@media (max-width: 900px) { .sidebar { position: static; width: auto; border-right: none; border-bottom: 1px solid var(--border); }
  main { margin-left: 0; padding: 1.2rem; } }
"""

def find_katex() -> Path | None:
    "A local KaTeX distribution (katex.min.js, katex.min.css, fonts/, contrib/auto-render), if one is installed."
    for candidate in KATEX_CANDIDATES:
        if candidate and (Path(candidate) / 'katex.min.js').is_file() and (Path(candidate) / 'fonts').is_dir():
            return Path(candidate)
    return None

def vendor_katex(out: Path) -> str:
    "Copy KaTeX into the site (offline maths); returns the URL prefix pages load it from."
    source = find_katex()
    if source is None:
        print(f"warning: no local KaTeX (install Debian's libjs-katex or set KATEX_DIR): pages load it from {KATEX_CDN}", file=sys.stderr)
        return KATEX_CDN
    dest = out / 'katex'
    (dest / 'contrib').mkdir(parents=True, exist_ok=True)
    for name in ('katex.min.js', 'katex.min.css'): shutil.copyfile(source / name, dest / name)
    contrib = source / 'contrib'
    auto = contrib / 'auto-render.min.js' if (contrib / 'auto-render.min.js').exists() else contrib / 'auto-render.js'
    shutil.copyfile(auto, dest / 'contrib' / 'auto-render.min.js')
    shutil.copytree((source / 'fonts').resolve(), dest / 'fonts', dirs_exist_ok=True)
    for name in ('LICENSE', 'copyright'):
        for p in (source / name, Path('/usr/share/doc/libjs-katex') / name):
            if p.is_file(): shutil.copyfile(p, dest / f'{name}.txt'); break
    return 'katex'

def _settings() -> dict:
    from configparser import ConfigParser
    cp = ConfigParser(); cp.read(ROOT / 'settings.ini')
    return dict(cp['DEFAULT'])

def build(out: Path, execute: bool = True, workers: int = 2, force: bool = False) -> list[Path]:
    "Build the site into `out`; returns the written pages, in navigation order."
    settings = _settings()
    paths = notebook_paths()
    nbs = processed_notebooks(paths, execute, workers, force)
    out = Path(out)
    if out.exists():
        if any(out.iterdir()) and not (out / 'index.html').exists() and not (out / '.make_docs').exists():
            sys.exit(f"{out} exists and does not look like a generated site: not overwriting it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / '.make_docs').write_text('written by tools/make_docs.py\n'); (out / '.nojekyll').write_text('')
    katex = vendor_katex(out)
    from pygments.formatters import HtmlFormatter
    (out / 'style.css').write_text(CSS + HtmlFormatter(style='friendly').get_style_defs('.highlight'))
    (out / 'site.js').write_text(SITE_JS)
    pages = {p.name: page_name(p) for p in paths}
    doc_url = settings.get('doc_host', '') + settings.get('doc_baseurl', '')
    rendered = []
    for p in paths:
        renderer = PageRenderer(p, pages, doc_url)
        front, body = renderer.article(nbs[p])
        description = front.get('description', '')
        lead = renderer.markdown(description).replace('<p>', '<p class="description">', 1) if description else ''
        rendered.append((p, front.get('title') or p.stem, description, lead, body, renderer.toc))
    written = []
    for i, (p, title, description, lead, body, toc) in enumerate(rendered):
        def nav_item(j):
            q, t = rendered[j][0], rendered[j][1]
            label = 'index.ipynb' if q.parent == ROOT else q.stem
            return (f'    <li{" class=current" if j == i else ""}><a href="{pages[q.name]}"{" aria-current=page" if j == i else ""}>'
                    f'{html.escape(t)}<span class="nbname">{html.escape(label)}</span></a></li>')
        prev = f'<a class="prev" href="{pages[rendered[i-1][0].name]}">← {html.escape(rendered[i-1][1])}</a>' if i > 0 else '<span></span>'
        nxt = f'<a class="next" href="{pages[rendered[i+1][0].name]}">{html.escape(rendered[i+1][1])} →</a>' if i + 1 < len(rendered) else ''
        toc_html = ('<aside class="toc"><p>On this page</p><ol>' + ''.join(f'<li><a href="#{a}">{t}</a></li>' for a, t in toc) + '</ol></aside>') if toc else ''
        page = PAGE.format(
            title=html.escape(title), project=html.escape(settings.get('lib_name', 'docs')),
            tagline=html.escape(settings.get('description', '')), katex=katex, git_url=html.escape(settings.get('git_url', '#')),
            nav='\n'.join(nav_item(j) for j in range(len(rendered))), nb_rel=html.escape(str(p.relative_to(ROOT))),
            description=lead,
            description_attr=html.escape(re.sub(r'[`*$\\]', '', description)), body=body, prev=prev, next=nxt, toc=toc_html)
        target = out / pages[p.name]
        target.write_text(page)
        written.append(target)
    print(f"wrote {len(written)} pages to {out}/ (open {out / 'index.html'})")
    return written

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=None, help="output folder (default: settings.ini's doc_path, _docs)")
    parser.add_argument('--no-exec', action='store_true', help="do not execute the notebooks: pages show only API docs and stored outputs")
    parser.add_argument('--workers', type=int, default=2, help="notebooks processed at once (default 2)")
    parser.add_argument('--force', action='store_true', help="ignore the cache of processed notebooks")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else ROOT / _settings().get('doc_path', '_docs')
    os.chdir(ROOT)
    build(out, execute=not args.no_exec, workers=args.workers, force=args.force)

if __name__ == '__main__':
    main()
