"""Fast meta-training on a GPU: mixed precision, torch.compile and CUDA graphs, each against plain eager float32 (one prepared run).

For `paper_sine` (9 dense layers, 400 steps of 32 points; real sine episodes) and `paper_omniglot` (6 frozen 128-channel convs on
84x84, dense 1152 -> 128 -> 1000, 25 single-image steps; random images, as benchmarks/lifetime.py) at M = 1, 8, 32 lifetimes per
meta-step: seconds per lifetime (median of up to `--repeats` timed calls after one warm-up call, synchronized) and peak GPU
memory (`torch.cuda.max_memory_allocated`) of one meta-gradient, `lifetime(theta, episode, cfg).query_loss.sum().backward()`,
and its error against eager float32 on the same theta and episode (relative norm of the difference, per parameter group:
W, b, eta, B, c, s). The presets start at eta = 0; here eta = 1e-8 (sine: 1e-7 already diverges to NaN within 400 steps
of plain Oja) and 1e-4 (Omniglot), so that the plastic steps do something.
Variants (`PARTS`, in priority order): eager float32 with TF32 off (the preset's backward, the baseline, and the other one);
TF32 matmuls and convs; bf16 autocast around the forward; torch.compile of `represent` (the frozen convs), of `inner_step`
(one plastic step, autograd backward) or of `forward_step` / `backward_step` (the reversible walk's steps, as the dropped `meta.compile` did);
the whole forward + backward captured as one CUDA graph (autograd backward; replayed); the slow `reference_lifetime` (M = 1;
sine on 2 steps, extrapolated). `--budget` seconds are split over the parts by weight (what a part leaves goes to the
later ones); a measurement predicted to overrun its part's share is skipped, one that runs over is stopped (SIGALRM), and
errors (out of memory, compile failures) are recorded: the script goes on. `gpu_speed.json` and `gpu_speed.md` under
`--out` are rewritten after every measurement.

Usage: python benchmarks/gpu_speed.py --out OUT [--budget 330] [--device cuda] [--lifetimes 1 8 32] [--smoke]
       (--smoke: tiny widths and few steps, M = 1 2 4, for a check on a CPU: python benchmarks/gpu_speed.py --out /tmp/s --smoke --device cpu)
"""
from __future__ import annotations
import argparse, contextlib, json, logging, os, platform, signal, statistics, subprocess, sys, time, traceback
from pathlib import Path
import torch
import feedback_plasticity.lifetime as LT
import feedback_plasticity.reversible as RV
from feedback_plasticity.core import preset, override, get_device
from feedback_plasticity.feedback import init_theta
from feedback_plasticity.lifetime import Episode, random_episode
from feedback_plasticity.tasks import make_episode

OTHER = {'reversible': 'autograd', 'autograd': 'reversible'}
# (config, variant, mode, backward, precision, compiled functions of feedback_plasticity.lifetime or .reversible, weight ~ expected H100 seconds)
# backward: 'preset' (the preset's compute.engine), 'other', or a name. The first part of each config is its baseline.
PARTS = [
    ('paper_omniglot', 'eager fp32', 'eager', 'preset', 'fp32', (), 10),
    ('paper_sine', 'eager fp32', 'eager', 'preset', 'fp32', (), 35),
    ('paper_sine', 'reference', 'reference', 'preset', 'fp32', (), 8),
    ('paper_omniglot', 'reference', 'reference', 'preset', 'fp32', (), 5),
    ('paper_sine', 'eager fp32', 'eager', 'other', 'fp32', (), 25),
    ('paper_omniglot', 'eager fp32', 'eager', 'other', 'fp32', (), 10),
    ('paper_omniglot', 'tf32', 'eager', 'preset', 'tf32', (), 8),
    ('paper_omniglot', 'bf16 autocast', 'eager', 'preset', 'bf16', (), 8),
    ('paper_sine', 'tf32', 'eager', 'preset', 'tf32', (), 20),
    ('paper_sine', 'bf16 autocast', 'eager', 'preset', 'bf16', (), 8),   # the reversible Function is not autocast-aware: expect an error
    ('paper_sine', 'bf16 autocast', 'eager', 'autograd', 'bf16', (), 20),
    ('paper_sine', 'CUDA graph', 'cudagraph', 'autograd', 'fp32', (), 25),
    ('paper_omniglot', 'CUDA graph', 'cudagraph', 'autograd', 'fp32', (), 10),
    ('paper_omniglot', 'compile represent', 'compile', 'preset', 'fp32', ('represent',), 25),
    ('paper_omniglot', 'compile represent+inner_step', 'compile', 'preset', 'fp32', ('represent', 'inner_step'), 20),
    ('paper_sine', 'compile forward_step/backward_step', 'compile', 'reversible', 'fp32', ('forward_step', 'backward_step'), 35),
    ('paper_sine', 'compile inner_step', 'compile', 'autograd', 'fp32', ('inner_step',), 35),
]
COMPILED = {}          # name -> torch.compile'd function, kept so that a later part reuses its compiled code

