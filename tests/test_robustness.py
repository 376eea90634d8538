"""Bad input and faults at the command line: each gives one line on stderr and exit code 2 (or the right result), and
nothing a user made is lost. The cases a tester found (issue 20); API-level twins live in the notebooks."""
import json, subprocess
import pytest
import torch
from feedback_plasticity.core import load_checkpoint

TINY = ['--preset', 'tiny', '--no-progress', 'eval_runs=2', 'search_runs=2', 'lr_grid=0.01', 'meta.steps=2']

def flp(*args, cwd=None):
    return subprocess.run(['flp', *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=900)

def one_line_error(out, says: str):
    "Exit code 2 and a single line on stderr that contains `says`."
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], out.stderr[-2000:]

def snapshot(folder):
    return {p: p.read_bytes() for p in folder.rglob('*') if p.is_file()}

@pytest.mark.parametrize('override, says', [
    ('meta.steps=0', 'meta.steps=0 is not allowed: it must be positive'),
    ('meta.steps=-3', 'meta.steps=-3 is not allowed'),
    ('meta.lr_weights=-1', 'meta.lr_weights=-1.0 is not allowed: it must be zero or more'),
    ('plasticity.eta_init=nan', 'plasticity.eta_init=nan is not allowed: every number must be finite'),
    ('learners=nonesuch', "unknown learner 'nonesuch'"),
    ('task.batch=0', 'task.batch=0 is not allowed'),
    ('meta.meta_batch=-1', 'meta.meta_batch=-1 is not allowed'),
    ('meta.eval_lifetimes=0', 'meta.eval_lifetimes=0 is not allowed'),
    ('net.dense_widths=0,1', 'net.dense_widths=(0, 1) is not allowed'),
    ('meta.checkpoint_every=0', 'meta.checkpoint_every=0 is not allowed'),
    ('eval_runs=0', 'eval_runs=0 is not allowed: it must be at least 2'),
])
def test_bad_values_are_refused_before_any_work(tmp_path, override, says):
    out = flp('sine', *TINY, override, '--run-dir', tmp_path / 'run')
    one_line_error(out, says)
    assert not (tmp_path / 'run').exists()                                   # refused before a folder or a step

def test_a_run_folder_is_never_overwritten(tmp_path):
    run = tmp_path / 'run'
    assert flp('sine', *TINY, 'learners=oml', '--run-dir', run).returncode == 0
    before = snapshot(run)
    one_line_error(flp('sine', *TINY, 'learners=oml', 'seed=5', '--run-dir', run), 'already holds a run; continue it with --resume')
    assert snapshot(run) == before
    # --resume with a changed config names what changed, and changes nothing
    one_line_error(flp('sine', *TINY, 'learners=oml', 'seed=5', '--run-dir', run, '--resume'), 'seed changed')
    assert snapshot(run) == before

def test_two_runs_in_the_same_second_get_their_own_folders(tmp_path):
    from argparse import Namespace
    import feedback_plasticity.cli as cli
    class Frozen(cli.datetime):
        @classmethod
        def now(cls, tz=None): return cls(2026, 1, 2, 3, 4, 5)
    args = Namespace(resume=False, run_dir=None)
    original, cli.datetime = cli.datetime, Frozen
    try:
        import os; cwd = os.getcwd(); os.chdir(tmp_path)
        first, second = cli.new_run_dir(args, None, 'sine-tiny'), cli.new_run_dir(args, None, 'sine-tiny')
    finally: cli.datetime = original; os.chdir(cwd)
    assert first != second and (tmp_path / first).is_dir() and (tmp_path / second).is_dir()
    assert str(second) == 'runs/sine-tiny-20260102-030405-2'

def test_resume_needs_a_run(tmp_path):
    one_line_error(flp('sine', *TINY, '--resume', '--run-dir', tmp_path / 'typo'), 'holds no run to continue (no such folder)')
    (tmp_path / 'empty').mkdir()
    one_line_error(flp('sine', *TINY, '--resume', '--run-dir', tmp_path / 'empty'), 'no config.json in it')

def test_a_folder_that_cannot_be_written(tmp_path):
    (tmp_path / 'a_file').write_text('')
    one_line_error(flp('sine', *TINY, '--run-dir', tmp_path / 'a_file' / 'run'), 'cannot write the run to')

def test_a_truncated_checkpoint_resumes_from_the_one_before(tmp_path):
    run, common = tmp_path / 'run', [*TINY, 'learners=oml', 'meta.checkpoint_every=1']
    assert flp('sine', *common, '--run-dir', run).returncode == 0
    latest = run / 'learners' / 'oml' / 'checkpoint.pt'
    assert load_checkpoint(latest.with_name('checkpoint.prev.pt'))['step'] == 1
    latest.write_bytes(latest.read_bytes()[:300])                            # a copy gone wrong
    out = flp('sine', *[a for a in common if a != 'meta.steps=2'], 'meta.steps=3', '--run-dir', run, '--resume')
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'resuming from the checkpoint before it (checkpoint.prev.pt, meta-step 1)' in out.stdout
    assert load_checkpoint(latest)['step'] == 3 and latest.with_name('checkpoint.pt.damaged').exists()

def test_overrides_are_accepted_anywhere(tmp_path):
    out = flp('sine', 'meta.steps=2', '--preset', 'tiny', 'eval_runs=2', '--no-progress', 'learners=oml', '--run-dir', tmp_path / 'r',
              'search_runs=2')
    assert out.returncode == 0, out.stderr[-2000:]
    saved = json.loads((tmp_path / 'r' / 'config.json').read_text())
    assert saved['config']['meta']['steps'] == 2 and saved['eval_runs'] == 2

def test_a_diverged_learner_is_reported_and_sets_the_exit_code(tmp_path):
    out = flp('sine', *TINY, 'learners=flp_oja,oml', 'plasticity.eta_init=10', 'plasticity.eta_bound=0', 'plasticity.normalize_pre=false',
              '--run-dir', tmp_path / 'run')
    assert out.returncode == 3, out.stderr[-2000:]
    assert 'diverged: FLP (Oja): meta-training: meta-step 0' in out.stderr and 'No checkpoint was written before this' in out.stderr
    results = json.loads((tmp_path / 'run' / 'results.json').read_text(), parse_constant=lambda c: pytest.fail(f'{c} in results.json'))
    assert 'FLP (Oja)' in results['diverged'] and 'OML' not in results['diverged'] and results['training']['oml']['diverged'] is None

def test_list_describes_every_field():
    out = flp('sine', '--preset', 'tiny', '--list')
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and len(lines) > 50
    assert all('  # ' in line for line in lines), [line for line in lines if '  # ' not in line]
    assert any(line.startswith('meta.steps=') and line.endswith('# meta-steps') for line in lines)

def test_workers_are_never_silent(tmp_path):
    out = flp('sine', *TINY, 'learners=flp_oja,oml', 'workers=2', 'meta.steps=3', '--run-dir', tmp_path / 'run')
    assert out.returncode == 0, out.stderr[-2000:]
    assert '[oml] meta-step 3/3: meta-loss' in out.stdout and '[flp_oja] meta-step 3/3' in out.stdout
