"""Write README.md from index.ipynb without quarto: drop hidden cells and nbdev directives, convert to markdown.

Usage: python tools/make_readme.py [--check]   (--check: exit 1 if README.md is out of date)
`nbdev_readme` does the same where quarto is installed.
"""
import re, sys
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parent.parent
DIRECTIVE = re.compile(r'^\s*#\|.*$\n?', re.M)

def readme_text(nb_path: Path = ROOT / 'index.ipynb') -> str:
    "The README markdown for the notebook at `nb_path`."
    nb = nbformat.read(nb_path, as_version=4)
    cells = []
    for cell in nb.cells:
        source = cell.source
        if cell.cell_type == 'code' and re.search(r'^\s*#\|\s*(hide|exporti?|eval:\s*false)\b', source, re.M): continue
        cell.source = DIRECTIVE.sub('', source)
        cells.append(cell)
    nb.cells = cells
    body, _ = MarkdownExporter().from_notebook_node(nb)
    note = '<!-- generated from index.ipynb by tools/make_readme.py: edit the notebook, not this file -->\n\n'
    return note + re.sub(r'\n{3,}', '\n\n', body).strip() + '\n'

if __name__ == '__main__':
    text, readme = readme_text(), ROOT / 'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text() != text:
            sys.exit("README.md is out of date: run python tools/make_readme.py")
        print("README.md is up to date")
    else:
        readme.write_text(text); print(f"wrote {readme}")