class Timeout(BaseException): pass      # not an Exception: torch's own `except Exception` (e.g. in compile) must not swallow it

@contextlib.contextmanager
def time_box(seconds: float):
    "Raise `Timeout` in the main thread after `seconds`, and again every second (one raised in a finalizer is swallowed)."
    def alarm(*_): raise Timeout(f'stopped after its time box of {seconds:.0f} s')
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01), 1.0)    # between Python bytecodes: a CUDA backward finishes first
    try: yield
    finally: signal.setitimer(signal.ITIMER_REAL, 0); signal.signal(signal.SIGALRM, old)

@contextlib.contextmanager
def settings(precision: str, names: tuple):
    "TF32 on for 'tf32' only (off otherwise), and the functions `names` of feedback_plasticity.lifetime compiled."
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == 'tf32'
    home = {n: LT if hasattr(LT, n) else RV for n in names}                # the module whose calls go through the name
    originals = {n: getattr(home[n], n) for n in names}
    for n in names: setattr(home[n], n, COMPILED.setdefault(n, torch.compile(originals[n])))
    try: yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        for n, f in originals.items(): setattr(home[n], n, f)

def configs(smoke: bool, device) -> dict:
    "The two paper configs on `device`, with a small eta that stays finite (tiny widths and few steps with `smoke`)."
    sine = override(preset('paper_sine'), **{'device': str(device), 'plasticity.eta_init': 1e-8})
    omniglot = override(preset('paper_omniglot'), **{'device': str(device), 'plasticity.eta_init': 1e-4})
    if smoke:
        sine = override(sine, **{'net.dense_widths': '16,16,16,1', 'task.steps_per_task': 2})
        omniglot = override(omniglot, **{'net.conv_channels': '4,4,4,4,4,4', 'net.dense_widths': '16,20'})
    return {'paper_sine': sine, 'paper_omniglot': omniglot}

DATA = {}
def data(cfg, name: str, M: int, device) -> tuple[dict, Episode]:
    "theta and an episode of M lifetimes for config `name`, seeded, the same for every variant (cached)."
    if (name, M) not in DATA:
        g, task = torch.Generator().manual_seed(0), cfg.task
        if task.name == 'sine': episode = make_episode(cfg, M, g)        # synthetic: no data files needed
        else: episode = random_episode(cfg, M, task.n_tasks * task.steps_per_task, task.batch, task.n_tasks * task.query_per_task, g)
        DATA[name, M] = init_theta(cfg, torch.Generator().manual_seed(0), device), episode.to(device)
    return DATA[name, M]

def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize()

def meta_gradient(run, theta: dict, episode: Episode, cfg, device, bf16: bool):
    "A function doing one meta-gradient: grads of theta set to None, forward (under bf16 autocast if asked), backward."
    def call():
        for v in theta.values(): v.grad = None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = run(theta, episode, cfg).query_loss.sum()
        loss.backward()
    return call

def cuda_graph(call):
    "`call` captured as one CUDA graph after a warm-up call on a side stream; the graph (its `replay` redoes the whole call)."
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side): call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph): call()      # grads are None, so backward allocates them in the graph's memory pool
    return graph

def timed(call, device, repeats: int, soft: float, setup=None) -> dict:
    "Seconds of a first call (after `setup()`, e.g. compile or capture) and the median of up to `repeats` more (fewer past `soft` s)."
    sync(device); start = time.perf_counter()
    if setup is not None:
        call = setup()
    call(); sync(device)
    first, seconds = time.perf_counter() - start, []
    while len(seconds) < repeats and (not seconds or time.perf_counter() - start < soft):
        sync(device); t = time.perf_counter(); call(); sync(device)
        seconds.append(time.perf_counter() - t)
    return {'first_call_s': first, 'seconds': statistics.median(seconds), 'all_seconds': seconds}

