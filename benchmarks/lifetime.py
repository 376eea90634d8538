"""Seconds and peak memory of one meta-gradient through a lifetime, on the paper's configs (DESIGN §7).

For a config (`paper_sine`: 9 dense layers, 400 steps of 32 points; `paper_omniglot`: 6 frozen 128-channel convs on
84x84 images, then dense 1152 -> 128 -> 1000, 25 single-image steps and a query of 25) and M lifetimes per meta-step:
forward + backward of `lifetime(...).query_loss.sum()` on each engine (`compute.engine`): the reversible backward (the
default), the same with its plastic layers on the package's fused C++ kernels (`fused`; built once per machine), plain
autograd, and
by the slow reference `reference_lifetime` (M = 1; on a few steps only for sine, reported per step and extrapolated), and for
conv configs the floor under all of them: the frozen convs alone, forward and backward on the episode's stream and query images.
Two more rows time a lifetime without a graph, as the evaluations run it (forward only, under `torch.no_grad`): on torch's
steps (`no_grad`) and on the fused kernels (`no_grad_fused`: the `fused` engine's `run`).
Seconds are per *lifetime* (a meta-step's time / M). Each measurement runs in its own subprocess, so its peak RSS
(`ru_maxrss`) is its own. Prints one table and writes it as JSON with the machine named.

How close to the machine's limit: the script also measures, in one more process, this machine's float32 matmul
throughput (a 2048^3 product), its memory bandwidth (adding two 256 MB tensors into a third), and the time of
exactly the matrix products one lifetime must do, at the lifetime's own shapes (`lifetime_products`). It prints
three floors under the measured time: the products at the machine's peak, the products at the speed this machine's BLAS
reaches on the lifetime's (small) shapes, and the memory traffic that one pass over the plastic weights per step
costs forward and backward at that bandwidth; and the fast path's time as a multiple of each.

Usage: `python benchmarks/lifetime.py --config paper_sine [--lifetimes 1 8 32] [--no-grad] [--out benchmarks/results/sine_lifetime.json]`
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
    # the engine: plain autograd, the reversible walk, or the walk on the fused C++ kernels (lifetimes without a graph: its plain steps)
    cfg.compute.engine = {'autograd': 'autograd', 'fused': 'fused', 'no_grad_fused': 'fused'}.get(path, 'reversible')
    no_graph = path in ('no_grad', 'no_grad_fused')                            # a lifetime as the evaluations run it: forward only
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
        if no_graph:
            with torch.no_grad(): run(theta, episode, cfg)
        else: run(theta, episode, cfg).query_loss.sum().backward()
        if i: seconds.append(time.perf_counter() - start)   # the first is a warm-up
    return {'path': path, 'lifetimes': M, 'steps': steps, 'seconds': statistics.median(seconds), 'all_seconds': seconds,
            'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

def lifetime_products(config: str, M: int) -> list[tuple[str, tuple, int]]:
    """The matrix products of one meta-gradient of M lifetimes of `config`: `(kind, shape, count)` per distinct product.

    Plastic dense layer (b examples, n_in -> n_out), per step: forward z = a W^T and the rule's H = post^T a;
    backward G += dz^T a, da = dz W (not below the first plastic layer), H again to undo the step, da = post E
    (not below the first plastic layer) and dpost = a E^T: 7 products of b n_in n_out multiply-adds (5 for the first
    plastic layer). Frozen layers run once on the episode's N images: forward, and backward for the weights and
    (except the first layer) the input: 3 (2 for the first layer) times the forward's multiply-adds."""
    from feedback_plasticity.core import preset
    from feedback_plasticity.feedback import build_layers
    cfg = preset(config)
    task, layers = cfg.task, build_layers(cfg.net)
    T, b, N = task.n_tasks * task.steps_per_task, task.batch, M * (task.n_tasks * task.steps_per_task * task.batch + task.n_tasks * task.query_per_task)
    first_plastic = min(layer.index for layer in layers if layer.plastic)
    products = []
    for layer in layers:
        passes = 2 if layer.index == 1 else 3
        if layer.plastic:
            per_step = 5 if layer.index == first_plastic else 7
            products.append(('bmm', (M, b, layer.n_in, layer.n_out), per_step * T))
        elif layer.kind == 'conv':
            products.append(('conv', (N, *layer.in_shape, layer.n_out, layer.kernel, layer.stride), passes))
        else:
            products.append(('mm', (N, layer.n_in, layer.n_out), passes))
    return products

