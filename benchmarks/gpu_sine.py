"""The GPU check of the sine experiment, as one prepared script (run it where a GPU is lent; it works on a CPU too).

1. Benchmark: seconds and peak memory of one meta-gradient through a lifetime of the paper's sine config
   (9 dense layers of 300/900 units, 400 steps of 32 points) for M = 1 and M = 32 lifetimes, with the reversible
   backward and with plain autograd, side by side.
2. A time-boxed comparison on the paper's network: FLP (stable plasticity), OML and pretrain + SGD, each meta-trained
   for as many meta-steps as fit in its share of `--budget` seconds (the same number for all), evaluated with the
   paper's protocol (50 runs, continual and iid). Writes the run directory under --out.

Usage: python benchmarks/gpu_sine.py --out OUT [--device cuda] [--budget 330] [--smoke]
"""
from __future__ import annotations
import argparse, json, sys, time
from pathlib import Path
import torch
from feedback_plasticity.core import preset, override, get_device
from feedback_plasticity.feedback import init_theta
from feedback_plasticity.lifetime import lifetime
from feedback_plasticity.tasks import make_episode
from feedback_plasticity.meta import meta_train
from feedback_plasticity.experiments import sine_preset, learner_config, run_sine

def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize()

def time_lifetime(cfg, M: int, device, repeats: int = 3) -> dict:
    "Median seconds of forward + backward through M lifetimes, and the peak GPU memory."
    theta = init_theta(cfg, torch.Generator().manual_seed(0), device)
    episode = make_episode(cfg, M, torch.Generator(device).manual_seed(0), device)
    if device.type == 'cuda': torch.cuda.reset_peak_memory_stats()
    seconds = []
    for i in range(repeats + 1):
        for v in theta.values(): v.grad = None
        sync(device); start = time.perf_counter()
        lifetime(theta, episode, cfg).query_loss.sum().backward()
        sync(device)
        if i: seconds.append(time.perf_counter() - start)
    seconds.sort()
    peak = torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == 'cuda' else float('nan')
    return {'M': M, 'backward': cfg.compute.engine, 'seconds': seconds[len(seconds) // 2],
            'seconds_per_lifetime': seconds[len(seconds) // 2] / M, 'peak_gpu_mb': peak}

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', type=Path, required=True)
    parser.add_argument('--device', default='auto')
    parser.add_argument('--budget', type=float, default=330.0, help='seconds of meta-training for the comparison, all learners together')
    parser.add_argument('--meta-batch', type=int, default=32)
    parser.add_argument('--smoke', action='store_true', help='tiny sizes, to check the script on a CPU')
    parser.add_argument('--skip-benchmark', action='store_true', help='only the comparison')
    parser.add_argument('--train-steps-per-task', type=int, default=0, help='minibatches per function in meta-training episodes (0: 40, as evaluated)')
    args = parser.parse_args()
    device = get_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {'device': str(device), 'torch': torch.__version__,
              'gpu': torch.cuda.get_device_name(device) if device.type == 'cuda' else None, 'benchmark': []}
    # 1. benchmark
    base = override(preset('paper_sine'), **{'device': str(device), 'plasticity.eta_init': 1e-4})
    if args.smoke: base = override(base, **{'net.dense_widths': '16,16,1', 'task.steps_per_task': 2})
    for M in (() if args.skip_benchmark else (1, 32)):
        for backward in ('reversible', 'autograd'):
            try: r = time_lifetime(override(base, **{'compute.engine': backward}), M, device)
            except torch.OutOfMemoryError as e:
                r = {'M': M, 'backward': backward, 'seconds': None, 'error': 'out of memory: ' + str(e).split('.')[0]}
            if device.type == 'cuda': torch.cuda.empty_cache()
            report['benchmark'].append(r); print(json.dumps(r), flush=True)
    # 2. time-boxed comparison on the paper's network
    exp = sine_preset('paper')
    exp = override(exp, **{'config.device': str(device), 'config.meta.meta_batch': args.meta_batch, 'config.plasticity.eta_bound': 1.0,
                           'config.plasticity.normalize_pre': True, 'config.meta.lr_eta': 3e-3, 'config.meta.lr_weights': 3e-4,
                           'config.meta.lr_feedback': 3e-4, 'config.meta.lr_strength': 3e-4, 'config.meta.eval_every': 25,
                           'config.meta.eval_lifetimes': 32, 'config.compute.chunk': 20, 'learners': 'flp_oja,oml,pretrain_sgd',
                           'train_steps_per_task': args.train_steps_per_task})
    if args.smoke: exp = override(exp, **{'config.net.dense_widths': '16,16,1', 'eval_runs': 4, 'search_runs': 2, 'config.meta.eval_every': 1})
    per_step = {}
    for learner in ('flp_oja', 'oml'):
        cfg = override(learner_config(exp, learner), **{'meta.steps': 2, 'meta.eval_every': 0,
                                                       'task.steps_per_task': exp.train_steps_per_task or exp.config.task.steps_per_task})
        start = time.perf_counter(); meta_train(cfg, progress=False); per_step[learner] = (time.perf_counter() - start) / 2
    steps = max(2, int(args.budget / (sum(per_step.values()) * 1.15)))
    report['meta_step_seconds'], report['meta_steps'] = per_step, steps
    print(f"seconds per meta-step {per_step}; {steps} meta-steps each", flush=True)
    exp = override(exp, **{'config.meta.steps': steps, 'config.meta.checkpoint_every': steps})
    results = run_sine(exp, args.out / 'paper_net', progress=False,
                       command='python benchmarks/gpu_sine.py ' + ' '.join(sys.argv[1:]))
    report['comparison'] = {k: {o: (v[o]['final_mean'], v[o]['final_ci95']) for o in v} for k, v in results['results'].items()}
    (args.out / 'gpu_sine.json').write_text(json.dumps(report, indent=1))

if __name__ == '__main__':
    main()
