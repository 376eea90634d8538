"""Data-parallel meta-training over torch.distributed: 2 CPU ranks with gloo (launched by torchrun) take the same
meta-steps as one process with twice the meta-batch."""
import shutil, subprocess, sys
import torch

SCRIPT = '''
import sys, torch, torch.distributed as dist
from feedback_plasticity.core import preset, override
from feedback_plasticity.meta import meta_train, world
torch.set_num_threads(1)
dist.init_process_group('gloo')
cfg = override(preset('tiny'), **{'meta.steps': 4, 'meta.meta_batch': 2, 'meta.eval_every': 0, 'dtype': 'float64'})
result = meta_train(cfg, sys.argv[1], progress=False)
rank, size = world()
assert size == 2
torch.save({k: v.detach() for k, v in result.theta.items()}, f"{sys.argv[1]}/theta_rank{rank}.pt")
dist.barrier()                      # both ranks done before either tears gloo down (one rank closing its pairs while the
dist.destroy_process_group()        # other still uses them aborted a rank once, "terminate called without an active exception")
'''

def test_two_gloo_ranks_equal_one_process_with_twice_the_meta_batch(tmp_path):
    from feedback_plasticity.core import preset, override, load_checkpoint
    from feedback_plasticity.meta import meta_train
    script = tmp_path / 'train.py'; script.write_text(SCRIPT)
    run = tmp_path / 'run'; run.mkdir()
    torchrun = shutil.which('torchrun') or 'torchrun'
    out = subprocess.run([torchrun, '--standalone', '--nproc_per_node', '2', str(script), str(run)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    ranks = [torch.load(run / f'theta_rank{r}.pt') for r in (0, 1)]
    single = meta_train(override(preset('tiny'), **{'meta.steps': 4, 'meta.meta_batch': 4, 'meta.eval_every': 0, 'dtype': 'float64'}),
                        progress=False).theta
    for k, v in single.items():
        torch.testing.assert_close(ranks[0][k], ranks[1][k], rtol=0, atol=0)          # every rank holds the same theta
        torch.testing.assert_close(ranks[0][k], v.detach(), rtol=1e-9, atol=1e-12)     # ... the single process's, to rounding
    assert (run / 'checkpoint.pt').exists() and load_checkpoint(run / 'checkpoint.pt')['step'] == 4   # written by rank 0