def errors(theta, reference: dict | None) -> dict:
    "Relative error ||g - g_ref|| / ||g_ref|| of the meta-gradient per parameter group (W, b, eta, B, c, s)."
    if reference is None: return {}
    groups = {}
    for k, r in reference.items():
        g = theta[k].grad
        if g is None: return {'missing': float('inf')}
        diff, norm = groups.get(theta.kind_of(k), (0.0, 0.0))
        groups[theta.kind_of(k)] = (diff + (g.float() - r).pow(2).sum().item(), norm + r.pow(2).sum().item())
    return {group: (d / n) ** 0.5 if n > 0 else d ** 0.5 for group, (d, n) in groups.items()}

def guess(own: list, base: dict, M: int) -> float | None:
    "A value at M from this variant's (M, value) points (linear through the last two; one point scaled like `base`, the baseline's {M: value}), else `base`'s."
    if len(own) >= 2:
        (m0, v0), (m1, v1) = own[-2:]
        return max(v1, v1 + (v1 - v0) * (M - m1) / (m1 - m0))
    if own: return own[0][1] * (base[M] / base[own[0][0]] if M in base and own[0][0] in base else 1)
    return base.get(M)

def skip_reason(mode: str, precision: str, device, oom: bool, seconds: float | None, peak: float | None, left: float) -> str | None:
    "Why a measurement is not run: needs CUDA, out of memory (seen at a smaller M, or predicted), or would overrun its time."
    total = torch.cuda.get_device_properties(device).total_memory / 2 ** 20 if device.type == 'cuda' else None
    if (mode == 'cudagraph' or precision == 'tf32') and device.type != 'cuda': return 'needs CUDA'
    if oom: return 'out of memory at a smaller M'
    if left < 1: return 'no time left'
    if total and peak and peak > 0.95 * total: return f'predicted out of memory ({peak / 1024:.0f} GiB)'
    if seconds and 2 * seconds > left: return f'would overrun (about {2 * seconds:.0f} s, {max(left, 0):.0f} s left)'

def measure(part: tuple, cfg, M: int, steps: int, args, device, left: float, soft: float, refs: dict) -> dict:
    "Time one meta-gradient of `part` at M (within `left` s), its peak memory and its error against the baseline's."
    name, variant, mode, _, precision, names, _ = part
    theta, episode = data(cfg, name, M, device)
    if args.fail and args.fail in f'{name} {variant}': raise RuntimeError(f'injected by --fail {args.fail!r}')
    if mode == 'reference': episode = Episode(episode.x[:, :steps], episode.y[:, :steps], episode.x_query, episode.y_query)
    if device.type == 'cuda': torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    call = meta_gradient(LT.reference_lifetime if mode == 'reference' else LT.lifetime, theta, episode, cfg, device, precision == 'bf16')
    setup = (lambda: cuda_graph(call).replay) if mode == 'cudagraph' else None
    with time_box(left), settings(precision, names):
        row = timed(call, device, args.repeats, soft, setup)
    if device.type == 'cuda':
        row['peak_mb'], row['peak_reserved_mb'] = torch.cuda.max_memory_allocated() / 2 ** 20, torch.cuda.max_memory_reserved() / 2 ** 20
    if mode != 'reference':
        if part is refs['baseline'][name]:
            row['baseline'] = True
            refs[name, M] = {k: v.grad.detach().float().clone() for k, v in theta.items() if v.grad is not None}
        row['error_by_group'] = errors(theta, refs.get((name, M)))
        row['max_rel_error'] = max(row['error_by_group'].values(), key=lambda e: e if e == e else float('inf'), default=None)
    return row

