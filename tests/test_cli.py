"""`flp sine` end to end: run directory, results file, overrides, resume."""
import json, subprocess, sys
import torch
from feedback_plasticity.core import load_checkpoint

FAST = ['--preset', 'tiny', '--no-progress', 'eval_runs=4', 'search_runs=2', 'lr_grid=0.01,0.1']

def flp(*args, cwd=None):
    return subprocess.run(['flp', *args], capture_output=True, text=True, cwd=cwd, timeout=900)

def test_sine_end_to_end(tmp_path):
    run = tmp_path / 'run'
    out = flp('sine', *FAST, 'meta.steps=6', '--run-dir', str(run))
    assert out.returncode == 0, out.stderr[-3000:]
    assert '| FLP (Oja) |' in out.stdout and '| OML |' in out.stdout and '| scratch SGD |' in out.stdout
    results = json.loads((run / 'results.json').read_text())
    for learner in ['FLP (Oja)', 'FLP (Hebb)', 'OML', 'FLP, no feedback', 'FLP, fixed random feedback', 'pretrain + SGD',
                    'scratch SGD', 'FLP (Oja), plasticity off', "FLP (Oja), authors' eta"]:
        for order in ['continual', 'iid']:
            r = results['results'][learner][order]
            assert r['runs'] == 4 and len(r['per_task_mean']) == 3 and r['final_ci95'] >= 0
    assert json.loads((run / 'config.json').read_text())['config']['meta']['steps'] == 6
    assert (run / 'command.txt').read_text().startswith('flp sine --preset tiny')
    assert (run / 'sine_results.png').stat().st_size > 10_000
    assert (run / 'learners' / 'oml' / 'checkpoint.pt').exists()

def test_bad_overrides_are_rejected_with_the_reason(tmp_path):
    out = flp('sine', '--preset', 'tiny', 'meta.stepz=3', '--run-dir', str(tmp_path / 'r'))
    assert out.returncode == 2 and "unknown config field 'config.meta.stepz'" in out.stderr
    out = flp('sine', '--preset', 'tiny', 'plasticity.rule=bcm')
    assert out.returncode == 2 and "plasticity.rule='bcm' is not a rule; choose one of hebb, oja, sgd" in out.stderr
    assert not (tmp_path / 'r').exists()

def test_resume_gives_the_same_meta_parameters(tmp_path):
    common = [*FAST, 'learners=flp_oja,oml', 'meta.checkpoint_every=2']
    assert flp('sine', *common, 'meta.steps=6', '--run-dir', str(tmp_path / 'straight')).returncode == 0
    assert flp('sine', *common, 'meta.steps=3', '--run-dir', str(tmp_path / 'sliced')).returncode == 0
    out = flp('sine', *common, 'meta.steps=6', '--run-dir', str(tmp_path / 'sliced'), '--resume')
    assert out.returncode == 0, out.stderr[-3000:]
    for learner in ['flp_oja', 'oml']:
        a = load_checkpoint(tmp_path / 'straight' / 'learners' / learner / 'checkpoint.pt')
        b = load_checkpoint(tmp_path / 'sliced' / 'learners' / learner / 'checkpoint.pt')
        assert a['step'] == b['step'] == 6
        for k in a['theta']: assert torch.equal(a['theta'][k], b['theta'][k]), (learner, k)
    # resuming into a different experiment is refused
    out = flp('sine', *common, 'meta.steps=6', 'plasticity.rule=hebb', '--run-dir', str(tmp_path / 'sliced'), '--resume')
    assert out.returncode != 0 and 'different experiment' in out.stderr

def test_learners_trained_in_parallel_workers_match_serial_training(tmp_path):
    "workers=2 trains learners in two processes; each learner's meta-parameters are the ones serial training gives."
    common = [*FAST, 'learners=flp_oja,oml', 'meta.steps=3']
    serial = flp('sine', *common, '--run-dir', str(tmp_path / 'serial'))
    parallel = flp('sine', *common, 'workers=2', '--run-dir', str(tmp_path / 'parallel'))
    assert serial.returncode == 0 and parallel.returncode == 0, parallel.stderr[-3000:]
    assert '[oml] meta-training OML' in parallel.stdout                  # workers report as they go
    for learner in ['flp_oja', 'oml']:
        a = load_checkpoint(tmp_path / 'serial' / 'learners' / learner / 'checkpoint.pt')['theta']
        b = load_checkpoint(tmp_path / 'parallel' / 'learners' / learner / 'checkpoint.pt')['theta']
        for k in a: torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)

