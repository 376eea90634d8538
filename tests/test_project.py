"""The project as a newcomer meets it: README commands, CI script, notebooks and package in sync."""
import re, subprocess, sys
from pathlib import Path

def _readme_commands(root):
    block = re.search(r"```bash\n(.*?)```", (root / 'README.md').read_text(), re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith('#')]

def test_readme_shows_two_commands(root):
    commands = _readme_commands(root)
    assert len(commands) == 2, commands
    assert commands[0].endswith('flp sine')            # the main job
    assert 'nbdev_test' in commands[1] and 'pytest' in commands[1]

def test_ci_runs_the_readme_test_command(root):
    assert _readme_commands(root)[1] in (root / '.ci' / 'run').read_text()

def test_readme_is_generated_from_index(root):
    out = subprocess.run([sys.executable, 'tools/make_readme.py', '--check'], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr

def test_exported_package_matches_notebooks(root, tmp_path):
    "nbdev_export leaves the package unchanged: nobody edited the exported .py by hand."
    before = {p.name: p.read_text() for p in (root / 'feedback_plasticity').glob('*.py')}
    subprocess.run(['nbdev_export'], cwd=root, check=True, capture_output=True)
    after = {p.name: p.read_text() for p in (root / 'feedback_plasticity').glob('*.py')}
    assert before == after, sorted(k for k in after if before.get(k) != after[k])

def test_notebooks_are_clean(root):
    "nbdev_clean leaves the notebooks unchanged."
    before = {p.name: p.read_bytes() for p in (root / 'nbs').glob('*.ipynb')}
    subprocess.run(['nbdev_clean'], cwd=root, check=True, capture_output=True)
    after = {p.name: p.read_bytes() for p in (root / 'nbs').glob('*.ipynb')}
    assert before == after, sorted(k for k in after if before.get(k) != after[k])