def measure_part(part: tuple, cfgs: dict, args, device, deadline: float, refs: dict, report: dict, out: Path):
    "Every M of one part within its time share (ends by `deadline`); adds a row per M to the report, written at once."
    name, variant, mode, backward, precision, names, _ = part
    cfg = cfgs[name]
    backward = {'preset': cfg.compute.engine, 'other': OTHER[cfg.compute.engine]}.get(backward, backward)
    cfg = override(cfg, **{'compute.engine': backward})
    T = cfg.task.n_tasks * cfg.task.steps_per_task
    steps = (2 if cfg.task.name == 'sine' else T) if mode == 'reference' else T
    times, peaks, oom = [], [], False
    Ms = [1] if mode == 'reference' else args.lifetimes
    for i, M in enumerate(Ms):
        row = {'config': name, 'variant': variant, 'mode': mode, 'backward': 'autograd' if mode == 'reference' else backward,
               'precision': precision, 'compiled': list(names), 'M': M, 'steps_run': steps, 'steps': T}
        base = [r for r in report['rows'] if r['config'] == name and r.get('baseline')]
        base_seconds = {r['M']: r['seconds'] for r in base}
        left = deadline - time.monotonic()
        row['started_s'], row['time_box_s'] = time.monotonic() - args.start, left
        # one call's seconds: a CUDA graph's setup is an eager call and a capture, like the baseline's
        seconds = guess(times if mode != 'cudagraph' else [], base_seconds if mode != 'reference' else {}, M)
        peak = max((v * M / m for m, v in peaks), default=None)                                # proportional to M: on the safe side
        reason = skip_reason(mode, precision, device, oom, seconds, peak, left)
        if reason: row['status'] = 'skipped: ' + reason
        else:
            try:
                row.update(measure(part, cfg, M, steps, args, device, left, left / (len(Ms) - i), refs))
                row['seconds_per_lifetime'] = row['seconds'] * T / steps / M
                row['status'] = 'ok' + (f' (run on {steps} of {T} steps, extrapolated)' if steps != T else '')
                times.append((M, row['seconds'])); peaks.append((M, row.get('peak_mb') or 0))
            except (Exception, Timeout) as e:
                oom = isinstance(e, torch.OutOfMemoryError) or 'out of memory' in str(e)
                stopped = isinstance(e, Timeout) or 'Timeout: ' in str(e)                       # compile wraps it
                row['status'] = ('timed out: ' if stopped else 'error: ') + f"{type(e).__name__}: {(str(e).strip() or ' ').splitlines()[0][:200]}"
                row['traceback'] = traceback.format_exc().splitlines()[-8:]
                if names and not stopped: torch._dynamo.reset(); COMPILED.clear()
            finally:
                for v in DATA.get((name, M), ({}, None))[0].values(): v.grad = None
                if device.type == 'cuda': torch.cuda.empty_cache()
        report['used_s'] = time.monotonic() - args.start
        row['wall_s'] = report['used_s'] - row['started_s']
        report['rows'].append(row)
        summarize(report)
        write(report, out)
        print(line(row), flush=True)
        if row['status'] == 'skipped: needs CUDA': break

def summarize(report: dict):
    "Speedups over the baseline at the same M, and lifetimes per second at the largest M over M = 1, per variant."
    rows = [r for r in report['rows'] if 'seconds_per_lifetime' in r]
    for r in rows:
        base = [b for b in rows if b.get('baseline') and b['config'] == r['config'] and b['M'] == r['M']]
        r['speedup_vs_baseline'] = base[0]['seconds_per_lifetime'] / r['seconds_per_lifetime'] if base else None
    scaling = {}
    for r in rows:
        scaling.setdefault((r['config'], r['variant'], r['backward']), {})[r['M']] = 1 / r['seconds_per_lifetime']
    report['lifetimes_per_s'] = [{'config': c, 'variant': v, 'backward': b, 'by_M': by_M,
                                  'largest_M_over_M1': by_M[max(by_M)] / by_M[1] if 1 in by_M and len(by_M) > 1 else None}
                                 for (c, v, b), by_M in scaling.items()]

def fmt(x, spec: str) -> str:
    return '-' if x is None else format(x, spec)

COLUMNS = ('config', 'variant', 'backward', 'M', 's/lifetime', 'lifetimes/s', 'x baseline', 'peak GPU MB', 'first call s',
           'max rel err (group)', 'status')
def cells(r: dict) -> list:
    spl, err = r.get('seconds_per_lifetime'), r.get('error_by_group') or {}
    worst = max(err, key=lambda g: err[g] if err[g] == err[g] else float('inf')) if err else None    # NaN is the worst
    return [r['config'].removeprefix('paper_'), r['variant'], r['backward'], str(r['M']), fmt(spl, '.4f'), fmt(spl and 1 / spl, '.2f'),
            fmt(r.get('speedup_vs_baseline'), '.2f'), fmt(r.get('peak_mb'), '.0f'), fmt(r.get('first_call_s'), '.2f'),
            f"{err[worst]:.1e} ({worst})" if worst else '-', r['status']]

def line(r: dict) -> str:
    return '  '.join(f'{c}={v}' for c, v in zip(COLUMNS, cells(r)))