def multiply_adds(kind: str, shape: tuple) -> int:
    "Multiply-adds of one forward product of `kind` and `shape` (as in `lifetime_products`)."
    if kind == 'conv':
        N, C, H, W, K, k, s = shape
        return N * ((H - k) // s + 1) * ((W - k) // s + 1) * K * C * k * k
    return __import__('math').prod(shape)

def measure_limits(config: str, M: int, threads: int) -> dict:
    "In this process: peak matmul GFLOP/s, memory bandwidth, and the seconds of one lifetime's products at their own shapes."
    import torch, torch.nn.functional as F
    torch.set_num_threads(threads)
    def best_of(f, repeats=5):
        f(); times = []
        for _ in range(repeats):
            start = time.perf_counter(); f(); times.append(time.perf_counter() - start)
        return min(times)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    peak = 2 * 2048 ** 3 / best_of(lambda: a @ b) / 1e9
    x, y, z = (torch.randn(2 ** 26) for _ in range(3))                      # 256 MB each
    bandwidth = 3 * x.numel() * 4 / best_of(lambda: torch.add(x, y, out=z)) / 1e9
    del x, y, z
    seconds_of_products, flops = 0.0, 0
    for kind, shape, count in lifetime_products(config, M):
        if kind == 'bmm':                                                      # one of the step's products, at its shape
            Mb, n, n_in, n_out = shape
            left, right = torch.randn(Mb, n, n_in), torch.randn(Mb, n_in, n_out)
            seconds = best_of(lambda: torch.bmm(left, right), 20)
        elif kind == 'conv':                                                   # forward; backward counted as (count - 1) forwards
            N, C, H, W, K, k, s = shape
            images, weight = torch.randn(N, C, H, W), torch.randn(K, C, k, k)
            seconds = best_of(lambda: F.conv2d(images, weight, stride=s), 2)
        else:
            N, n_in, n_out = shape
            left, right = torch.randn(N, n_in), torch.randn(n_in, n_out)
            seconds = best_of(lambda: left @ right)
        seconds_of_products += count * seconds
        flops += 2 * count * multiply_adds(kind, shape)
    return {'peak_gflops': peak, 'bandwidth_gbs': bandwidth, 'flops_per_meta_step': flops, 'products_seconds': seconds_of_products}

def floors(limits: dict, config: str, M: int, seconds_per_lifetime: float) -> dict:
    "The three floors per lifetime (see the module's doc) and the measured time as a multiple of each."
    from feedback_plasticity.core import preset
    from feedback_plasticity.feedback import build_layers
    cfg = preset(config)
    layers, task = build_layers(cfg.net), cfg.task
    plastic_weights = sum(layer.n_in * layer.n_out for layer in layers if layer.plastic)
    T = task.n_tasks * task.steps_per_task
    # per step: read W and eta, write W (forward); read W, eta, G, d_eta, write W, G, d_eta (backward): 10 float32 passes
    traffic = 10 * 4 * plastic_weights * T
    out = {'flops_at_peak': limits['flops_per_meta_step'] / M / (limits['peak_gflops'] * 1e9),
           'products_at_their_shapes': limits['products_seconds'] / M,
           'memory_traffic': traffic / (limits['bandwidth_gbs'] * 1e9), 'traffic_gb_per_lifetime': traffic / 1e9}
    out['times_floor'] = {k: seconds_per_lifetime / out[k] for k in ('flops_at_peak', 'products_at_their_shapes', 'memory_traffic')}
    return out

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
    parser.add_argument('--no-fused', action='store_true', help='skip the reversible path on the fused kernels (compute.engine=fused)')
    parser.add_argument('--no-grad', action='store_true', help='also time lifetimes without a graph (no_grad, no_grad_fused)')
    parser.add_argument('--only', nargs='+', default=None,
                        help='measure only these paths (of reversible, fused, autograd, no_grad, no_grad_fused, reference, frozen)')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args()
    from feedback_plasticity.core import preset
    task = preset(args.config).task
    steps = args.steps or task.n_tasks * task.steps_per_task
    if args.worker:
        if args.worker == 'limits': print(json.dumps(measure_limits(args.config, args.lifetimes[0], args.threads))); return
        print(json.dumps(measure(args.config, args.worker, args.lifetimes[0], steps, args.repeats, args.threads))); return
    reference_steps = args.reference_steps or (2 if args.config == 'paper_sine' else steps)
    info = machine(args.threads)
    print(f"{args.config}, lifetimes of {steps} steps x {task.batch} examples, forward + meta-gradient backward (no_grad rows: forward only); "
          f"{info['cpu']}, {info['cores']} cores, {args.threads} torch threads, torch {info['torch']}, load average {info['load_average_at_start']}")
    wanted = lambda path: args.only is None or path in args.only
    rows = []
    for M in args.lifetimes:
        for path, skip in (('reversible', False), ('fused', args.no_fused), ('autograd', args.no_autograd or M != 1),
                           ('no_grad', not (args.no_grad or args.only)), ('no_grad_fused', args.no_fused or not (args.no_grad or args.only))):
            if wanted(path) and not skip: rows.append(in_subprocess(args.config, path, M, steps, args.repeats, args.threads))
    if wanted('reference'): rows.append(in_subprocess(args.config, 'reference', 1, reference_steps, 1, args.threads))
    if preset(args.config).net.conv_channels and wanted('frozen'):   # the frozen convs alone (M = 1): the floor under every path
        rows.append(in_subprocess(args.config, 'frozen', 1, steps, args.repeats, args.threads))
    for row in rows:
        row['seconds_per_lifetime'] = row['seconds'] * steps / row['steps'] / row['lifetimes']
        row['extrapolated'] = row['steps'] != steps
    fast = rows[0]
    print(f"\n{'path':<14}{'M':>4}{'steps run':>10}{'s/lifetime':>12}{'lifetimes/s':>13}{'x M=1 fast':>12}{'peak RSS MB':>13}")
    for row in rows:
        row['speedup_over_reversible_M1'] = fast['seconds_per_lifetime'] / row['seconds_per_lifetime']
        mark = '*' if row['extrapolated'] else ''
        print(f"{row['path']:<14}{row['lifetimes']:>4}{row['steps']:>10}{row['seconds_per_lifetime']:>11.3f}{mark:1}"
              f"{1 / row['seconds_per_lifetime']:>13.2f}{row['speedup_over_reversible_M1']:>12.2f}{row['peak_rss_mb']:>13.0f}")
    reference = next((row for row in rows if row['path'] == 'reference'), None)
    if reference and reference['extrapolated']:
        print(f"* run on {reference['steps']} steps: {reference['seconds'] / reference['steps']:.2f} s per step, x {steps} steps "
              f"(its peak RSS is for {reference['steps']} steps only)")
    # memory against the lifetime's length: the reversible backward stores no weights per step
    walk = rows[0]['path'] if rows[0]['path'] in ('reversible', 'fused') else 'reversible'
    by_steps = {T: in_subprocess(args.config, walk, 1, T, 1, args.threads)['peak_rss_mb'] for T in (max(1, steps // 4), steps)}
    print(f'{walk} path, peak RSS by lifetime length (M = 1): ' + ', '.join(f"T={T}: {mb:.0f} MB" for T, mb in by_steps.items()))
    # how close to the machine's limits, for each M measured on the fast path
    limits = {M: in_subprocess(args.config, 'limits', M, steps, 1, args.threads) for M in args.lifetimes}
    first = limits[args.lifetimes[0]]
    print(f"this machine: float32 matmul {first['peak_gflops']:.0f} GFLOP/s (2048^3), memory {first['bandwidth_gbs']:.1f} GB/s (a + b into c, 256 MB each)")
    print(f"{'path':<12}{'M':>4}{'s/lifetime':>12}{'GFLOP':>8}{'@peak':>8}{'@shapes':>9}{'memory':>8}   measured / floor (@peak, @shapes, memory)")
    for row in rows:
        if row['path'] not in ('reversible', 'fused') or row['steps'] != steps: continue
        M = row['lifetimes']
        row['floors'] = floors(limits[M], args.config, M, row['seconds_per_lifetime'])
        f = row['floors']
        print(f"{row['path']:<12}{M:>4}{row['seconds_per_lifetime']:>12.3f}{limits[M]['flops_per_meta_step'] / M / 1e9:>8.1f}{f['flops_at_peak']:>8.3f}"
              f"{f['products_at_their_shapes']:>9.3f}{f['memory_traffic']:>8.3f}   "
              + ', '.join(f"{v:.1f}x" for v in f['times_floor'].values()))
    print(f"target (DESIGN §7): {TARGETS[args.config]}")
    result = {'config': args.config, 'steps': steps, 'batch': task.batch, 'machine': info, 'rows': rows, 'target': TARGETS[args.config],
              'walk_peak_rss_by_steps': {'path': walk, **by_steps}, 'limits': {str(M): v for M, v in limits.items()}}
    out = Path(args.out or f"benchmarks/results/{args.config.removeprefix('paper_')}_lifetime.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")

if __name__ == '__main__':
    main()
