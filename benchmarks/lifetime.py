"""Seconds and peak memory of one meta-gradient through a lifetime, on the paper's configs (DESIGN §7).

For a config (`paper_sine`: 9 dense layers, 400 steps of 32 points; `paper_omniglot`: 6 frozen 128-channel convs on
84x84 images, then dense 1152 -> 128 -> 1000, 25 single-image steps and a query of 25) and M lifetimes per meta-step:
forward + backward of `lifetime(...).query_loss.sum()` by the reversible backward (the default), by plain autograd, and
by the slow reference `reference_lifetime` (M = 1; on a few steps only for sine, reported per step and extrapolated), and for
conv configs the floor under all of them: the frozen convs alone, forward and backward on the episode's stream and query images.
Seconds are per *lifetime* (a meta-step's time / M). Each measurement runs in its own subprocess, so its peak RSS
(`ru_maxrss`) is its own. Prints one table and writes it as JSON with the machine named.

Usage: `python benchmarks/lifetime.py --config paper_sine [--lifetimes 1 8 32] [--out benchmarks/results/sine_lifetime.json]`
"""
from __future__ import annotations
import argparse, json, os, platform, resource, statistics, subprocess, sys, time
from pathlib import Path
from types import SimpleNamespace

def measure(config: str, path: str, M: int, steps: int, repeats: int, threads: int) -> dict:
    "In this process: seconds per forward + backward (median of `repeats` after one warm-up) and peak RSS for `path`."
    import torch
    torch.set_num_threads(threads)
    from feedback_plasticity.core import preset
    from feedback_plasticity.feedback import init_theta
    from feedback_plasticity.lifetime import Episode, lifetime, reference_lifetime, random_episode
    cfg = preset(config)
    cfg.meta.lifetime_backward = 'autograd' if path == 'autograd' else 'reversible'
    g = torch.Generator().manual_seed(0)
    theta = init_theta(cfg, g)
    task = cfg.task
    # random inputs of the task's shapes: the cost does not depend on the data (labels for classification)
    episode = random_episode(cfg, M, task.n_tasks * task.steps_per_task, task.batch, task.n_tasks * task.query_per_task, g)
    episode = Episode(episode.x[:, :steps], episode.y[:, :steps], episode.x_query, episode.y_query)
    run = reference_lifetime if path == 'reference' else lifetime
    if path == 'frozen':   # the floor: only the frozen layers, forward and backward, on the episode's inputs (stream and query)
        from feedback_plasticity.feedback import build_layers, represent
        layers, images = build_layers(cfg.net), torch.cat([episode.x.flatten(0, 2), episode.x_query.flatten(0, 1)])
        run = lambda theta, episode, cfg: SimpleNamespace(query_loss=represent(theta, images, layers).sum())
    seconds = []
    for i in range(repeats + 1):
        for v in theta.values(): v.grad = None
        start = time.perf_counter()
        run(theta, episode, cfg).query_loss.sum().backward()
        if i: seconds.append(time.perf_counter() - start)   # the first is a warm-up
    return {'path': path, 'lifetimes': M, 'steps': steps, 'seconds': statistics.median(seconds), 'all_seconds': seconds,
            'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

def in_subprocess(config: str, path: str, M: int, steps: int, repeats: int, threads: int) -> dict:
    "`measure` in a fresh Python process (its own peak RSS)."
    out = subprocess.run([sys.executable, __file__, '--config', config, '--worker', path, '--lifetimes', str(M), '--steps', str(steps),
                          '--repeats', str(repeats), '--threads', str(threads)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])

def machine(threads: int) -> dict:
    import torch
    cpuinfo = Path('/proc/cpuinfo')
    model = next((line.split(':', 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith('model name')),
                 platform.processor()) if cpuinfo.exists() else platform.processor()
    return {'cpu': model, 'cores': os.cpu_count(), 'threads': threads, 'torch': torch.__version__, 'python': platform.python_version(),
            'load_average_at_start': os.getloadavg()}

TARGETS = {'paper_sine': {'seconds_per_lifetime': 2.0, 'stretch_seconds_per_lifetime': 1.0, 'peak_rss_mb': 1536},
           'paper_omniglot': {'seconds_per_lifetime': 0.6}}

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default='paper_sine', choices=sorted(TARGETS), help='the preset to measure')
    parser.add_argument('--out', default=None, help='where to write the table as JSON (default: benchmarks/results/<config>_lifetime.json)')
    parser.add_argument('--lifetimes', type=int, nargs='+', default=[1], help='lifetimes per meta-step (M) to measure')
    parser.add_argument('--repeats', type=int, default=3, help='timed repeats per path (after one warm-up)')
    parser.add_argument('--steps', type=int, default=None, help="inner steps of the lifetime (default: the config's)")
    parser.add_argument('--reference-steps', type=int, default=None, help='steps the slow reference runs (extrapolated; default: 2 for sine, all for Omniglot)')
    parser.add_argument('--threads', type=int, default=2, help='torch threads')
    parser.add_argument('--no-autograd', action='store_true', help='skip the plain-autograd path (it needs ~6 GB per sine lifetime)')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args()
    from feedback_plasticity.core import preset
    task = preset(args.config).task
    steps = args.steps or task.n_tasks * task.steps_per_task
    if args.worker:
        print(json.dumps(measure(args.config, args.worker, args.lifetimes[0], steps, args.repeats, args.threads))); return
    reference_steps = args.reference_steps or (2 if args.config == 'paper_sine' else steps)
    info = machine(args.threads)
    print(f"{args.config}, lifetimes of {steps} steps x {task.batch} examples, forward + meta-gradient backward; "
          f"{info['cpu']}, {info['cores']} cores, {args.threads} torch threads, torch {info['torch']}, load average {info['load_average_at_start']}")
    rows = []
    for M in args.lifetimes:
        rows.append(in_subprocess(args.config, 'reversible', M, steps, args.repeats, args.threads))
        if not args.no_autograd and M == 1: rows.append(in_subprocess(args.config, 'autograd', M, steps, args.repeats, args.threads))
    rows.append(in_subprocess(args.config, 'reference', 1, reference_steps, 1, args.threads))
    if preset(args.config).net.conv_channels:   # the frozen convs alone (M = 1): the floor under every path
        rows.append(in_subprocess(args.config, 'frozen', 1, steps, args.repeats, args.threads))
    for row in rows:
        row['seconds_per_lifetime'] = row['seconds'] * steps / row['steps'] / row['lifetimes']
        row['extrapolated'] = row['steps'] != steps
    fast = rows[0]
    print(f"\n{'path':<12}{'M':>4}{'steps run':>10}{'s/lifetime':>12}{'lifetimes/s':>13}{'x M=1 fast':>12}{'peak RSS MB':>13}")
    for row in rows:
        row['speedup_over_reversible_M1'] = fast['seconds_per_lifetime'] / row['seconds_per_lifetime']
        mark = '*' if row['extrapolated'] else ''
        print(f"{row['path']:<12}{row['lifetimes']:>4}{row['steps']:>10}{row['seconds_per_lifetime']:>11.3f}{mark:1}"
              f"{1 / row['seconds_per_lifetime']:>13.2f}{row['speedup_over_reversible_M1']:>12.2f}{row['peak_rss_mb']:>13.0f}")
    reference = next(row for row in rows if row['path'] == 'reference')
    if reference['extrapolated']:
        print(f"* run on {reference['steps']} steps: {reference['seconds'] / reference['steps']:.2f} s per step, x {steps} steps "
              f"(its peak RSS is for {reference['steps']} steps only)")
    # memory against the lifetime's length: the reversible backward stores no weights per step
    by_steps = {T: in_subprocess(args.config, 'reversible', 1, T, 1, args.threads)['peak_rss_mb'] for T in (max(1, steps // 4), steps)}
    print('reversible path, peak RSS by lifetime length (M = 1): ' + ', '.join(f"T={T}: {mb:.0f} MB" for T, mb in by_steps.items()))
    print(f"target (DESIGN §7): {TARGETS[args.config]}")
    result = {'config': args.config, 'steps': steps, 'batch': task.batch, 'machine': info, 'rows': rows, 'target': TARGETS[args.config],
              'reversible_peak_rss_by_steps': by_steps}
    out = Path(args.out or f"benchmarks/results/{args.config.removeprefix('paper_')}_lifetime.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")

if __name__ == '__main__':
    main()