def write(report: dict, out: Path):
    "gpu_speed.json and gpu_speed.md under `out` (rewritten after every measurement)."
    (out / 'gpu_speed.json').write_text(json.dumps(report, indent=1, default=str))
    m = report['machine']
    text = [f"# gpu_speed: {m['gpu'] or m['device']}", '',
            f"torch {m['torch']}, CUDA {m['cuda']}, cuDNN {m['cudnn']}, {m['cpu_count']} CPUs; budget {report['budget_s']:.0f} s, "
            f"used {report.get('used_s', 0):.0f} s; command `{report['command']}`", '', '```', m['nvidia_smi'] or 'nvidia-smi: n/a', '```', '',
            'Seconds per lifetime = median seconds of one meta-gradient (forward + backward) / M; x baseline = speedup over the '
            "config's first row (eager float32, TF32 off, the preset's backward) at the same M; first call = warm-up, including "
            'compile or capture; max rel err = largest ||g - g_eager fp32|| / ||g_eager fp32|| over parameter groups, same theta and episode.', '',
            '| ' + ' | '.join(COLUMNS) + ' |', '|' + '---|' * len(COLUMNS)]
    text += ['| ' + ' | '.join(cells(r)) + ' |' for r in report['rows']]
    text += ['', '| config | variant | backward | lifetimes/s by M | largest M / M = 1 |', '|---|---|---|---|---|']
    text += [f"| {s['config'].removeprefix('paper_')} | {s['variant']} | {s['backward']} | "
             f"{', '.join(f'{M}: {v:.2f}' for M, v in s['by_M'].items())} | {fmt(s['largest_M_over_M1'], '.1f')} |"
             for s in report.get('lifetimes_per_s', [])]
    (out / 'gpu_speed.md').write_text('\n'.join(text) + '\n')

def machine(device) -> dict:
    try: smi = subprocess.run(['nvidia-smi', '--query-gpu=name,memory.total,driver_version', '--format=csv'],
                              capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError): smi = None
    cuda = device.type == 'cuda'
    return {'device': str(device), 'gpu': torch.cuda.get_device_name(device) if cuda else None, 'nvidia_smi': smi,
            'torch': torch.__version__, 'cuda': torch.version.cuda, 'cudnn': torch.backends.cudnn.version() if cuda else None,
            'python': platform.python_version(), 'cpu_count': os.cpu_count(), 'platform': platform.platform()}

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', type=Path, required=True, help='folder for gpu_speed.json and gpu_speed.md')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--budget', type=float, default=None, help='seconds for all measurements (default 330; 100 with --smoke)')
    parser.add_argument('--lifetimes', type=int, nargs='+', default=None, help='M values (default 1 8 32; 1 2 4 with --smoke)')
    parser.add_argument('--repeats', type=int, default=3, help='timed calls after the warm-up, at most')
    parser.add_argument('--only', default='', help="run only the parts whose 'config variant' contains this text")
    parser.add_argument('--threads', type=int, default=0, help="torch CPU threads (default: torch's; 1 with --smoke)")
    parser.add_argument('--smoke', action='store_true', help='tiny widths and few steps, to check the script on a CPU')
    parser.add_argument('--fail', default='', help="raise an error in the parts whose 'config variant' contains this (tests the error recording)")
    args = parser.parse_args()
    start = args.start = time.monotonic()
    budget = args.budget or (100.0 if args.smoke else 330.0)
    args.lifetimes = args.lifetimes or ([1, 2, 4] if args.smoke else [1, 8, 32])
    device = get_device(args.device)
    if args.threads or args.smoke: torch.set_num_threads(args.threads or 1)    # 2 threads on a busy 2-core machine: tiny bmm's crawl
    logging.getLogger('torch._functorch._aot_autograd').setLevel(logging.ERROR)  # a failed compile is recorded, not logged in full
    for option in ('recompile_limit', 'cache_size_limit'):     # compiled functions see many layer shapes: never fall back to eager
        if hasattr(torch._dynamo.config, option): setattr(torch._dynamo.config, option, 64)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {'command': 'python benchmarks/gpu_speed.py ' + ' '.join(sys.argv[1:]), 'machine': machine(device), 'budget_s': budget,
              'smoke': args.smoke, 'rows': []}
    print(f"{report['machine']['gpu'] or device}, torch {torch.__version__}, CUDA {torch.version.cuda}; budget {budget:.0f} s", flush=True)
    cfgs = configs(args.smoke, device)
    parts = [p for p in PARTS if args.only in f'{p[0]} {p[1]}']
    refs = {'baseline': {name: next(p for p in PARTS if p[0] == name) for name in cfgs}}
    for i, part in enumerate(parts):
        left = budget - (time.monotonic() - start)
        share = left * part[-1] / sum(p[-1] for p in parts[i:])
        measure_part(part, cfgs, args, device, time.monotonic() + share, refs, report, args.out)
    report['used_s'] = time.monotonic() - start
    write(report, args.out)
    print(f"used {report['used_s']:.0f} s of {budget:.0f}; wrote {args.out / 'gpu_speed.json'} and {args.out / 'gpu_speed.md'}", flush=True)

if __name__ == '__main__':
    main()
