"""Meta-steps on a GPU with and without `compute.cuda_graph` (one prepared run): seconds per meta-step and agreement.

For `paper_sine` and `paper_omniglot` at the given meta-batch sizes M: the seconds of one whole meta-step (`meta_step`:
lifetimes, meta-loss, backward, checks, Adam) in eager mode and replayed from a `GraphedMetaGradient` (capture time
reported apart), median of `--steps` steps on fresh episodes (Omniglot: random images, as benchmarks/lifetime.py); and the largest relative difference of the meta-parameters
after those steps, both runs started from the same theta and fed the same episodes. Every measurement is time-boxed
and errors are recorded; `gpu_meta_step.json` and `.md` under --out are rewritten after each row.

Usage: python benchmarks/gpu_meta_step.py --out OUT [--budget 240] [--steps 5]
"""
from __future__ import annotations
import argparse, json, statistics, sys, time
from pathlib import Path
import torch
from feedback_plasticity.core import preset, override
from feedback_plasticity.feedback import init_theta
from feedback_plasticity.tasks import make_episode
from feedback_plasticity.lifetime import random_episode
from feedback_plasticity.meta import make_optimizer, meta_step, GraphedMetaGradient

CASES = [('paper_sine', 'autograd', 1), ('paper_sine', 'autograd', 8), ('paper_sine', 'reversible', 1),
         ('paper_omniglot', 'autograd', 8), ('paper_omniglot', 'autograd', 32), ('paper_sine', 'autograd', 32)]
ETA = {'paper_sine': 1e-8, 'paper_omniglot': 1e-4}     # plain Oja on the paper sine net diverges from eta = 1e-7 (gpu_speed.py)

def run(name: str, backward: str, M: int, steps: int, graph: bool) -> dict:
    "Time `steps` meta-steps (after one untimed step) and return the final theta."
    cfg = override(preset(name), **{'device': 'cuda', 'meta.meta_batch': M, 'compute.engine': backward,
                                    'plasticity.eta_init': ETA[name]})     # the presets' meta learning rates (eta's: 1e-8, 1e-5)
    theta = init_theta(cfg, torch.Generator().manual_seed(0), 'cuda')
    sine = cfg.task.name == 'sine'
    optimizer, episodes = make_optimizer(theta, cfg), torch.Generator('cuda' if sine else 'cpu').manual_seed(0)
    graphed, capture, seconds = None, 0.0, []
    for step in range(steps + 1):
        episode = make_episode(cfg, M, episodes, 'cuda') if sine else \
            random_episode(cfg, M, cfg.task.n_tasks * cfg.task.steps_per_task, 1, cfg.task.n_tasks * cfg.task.query_per_task, episodes).to('cuda')
        if graph and graphed is None:
            torch.cuda.synchronize(); t = time.perf_counter()
            graphed = GraphedMetaGradient(theta, cfg, episode); torch.cuda.synchronize(); capture = time.perf_counter() - t
        torch.cuda.synchronize(); t = time.perf_counter()
        meta_step(theta, optimizer, cfg, episode, step, graphed)
        torch.cuda.synchronize()
        if step: seconds.append(time.perf_counter() - t)
    return {'seconds': statistics.median(seconds), 'capture': capture, 'theta': {k: v.detach().clone() for k, v in theta.items()},
            'peak_mb': torch.cuda.max_memory_allocated() / 2 ** 20}

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', type=Path, required=True)
    parser.add_argument('--budget', type=float, default=240.0)
    parser.add_argument('--steps', type=int, default=5)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {'gpu': torch.cuda.get_device_name(), 'torch': torch.__version__, 'rows': []}
    lines = ['| config | backward | M | eager s/meta-step | graph s/meta-step | speedup | capture s | max rel diff of theta | peak GPU MB (graph) | status |',
             '|---|---|---|---|---|---|---|---|---|---|']
    t0 = time.time()
    for name, backward, M in CASES:
        row = {'config': name, 'backward': backward, 'M': M}
        if time.time() - t0 > args.budget: row['status'] = 'skipped: no time left'
        else:
            try:
                torch.cuda.reset_peak_memory_stats()
                eager = run(name, backward, M, args.steps, graph=False)
                torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
                graphed = run(name, backward, M, args.steps, graph=True)
                diff = max(((graphed['theta'][k] - eager['theta'][k]).norm() / eager['theta'][k].norm().clamp_min(1e-30)).item()
                           for k in eager['theta'])
                row.update(eager=eager['seconds'], graph=graphed['seconds'], speedup=eager['seconds'] / graphed['seconds'],
                           capture=graphed['capture'], max_rel_diff=diff, peak_mb=graphed['peak_mb'], status='ok')
            except Exception as e:                                           # record and go on (out of memory, capture failures)
                row['status'] = f'error: {type(e).__name__}: {str(e).splitlines()[0][:160]}'
            torch.cuda.empty_cache()
        report['rows'].append(row); print(json.dumps(row), flush=True)
        f = lambda k, fmt: format(row[k], fmt) if k in row else '-'
        lines.append(f"| {name} | {backward} | {M} | {f('eager', '.4f')} | {f('graph', '.4f')} | {f('speedup', '.2f')} | "
                     f"{f('capture', '.1f')} | {f('max_rel_diff', '.1e')} | {f('peak_mb', '.0f')} | {row['status']} |")
        (args.out / 'gpu_meta_step.json').write_text(json.dumps(report, indent=1))
        (args.out / 'gpu_meta_step.md').write_text(f"# meta-steps with and without compute.cuda_graph: {report['gpu']}, torch {report['torch']}\n\n"
                                                   f"command: `python benchmarks/gpu_meta_step.py {' '.join(sys.argv[1:])}`; median of "
                                                   f"{args.steps} meta-steps after one untimed step\n\n" + '\n'.join(lines) + '\n')

if __name__ == '__main__':
    main()
