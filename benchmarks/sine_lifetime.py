"""Seconds and peak memory of one meta-gradient through a lifetime on the paper's sine config (DESIGN §7).

For each way of taking the meta-gradient (forward + backward of `lifetime(...).query_loss.sum()`, M = 1 lifetime of
400 steps of 32 examples): the reversible backward (the default), plain autograd, and the slow reference
`reference_lifetime` (run on a few steps only, reported per step and extrapolated to the full lifetime). Each
measurement runs in its own subprocess, so its peak RSS (`ru_maxrss`) is its own. Prints one table and writes it as
JSON. Usage: `python benchmarks/sine_lifetime.py [--out benchmarks/results/sine_lifetime.json] [--repeats 3]`.
"""
from __future__ import annotations
import argparse, json, os, platform, resource, statistics, subprocess, sys, time
from pathlib import Path

THREADS = 2

def measure(path: str, steps: int, repeats: int) -> dict:
    "In this process: seconds per forward + backward (median of `repeats` after one warm-up) and peak RSS for `path`."
    import torch
    torch.set_num_threads(THREADS)
    from feedback_plasticity.core import preset
    from feedback_plasticity.feedback import init_theta
    from feedback_plasticity.lifetime import Episode, lifetime, reference_lifetime
    from feedback_plasticity.tasks import make_episode
    cfg = preset('paper_sine')
    cfg.meta.lifetime_backward = 'autograd' if path == 'autograd' else 'reversible'
    g = torch.Generator().manual_seed(0)
    theta = init_theta(cfg, g)
    episode = make_episode(cfg, 1, g)
    episode = Episode(episode.x[:, :steps], episode.y[:, :steps], episode.x_query, episode.y_query)
    run = reference_lifetime if path == 'reference' else lifetime
    seconds = []
    for i in range(repeats + 1):
        for v in theta.values(): v.grad = None
        start = time.perf_counter()
        run(theta, episode, cfg).query_loss.sum().backward()
        if i: seconds.append(time.perf_counter() - start)   # the first is a warm-up
    return {'path': path, 'steps': steps, 'seconds': statistics.median(seconds), 'all_seconds': seconds,
            'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

def in_subprocess(path: str, steps: int, repeats: int) -> dict:
    "`measure` in a fresh Python process (its own peak RSS)."
    out = subprocess.run([sys.executable, __file__, '--worker', path, '--steps', str(steps), '--repeats', str(repeats)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])

def machine() -> dict:
    import torch
    model = next((line.split(':', 1)[1].strip() for line in Path('/proc/cpuinfo').read_text().splitlines()
                  if line.startswith('model name')), platform.processor()) if Path('/proc/cpuinfo').exists() else platform.processor()
    return {'cpu': model, 'cores': os.cpu_count(), 'threads': THREADS, 'torch': torch.__version__, 'python': platform.python_version(),
            'load_average_at_start': os.getloadavg()}

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='benchmarks/results/sine_lifetime.json', help='where to write the table as JSON')
    parser.add_argument('--repeats', type=int, default=3, help='timed repeats per path (after one warm-up)')
    parser.add_argument('--steps', type=int, default=400, help='inner steps of the lifetime (the paper: 400)')
    parser.add_argument('--reference-steps', type=int, default=2, help='steps the slow reference runs (extrapolated)')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.steps, args.repeats))); return
    info = machine()
    print(f"paper sine config, M=1 lifetime of {args.steps} steps x 32 examples, forward + meta-gradient backward; "
          f"{info['cpu']}, {info['cores']} cores, {THREADS} torch threads, torch {info['torch']}, load average {info['load_average_at_start']}")
    rows = [in_subprocess('reversible', args.steps, args.repeats), in_subprocess('autograd', args.steps, args.repeats),
            in_subprocess('reference', args.reference_steps, 1)]
    memory = [in_subprocess('reversible', steps, 1) for steps in (args.steps // 4, args.steps)]
    for row in rows:
        row['seconds_per_lifetime'] = row['seconds'] * args.steps / row['steps']
        row['extrapolated'] = row['steps'] != args.steps
    fast = rows[0]
    print(f"\n{'path':<12}{'steps run':>10}{'s/lifetime':>12}{'x reversible':>14}{'peak RSS MB':>13}{'x reversible':>14}")
    for row in rows:
        row['time_ratio'] = row['seconds_per_lifetime'] / fast['seconds_per_lifetime']
        row['rss_ratio'] = row['peak_rss_mb'] / fast['peak_rss_mb']
        mark = '*' if row['extrapolated'] else ''
        print(f"{row['path']:<12}{row['steps']:>10}{row['seconds_per_lifetime']:>11.2f}{mark:1}{row['time_ratio']:>14.1f}"
              f"{row['peak_rss_mb']:>13.0f}{row['rss_ratio']:>14.1f}")
    print(f"* run on {args.reference_steps} steps: {rows[2]['seconds'] / rows[2]['steps']:.2f} s per step, x {args.steps} steps "
          f"(its peak RSS is for {args.reference_steps} steps only)")
    print(f"reversible path, peak RSS by lifetime length: " + ', '.join(f"T={m['steps']}: {m['peak_rss_mb']:.0f} MB" for m in memory))
    result = {'config': 'paper_sine', 'lifetimes': 1, 'steps': args.steps, 'batch': 32, 'machine': info, 'rows': rows,
              'reversible_peak_rss_by_steps': {m['steps']: m['peak_rss_mb'] for m in memory},
              'target': {'seconds_per_lifetime': 2.0, 'stretch_seconds_per_lifetime': 1.0, 'peak_rss_mb': 1536}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")

if __name__ == '__main__':
    main()
