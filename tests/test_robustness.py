"""Bad input and faults at the command line: each gives one line on stderr and exit code 2 (or the right result), and
nothing a user made is lost. The cases a tester found (issue 20); API-level twins live in the notebooks."""
import json, re, subprocess
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
    ('plasticity.eta_init=10', 'plasticity.eta_init=10.0 must lie strictly inside (-eta_bound, eta_bound) = (-1.0, 1.0)'),
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

# ---- data errors come before the run folder (issue 20): a refused run leaves nothing that blocks the corrected one

def flp_env(*args, cwd=None, env=None):
    import os
    return subprocess.run(['flp', *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=900, env={**os.environ, **(env or {})})

def _one_image_per_class(folder):
    from feedback_plasticity.datasets import write_miniimagenet_fixture
    return write_miniimagenet_fixture(folder, per_class=1)

def _shared_classes(folder):
    from feedback_plasticity.datasets import write_miniimagenet_fixture
    data = write_miniimagenet_fixture(folder)
    (data / 'test.csv').write_bytes((data / 'train.csv').read_bytes())        # the test classes are the training classes
    return data

@pytest.mark.parametrize('broken, says', [
    (_one_image_per_class, 'each class has 1 image:'),
    (_shared_classes, 'share 4 classes (e.g. n00000000, n00000001, n00000002); the splits must be disjoint'),
])
def test_a_miniimagenet_data_error_leaves_no_run_folder(tmp_path, broken, says):
    from feedback_plasticity.datasets import write_miniimagenet_fixture
    run, env = tmp_path / 'run', {'FLP_DATA': str(tmp_path / 'cache')}
    out = flp_env('miniimagenet', *TINY, '--data', broken(tmp_path / 'broken'), '--run-dir', run, env=env)
    one_line_error(out, says)
    assert not run.exists() and 'run directory:' not in out.stdout            # refused before the folder was written, and not announced
    # without --run-dir: the folder the command made for itself is removed again
    out = flp_env('miniimagenet', *TINY, '--data', tmp_path / 'broken', cwd=tmp_path, env=env)
    one_line_error(out, says)
    assert not any((tmp_path / 'runs').iterdir())
    # the corrected command runs into the same --run-dir
    out = flp_env('miniimagenet', *TINY, '--data', write_miniimagenet_fixture(tmp_path / 'good'), '--run-dir', run, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith(f'run directory: {run}\n') and (run / 'results.json').exists() and (run / 'training.png').exists()

def test_evaluation_streams_that_do_not_fit_the_data_are_refused_before_training(tmp_path):
    from feedback_plasticity.datasets import write_miniimagenet_fixture
    from feedback_plasticity.core import override, ConfigError
    from feedback_plasticity.experiments import miniimagenet_preset, run_classification
    data = write_miniimagenet_fixture(tmp_path / 'six', per_class=6)       # meta-training's 2 + 2 images fit; the evaluation's 5 + 3 do not
    exp = override(miniimagenet_preset('tiny'), **{'config.task.data_root': str(data)})
    lines = []
    with pytest.raises(ConfigError, match=r'the validation classes have 6 images each, but the evaluation takes 8 of each: stream_pool=5'):
        run_classification(exp, tmp_path / 'run', progress=False, log=lines.append)
    assert not (tmp_path / 'run').exists() and lines == []                   # before any folder, line or meta-step

def test_an_omniglot_data_error_leaves_no_run_folder(tmp_path):
    out = flp_env('omniglot', *TINY, '--data', tmp_path / 'nowhere', '--run-dir', tmp_path / 'run')
    one_line_error(out, f'no Omniglot data at {tmp_path / "nowhere"}')
    assert not (tmp_path / 'run').exists()

def test_a_refused_run_is_not_announced(tmp_path):
    run = tmp_path / 'run'
    assert flp('sine', *TINY, 'learners=oml', '--run-dir', run).returncode == 0
    out = flp('sine', *TINY, 'learners=oml', '--run-dir', run)
    one_line_error(out, 'already holds a run')
    assert 'run directory' not in out.stdout, out.stdout

# ---- training.png in every run folder (issue 20)

def test_training_figure_without_any_history_says_why(tmp_path):
    "meta.eval_every=0 and a learner that diverged at meta-step 0: the figure is written, and says why there are no curves."
    import matplotlib
    from feedback_plasticity.core import override
    from feedback_plasticity.experiments import sine_preset, run_sine, missing_curves
    exp = override(sine_preset('tiny'), **{'learners': 'flp_oja,pretrain_sgd', 'config.meta.steps': 2, 'config.meta.eval_every': 0, 'eval_runs': 2})
    run_sine(exp, tmp_path / 'off', progress=False, log=lambda line: None)
    assert missing_curves(tmp_path / 'off', exp.learners) == {
        'FLP (Oja)': 'no held-out loss recorded (meta.eval_every=0: no evaluation during meta-training)',
        'pretrain + SGD': 'not meta-trained (supervised pretraining: no held-out meta-loss)'}
    diverging = override(exp, **{'learners': 'flp_oja', 'config.meta.eval_every': 1, 'config.plasticity.eta_init': 10.0,
                                 'config.plasticity.eta_bound': 0.0, 'config.plasticity.normalize_pre': False})
    results = run_sine(diverging, tmp_path / 'diverged', progress=False, log=lambda line: None)
    assert results['training']['flp_oja']['diverged_at'] == 0
    assert missing_curves(tmp_path / 'diverged', ['flp_oja'], {'flp_oja': 0}) == {
        'FLP (Oja)': 'diverged at meta-step 0, before its first held-out evaluation'}
    for run in ('off', 'diverged'):
        image = matplotlib.image.imread(tmp_path / run / 'training.png')
        assert image.shape[0] > 80 and image.shape[1] > 400                   # a figure of words, not an empty file

def test_miniimagenet_tiny_writes_a_training_figure(tmp_path):
    from feedback_plasticity.datasets import write_miniimagenet_fixture
    run = tmp_path / 'run'
    out = flp_env('miniimagenet', '--preset', 'tiny', '--no-progress', '--data', write_miniimagenet_fixture(tmp_path / 'mini'),
                  '--run-dir', run, env={'FLP_DATA': str(tmp_path / 'cache')})
    assert out.returncode == 0, out.stderr[-2000:]
    assert (run / 'training.png').stat().st_size > 10_000 and f'training curves: {run / "training.png"}' in out.stdout

# ---- faults in meta-training, at the API (issue 20): each error names what went wrong, and nothing made is lost

from feedback_plasticity.core import preset, override, save_checkpoint, CheckpointError
from feedback_plasticity.meta import meta_train, check_finite, NonFiniteError
from feedback_plasticity.tasks import make_episode
from feedback_plasticity.lifetime import Episode
from feedback_plasticity.feedback import Theta

SMALL = override(preset('tiny'), **{'meta.steps': 2, 'meta.eval_every': 0, 'meta.checkpoint_every': 1, 'device': 'cpu'})

def test_an_exploding_meta_gradient_names_the_step_the_group_and_its_largest_entry():
    "A finite but exploding meta-gradient (the output scaled by 1e9: query loss ~5e9, meta-gradient ~1e21)."
    with pytest.raises(NonFiniteError) as caught:
        meta_train(override(SMALL, **{'net.output_gain': 1e9}), progress=False)
    message, theta = str(caught.value), caught.value.last_good.theta
    assert message.startswith("meta-step 0: the meta-gradient is non-finite or exploding (past 1e+18) in group 'plasticity' (")
    assert 'no meta learning rate has acted yet' in message and 'net.output_gain' in message and '\n' not in message
    for name in ('eta1', 'eta2', 'eta3'):                                    # each tensor's largest entry, by index and value
        grad = theta[name].grad
        flat = int(grad.abs().flatten().argmax())
        index = ', '.join(str(int(i)) for i in torch.unravel_index(torch.tensor(flat), grad.shape))
        assert f"{name}[{index}] = {grad.flatten()[flat].item():.3g}" in message, (name, message)
    # the last good state is the untouched start: the check precedes the step
    start = meta_train(override(SMALL, **{'net.output_gain': 1e9, 'meta.steps': 1}), progress=False, stop_after=0).theta
    for k in start: assert torch.equal(theta[k].detach(), start[k].detach()), k

def test_an_exploding_gradient_in_one_group_is_named_there():
    theta = Theta([('W', 1, torch.zeros(4, 3, requires_grad=True)), ('eta', 1, torch.zeros(4, 3, requires_grad=True))])
    theta['W1'].grad = torch.ones(4, 3); theta['W1'].grad[2, 1] = -1e27; theta['eta1'].grad = torch.full((4, 3), 0.5)
    with pytest.raises(NonFiniteError) as caught: check_finite(torch.tensor(0.7), theta, step=7)
    assert str(caught.value).startswith("meta-step 7: the meta-gradient is non-finite or exploding (past 1e+18) in group 'weights' (W1[2, 1] = -1e+27)")
    assert 'plasticity' not in str(caught.value) and 'eta1' not in str(caught.value)

def test_a_diverging_lifetime_names_the_step_and_the_largest_plasticity_coefficient():
    with pytest.raises(NonFiniteError) as caught:
        meta_train(override(SMALL, **{'plasticity.eta_init': 3.0}), progress=False)
    message = str(caught.value)
    assert message.startswith('meta-step 0: the meta-loss is nan, so a lifetime diverged; largest entry per group:')
    assert 'plasticity eta1[0, 0] = 3' in message and 'lower plasticity.eta_init' in message and '\n' not in message
    assert 'meta learning rate' not in message                                  # at meta-step 0 no meta learning rate has acted

def test_an_exploding_meta_loss_without_plasticity_is_not_blamed_on_it():
    with pytest.raises(NonFiniteError) as caught:
        meta_train(override(SMALL, **{'net.output_gain': 1e19, 'plasticity.eta_learned': False}), progress=False)
    assert str(caught.value).startswith('meta-step 0: the meta-loss is 6.8e+19')
    assert 'plasticity.eta_init' not in str(caught.value) and 'plasticity is off' in str(caught.value) and 'net.output_gain' in str(caught.value)

@pytest.mark.parametrize('broken', ['x', 'y_query'])
def test_non_finite_data_is_named_as_data_and_the_checkpoints_are_kept(tmp_path, broken):
    def draw(cfg, M, generator, device=None):
        episode, step = make_episode(cfg, M, generator, device), len(drawn); drawn.append(step)
        if step < 2: return episode
        fields = {name: t.clone() for name, t in zip(('x', 'y', 'x_query', 'y_query'), episode.tensors())}
        fields[broken].view(-1)[0] = float('nan')
        return Episode(**fields)
    drawn = []
    with pytest.raises(NonFiniteError) as caught:
        meta_train(override(SMALL, **{'meta.steps': 4}), tmp_path, progress=False, draw_episode=draw)
    message = str(caught.value)
    assert message.startswith(f"meta-step 2: the episode's data holds NaN or infinite values (in {broken}); the data is broken, not the learner")
    assert 'plasticity' not in message and not re.search(r'\beta\d', message)      # not blamed on the learner's coefficients
    assert f"The last good state is in {tmp_path / 'checkpoint.pt'} (meta-step 2)" in message
    assert load_checkpoint(tmp_path / 'checkpoint.pt')['step'] == 2 and load_checkpoint(tmp_path / 'checkpoint.prev.pt')['step'] == 1

def test_orphans_of_a_killed_save_are_removed_at_the_next_start(tmp_path):
    meta_train(SMALL, tmp_path, progress=False)
    (tmp_path / 'checkpoint.pt.k2j4x_.tmp').write_bytes(b'half a checkpoint')    # what a save killed mid-write leaves
    (tmp_path / 'notes.txt').write_text('mine'); (tmp_path / 'checkpoint.pt.tmp.bak').write_bytes(b'mine too')
    result = meta_train(override(SMALL, **{'meta.steps': 3}), tmp_path, resume=True, progress=False)
    assert result.step == 3 and load_checkpoint(tmp_path / 'checkpoint.pt')['step'] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ['checkpoint.prev.pt', 'checkpoint.pt', 'checkpoint.pt.tmp.bak', 'history.jsonl', 'notes.txt']
    assert (tmp_path / 'notes.txt').read_text() == 'mine'

def test_a_damaged_checkpoint_without_an_earlier_one_is_one_clear_line(tmp_path):
    meta_train(override(SMALL, **{'meta.steps': 1}), tmp_path, progress=False)
    assert not (tmp_path / 'checkpoint.prev.pt').exists()
    latest = tmp_path / 'checkpoint.pt'
    latest.write_bytes(damaged := latest.read_bytes()[:300])                  # a copy gone wrong
    with pytest.raises(CheckpointError) as caught:
        meta_train(SMALL, tmp_path, resume=True, progress=False)
    message = str(caught.value)
    assert '\n' not in message and message.startswith(f'checkpoint {latest} is damaged or not a feedback_plasticity checkpoint (')
    assert message.endswith('; start a new run, or restore a copy of the file')
    assert latest.read_bytes() == damaged                                     # left as it was: nothing is deleted

def test_a_damaged_checkpoint_resumes_from_the_one_before_without_contradicting_itself(tmp_path):
    meta_train(SMALL, tmp_path, progress=False)
    latest = tmp_path / 'checkpoint.pt'
    latest.write_bytes(damaged := latest.read_bytes()[:300])
    lines = []
    result = meta_train(override(SMALL, **{'meta.steps': 3}), tmp_path, resume=True, progress=False, log=lines.append)
    assert result.step == 3 and load_checkpoint(latest)['step'] == 3
    said = [line for line in lines if 'damaged' in line]
    assert len(said) == 1 and 'resuming from the checkpoint before it (checkpoint.prev.pt, meta-step 1)' in said[0], lines
    assert 'start a new run' not in said[0] and 'restore a copy' not in said[0]
    assert (tmp_path / 'checkpoint.pt.damaged').read_bytes() == damaged      # set aside, never deleted

def test_a_damaged_checkpoint_at_the_command_line(tmp_path):
    run = tmp_path / 'run'
    assert flp('sine', *TINY, 'learners=oml', '--run-dir', run).returncode == 0       # one checkpoint, at the end: no earlier one
    latest = run / 'learners' / 'oml' / 'checkpoint.pt'
    latest.write_bytes(latest.read_bytes()[:300])
    before = snapshot(run)
    out = flp('sine', *[a for a in TINY if a != 'meta.steps=2'], 'meta.steps=3', 'learners=oml', '--run-dir', run, '--resume')
    one_line_error(out, f'checkpoint {latest} is damaged or not a feedback_plasticity checkpoint')
    kept = lambda files: {p: b for p, b in files.items() if p.name not in ('command.txt', 'config.json')}   # those two record the resume
    assert kept(snapshot(run)) == kept(before)                                # the damaged file, the results, the figures: as they were
