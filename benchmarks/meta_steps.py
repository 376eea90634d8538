"""Meta-steps per second of the CPU-sized sine network of the long runs (`flp curve sine`), against the 15-minute target.

Issue 18's target: 20,000 meta-steps of a CPU-sized sine net (widths up to 64) in at most 15 minutes on a 2-core
machine, for FLP and for OML, i.e. 22 meta-steps per second. For each learner of `curve_preset('sine', 'cpu')` (the net
32x5, 96, 32, 32, 1, one lifetime of 400 steps per meta-step) on each engine that runs it, this times whole meta-steps
(`meta_step`: draw an episode, the lifetime forward and backward, checks, Adam) on one thread, each case in its own
subprocess: first one case at a time, then two at once (one per core, as the curve run's `workers=2` trains them).
It prints seconds per meta-step, meta-steps per second, minutes for 20,000, and the ratio to the target.

The authors' code took 1.84 s per meta-step of this width-32 net (measured beside the package on this machine when issue
18 was filed; it is not in this repository, so it is not rerun here).

Usage: `python benchmarks/meta_steps.py [--steps 60] [--out benchmarks/results/meta_steps.json]`
"""
from __future__ import annotations
import argparse, json, os, platform, statistics, subprocess, sys, time
from pathlib import Path

TARGET_MINUTES, STEPS = 15.0, 20000
CASES = [('flp_authors', 'fused'), ('flp_authors', 'reversible'), ('oml', 'reversible'), ('oml', 'autograd')]

def measure(learner: str, engine: str, steps: int) -> dict:
    "In this process: seconds per meta-step of `learner` on `engine` (median over `steps` after 5 warm-up steps), one thread."
    import torch
    torch.set_num_threads(1)
    from feedback_plasticity.core import override
    from feedback_plasticity.feedback import init_theta
    from feedback_plasticity.curves import curve_preset
    from feedback_plasticity.experiments import learner_config
    from feedback_plasticity.lifetime import engine_for
    from feedback_plasticity.meta import make_optimizer, meta_step
    from feedback_plasticity.tasks import make_episode
    cfg = override(learner_config(curve_preset('sine', 'cpu'), learner), **{'compute.engine': engine})
    theta = init_theta(cfg, torch.Generator().manual_seed(0))
    optimizer, episodes = make_optimizer(theta, cfg), torch.Generator().manual_seed(0)
    seconds = []
    for step in range(steps + 5):
        start = time.perf_counter()
        meta_step(theta, optimizer, cfg, make_episode(cfg, cfg.meta.meta_batch, episodes), step)
        if step >= 5: seconds.append(time.perf_counter() - start)
    return {'learner': learner, 'engine': engine, 'ran_on': engine_for(cfg).name, 'widths': list(cfg.net.dense_widths),
            'T': cfg.task.n_tasks * cfg.task.steps_per_task, 'M': cfg.meta.meta_batch, 'seconds_per_step': statistics.median(seconds)}

def start(case: tuple, steps: int) -> subprocess.Popen:
    code = (f'import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import meta_steps; '
            f'print(json.dumps(meta_steps.measure({case[0]!r}, {case[1]!r}, {steps})))')
    return subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, 'OMP_NUM_THREADS': '1'})

def finish(p: subprocess.Popen) -> dict:
    out, err = p.communicate()
    if p.returncode: raise RuntimeError(err[-2000:])
    return json.loads(out.strip().splitlines()[-1])

def show(row: dict, together: str = '') -> None:
    s = row['seconds_per_step']
    minutes = s * STEPS / 60
    print(f"{row['learner']:<13}{row['engine']:<12}{row['ran_on']:<12}{together:<10}{s:>9.3f}{1 / s:>9.1f}{minutes:>10.1f}{minutes / TARGET_MINUTES:>10.2f}")

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--steps', type=int, default=60, help='timed meta-steps per case (after 5 warm-up steps)')
    parser.add_argument('--out', type=Path, default=None)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
          f"one thread per case; target: {STEPS} meta-steps in {TARGET_MINUTES:.0f} minutes")
    print(f"{'learner':<13}{'engine':<12}{'ran on':<12}{'':<10}{'s/step':>9}{'steps/s':>9}{'min/20k':>10}{'x target':>10}")
    alone = []
    for case in CASES:
        alone.append(finish(start(case, args.steps))); show(alone[-1], 'alone')
    pair = [('flp_authors', 'fused'), ('oml', 'reversible')]                   # the curve run's two workers, one per core
    together = [finish(p) for p in [start(case, args.steps) for case in pair]]
    for row in together: show(row, 'together')
    if args.out: args.out.write_text(json.dumps({'alone': alone, 'together': together, 'target_minutes': TARGET_MINUTES,
                                                 'load_average': os.getloadavg()}, indent=1))

if __name__ == '__main__': main()