from conftest import SHARED_OMNIGLOT

def test_omniglot_end_to_end_on_the_small_splits(tmp_path):
    import os, pytest
    if SHARED_OMNIGLOT is None: pytest.skip("no small Omniglot splits found (set FLP_SMALL_OMNIGLOT)")
    run = tmp_path / 'run'
    env = {**os.environ, 'FLP_DATA': str(tmp_path / 'data')}                  # the decoded-image cache goes here, not to ~/.cache
    out = subprocess.run(['flp', 'omniglot', '--preset', 'tiny', '--no-progress', '--data', str(SHARED_OMNIGLOT), '--run-dir', str(run)],
                         capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OML's protocol" in out.stdout and '| FLP (Oja) |' in out.stdout and '| pretrain + SGD |' in out.stdout
    results = json.loads((run / 'results.json').read_text())
    records = {(r['learner'], r['order'], r['n_way'], r['k_shot']): r for r in results['oml_protocol'] + results['paper_protocol']}
    for learner in ['FLP (Oja)', 'FLP before meta-training', 'OML', 'pretrain + SGD']:
        for order in ['continual', 'iid']:
            for n_way, k_shot in [(10, 15), (85, 15), (5, 1)]:          # 10 classes, all 85 test classes, 5-way 1-shot
                r = records[(learner, order, n_way, k_shot)]
                assert r['runs'] == 3 and 0 <= r['test_accuracy'] <= 1 and r['test_ci95'] >= 0
    assert (run / 'omniglot_results.png').stat().st_size > 10_000
    assert (run / 'learners' / 'flp_oja' / 'checkpoint.pt').exists() and (run / 'learners' / 'oml' / 'checkpoint.pt').exists()
    assert (tmp_path / 'data' / 'omniglot').is_dir()                         # the cache was written where FLP_DATA points

def test_omniglot_with_a_wrong_data_path_says_what_to_do(tmp_path):
    (tmp_path / 'empty').mkdir()
    out = subprocess.run(['flp', 'omniglot', '--preset', 'tiny', '--no-progress', '--data', str(tmp_path / 'empty'), '--run-dir', str(tmp_path / 'r')],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert 'images_background' in out.stderr, out.stderr[-2000:]

def test_miniimagenet_end_to_end_on_a_fixture(tmp_path):
    import os
    from feedback_plasticity.datasets import write_miniimagenet_fixture
    data = write_miniimagenet_fixture(tmp_path / 'mini')                   # 4 training, 2 validation, 2 test classes in the real layout
    env = {**os.environ, 'FLP_DATA': str(tmp_path / 'cache')}
    run = tmp_path / 'run'
    out = subprocess.run(['flp', 'miniimagenet', '--data', str(data), '--preset', 'tiny', '--no-progress', '--run-dir', str(run)],
                         capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert '4 training, 2 validation and 2 test classes' in out.stdout
    results = json.loads((run / 'results.json').read_text())
    assert {r['learner'] for r in results['oml_protocol']} == {'FLP (Oja)', 'FLP, output layer plastic only', 'FLP before meta-training', 'OML', 'pretrain + SGD'}
    assert set(results['lr_search']) == {'oml', 'pretrain_sgd'}
    assert (run / 'miniimagenet_results.png').exists()

def test_miniimagenet_needs_its_data(tmp_path):
    out = flp('miniimagenet', '--preset', 'tiny')
    assert out.returncode == 2 and '--data' in out.stderr
    out = flp('miniimagenet', '--preset', 'tiny', '--data', str(tmp_path / 'nowhere'), '--run-dir', str(tmp_path / 'r'))
    assert out.returncode == 2 and 'nowhere' in out.stderr and 'Traceback' not in out.stderr, out.stderr[-2000:]
