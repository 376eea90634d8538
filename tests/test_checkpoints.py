"""Nothing a user made is lost: atomic checkpoints, safe loading, the last good state after a failure."""
import os, pickle
import pytest, torch
from feedback_plasticity.core import save_checkpoint, load_checkpoint, CheckpointError, preset, override
from feedback_plasticity.meta import meta_train, NonFiniteError

def test_crash_during_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / 'checkpoint.pt'
    save_checkpoint(path, {'step': 1, 'w': torch.ones(3)})
    real_save = torch.save
    def crash(obj, f, *a, **k):
        f.write(b'half a checkpoint'); raise KeyboardInterrupt   # killed mid-write
    monkeypatch.setattr(torch, 'save', crash)
    with pytest.raises(KeyboardInterrupt): save_checkpoint(path, {'step': 2, 'w': torch.zeros(3)})
    monkeypatch.setattr(torch, 'save', real_save)
    assert load_checkpoint(path)['step'] == 1
    assert os.listdir(tmp_path) == ['checkpoint.pt']              # no temporary file left behind

class Payload:
    def __reduce__(self): return (print, ('this would run on load',))

def test_loading_never_runs_code(tmp_path):
    path = tmp_path / 'evil.pt'
    with open(path, 'wb') as f: torch.save({'theta': Payload()}, f)
    with pytest.raises(CheckpointError, match='damaged or not a feedback_plasticity checkpoint'):
        load_checkpoint(path)

def test_truncated_and_missing_files_get_clear_errors(tmp_path):
    path = tmp_path / 'checkpoint.pt'
    save_checkpoint(path, {'w': torch.randn(100)})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match='is damaged or not a feedback_plasticity checkpoint .* start a new run'): load_checkpoint(path)
    with pytest.raises(CheckpointError, match='no checkpoint at'): load_checkpoint(tmp_path / 'nope.pt')

def test_diverging_run_keeps_last_good_checkpoint(tmp_path):
    cfg = override(preset('tiny'), **{'meta.steps': 30, 'meta.lr_eta': 0.5, 'meta.checkpoint_every': 1, 'meta.eval_every': 0})
    with pytest.raises(NonFiniteError, match=r'meta-step \d+'):
        meta_train(cfg, tmp_path, progress=False)
    good = load_checkpoint(tmp_path / 'checkpoint.pt')
    assert good['step'] >= 1
    assert all(torch.isfinite(v).all() for v in good['theta'].values())

def test_committed_runs_of_earlier_versions_still_load():
    "Every committed run folder loads, those written before the compute section (meta.fused, meta.lifetime_backward, ...) migrated."
    import json
    from pathlib import Path
    from feedback_plasticity.core import config_from_dict
    from feedback_plasticity.experiments import SineExperiment, ClassificationExperiment
    from feedback_plasticity.lifetime import engine_for
    runs = sorted(Path(__file__).parent.parent.glob('results/*/config.json'))
    assert len(runs) >= 5, runs
    engines = {}
    for path in runs:
        saved = json.loads(path.read_text())
        kind = SineExperiment if saved['config']['task']['name'] == 'sine' else ClassificationExperiment
        exp = config_from_dict(saved, kind)
        engine_for(exp.config)                                               # an engine runs it
        old = saved['config']['meta']
        if 'fused' in old: assert exp.config.compute.engine == ('fused' if old['fused'] else 'reversible' if old['lifetime_backward'] == 'reversible' else 'autograd')
        engines[path.parent.name] = exp.config.compute.engine
    assert engines['sine-20k'] == 'fused' and engines['omniglot-40k'] == 'autograd', engines

def test_every_committed_checkpoint_loads_as_its_learners_theta():
    "Run folders made before θ became a `Theta` (issue 19) still load: every committed checkpoint and snapshot is a state dict that `as_theta` matches to its learner's config."
    from pathlib import Path
    from feedback_plasticity.curves import _experiment
    from feedback_plasticity.experiments import learner_config
    from feedback_plasticity.continual import Learner
    paths = sorted(Path(__file__).parent.parent.glob('results/*/learners/*/*.pt'))
    assert len(paths) >= 20, paths
    for path in paths:
        exp, _ = _experiment(path.parents[2])
        learner = Learner(path.parent.name, learner_config(exp, path.parent.name), load_checkpoint(path)['theta'])
        assert len(learner.theta.W) == len(learner.cfg.net.dense_widths) + len(learner.cfg.net.conv_channels), path
