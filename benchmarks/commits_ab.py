"""Two checkouts of the package, timed side by side in one run: seconds per meta-gradient of one lifetime on each engine.

For judging a refactor ("no slowdown"): each round runs every (checkout, engine) case in its own subprocess, importing
the package from that checkout, in alternating order; the ratio new / old is taken per round and its median reported,
so that a machine whose speed drifts compares like with like. Configs of checkouts from before the `compute` section
(`meta.fused`, `meta.lifetime_backward`) are set through their old fields.

With `--snapshot RUN_DIR/learners/LEARNER/theta_STEP.pt` it times that meta-trained learner instead (its run's config,
real episodes of its task): a trained net's plasticity is what decides, for Oja's rule, how many chunks the walk replays
rather than undoes (the safety fallback), which an initial net never shows.

Usage: `python benchmarks/commits_ab.py OLD_CHECKOUT NEW_CHECKOUT [--engines reversible fused] [--rounds 3] [--widths ...]
[--snapshot results/sine-40k-bounded/learners/flp_authors_bounded/theta_040000.pt]`
"""
from __future__ import annotations
import argparse, json, os, statistics, subprocess, sys
from pathlib import Path

def trained(snapshot: str) -> tuple:
    "The config and meta-parameters of a snapshot of `flp curve` (`RUN_DIR/learners/LEARNER/theta_STEP.pt`)."
    from feedback_plasticity.curves import _experiment
    from feedback_plasticity.experiments import learner_config
    from feedback_plasticity.core import load_checkpoint
    path = Path(snapshot)
    exp, _ = _experiment(path.parents[2])
    return learner_config(exp, path.parent.name), {k: v.requires_grad_() for k, v in load_checkpoint(path)['theta'].items()}

def measure(engine: str, widths: str, steps: int, repeats: int, snapshot: str | None = None) -> float:
    "In this process: the median seconds of `repeats` meta-gradients (after one warm-up) of one sine lifetime on `engine`."
    import time, torch
    torch.set_num_threads(1)
    from feedback_plasticity.core import preset, override, ConfigError
    from feedback_plasticity.feedback import init_theta
    from feedback_plasticity.lifetime import lifetime, random_episode
    from feedback_plasticity.tasks import make_episode
    cfg, theta = trained(snapshot) if snapshot else (override(preset('paper_sine'), **{'net.dense_widths': widths, 'plasticity.eta_init': 1e-4}), None)
    try: cfg = override(cfg, **{'compute.engine': engine})
    except ConfigError:                                                            # a checkout from before the compute section
        cfg = override(cfg, **{'meta.lifetime_backward': 'autograd' if engine == 'autograd' else 'reversible', 'meta.fused': engine == 'fused'})
    g = torch.Generator().manual_seed(0)
    if snapshot: episode = make_episode(cfg, 1, g)                                 # one lifetime of the run's own task
    else:
        theta = init_theta(cfg, g)
        episode = random_episode(cfg, 1, steps, cfg.task.batch, cfg.task.n_tasks * cfg.task.query_per_task, g)
    seconds = []
    for i in range(repeats + 1):
        for v in theta.values(): v.grad = None
        start = time.perf_counter()
        lifetime(theta, episode, cfg).query_loss.sum().backward()
        if i: seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)

def in_subprocess(checkout: Path, engine: str, args) -> float:
    env = {**os.environ, 'PYTHONPATH': str(checkout.resolve()), 'OMP_NUM_THREADS': '1'}
    out = subprocess.run([sys.executable, '-c', 'import sys, json; sys.path.insert(0, sys.argv[1]); import feedback_plasticity as fp; '
                          'assert fp.__file__.startswith(sys.argv[1]), fp.__file__; from importlib.machinery import SourceFileLoader; '
                          f'm = SourceFileLoader("ab", "{Path(__file__).resolve()}").load_module(); '
                          f'print(json.dumps(m.measure({engine!r}, {args.widths!r}, {args.steps}, {args.repeats}, {args.snapshot!r})))', str(checkout.resolve())],
                         env=env, capture_output=True, text=True, cwd=str(checkout))
    if out.returncode: raise RuntimeError(f"{checkout} {engine}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('old', type=Path); parser.add_argument('new', type=Path)
    parser.add_argument('--engines', nargs='+', default=['reversible', 'fused'])
    parser.add_argument('--widths', default='32,32,32,32,32,96,32,32,1', help="the sine net's dense widths (default: the CPU-sized net of results/sine-20k)")
    parser.add_argument('--steps', type=int, default=400, help='steps of the lifetime')
    parser.add_argument('--repeats', type=int, default=3); parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--snapshot', default=None, help='a snapshot of flp curve to time instead of an initial net (its run config, its task)')
    parser.add_argument('--out', type=Path, default=None)
    args = parser.parse_args()
    if args.snapshot: args.snapshot = str(Path(args.snapshot).resolve())
    rows = {e: {'old': [], 'new': []} for e in args.engines}
    for r in range(args.rounds):
        for engine in args.engines:
            order = ('old', 'new') if r % 2 == 0 else ('new', 'old')
            for which in order: rows[engine][which].append(in_subprocess(getattr(args, which), engine, args))
            print(f"round {r + 1}, {engine}: old {rows[engine]['old'][-1]:.3f} s, new {rows[engine]['new'][-1]:.3f} s", flush=True)
    what = f"the snapshot {args.snapshot}" if args.snapshot else f"widths {args.widths}, {args.steps} steps"
    print(f"\nseconds per meta-gradient of one lifetime ({what}, 1 thread; median of {args.rounds} rounds)")
    print(f"{'engine':<12}{'old':>9}{'new':>9}{'new / old':>11}")
    for engine, t in rows.items():
        t['ratio'] = statistics.median(n / o for n, o in zip(t['new'], t['old']))
        print(f"{engine:<12}{statistics.median(t['old']):>9.3f}{statistics.median(t['new']):>9.3f}{t['ratio']:>11.3f}")
    if args.out: args.out.write_text(json.dumps({'old': str(args.old), 'new': str(args.new), 'widths': args.widths, 'steps': args.steps, 'snapshot': args.snapshot, 'rows': rows}, indent=1))

if __name__ == '__main__': main()
