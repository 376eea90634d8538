"""Why FLP's plastic hidden layer fails on long class-incremental streams: test-time variants of a run's meta-trained FLP.

Usage (from the repository root, after `flp omniglot ... --run-dir RUN`): `python RUN/diagnosis/hidden_plasticity.py RUN`.
It loads RUN's meta-trained FLP (`learners/flp_oja/checkpoint.pt`, written by the run and not committed) and
1. evaluates it with OML's protocol (15 drawings per class, tested on the last 5; 20 runs, the run's evaluation seed) at 10 and
   50 classes, class-incremental and iid, as trained and with its hidden layer's plasticity scaled at test time;
2. measures what the stream does to the hidden layer: the mean pairwise cosine of test images' hidden activities and the
   fraction of active units before and after a stream, and how far the hidden weights moved.
Writes `hidden_plasticity.md` beside this script and prints it. One thread; about 10 minutes on a 2-core CPU.
"""
import sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from feedback_plasticity.core import TaskConfig, override
from feedback_plasticity.analysis import run_learners
from feedback_plasticity.continual import Learner, evaluate_classes, mean_ci, with_outputs, frozen_features
from feedback_plasticity.feedback import build_layers, initial_fast, plastic_forward
from feedback_plasticity.lifetime import run_steps
from feedback_plasticity.tasks import task_classes, class_episode

run = Path(sys.argv[1] if len(sys.argv) > 1 else 'results/omniglot-quick')
exp, learners = run_learners(run)
flp = learners['flp_oja']
cfg, theta = flp.cfg, flp.theta
layers = build_layers(cfg.net)
hidden, output = [layer.index for layer in layers if layer.plastic]           # the plastic hidden layer and the readout
test = task_classes(cfg.task, 'test')
seed = exp.config.seed + 12345                                                # the run's evaluation seed

def hidden_eta_times(scale: float) -> dict:
    "θ with the hidden layer's effective η (bound · tanh ρ) multiplied by `scale`."
    bound = cfg.plasticity.eta_bound
    eta = bound * torch.tanh(theta[f'eta{hidden}']) * scale
    return {**theta, f'eta{hidden}': torch.atanh((eta / bound).clamp(-1 + 1e-6, 1 - 1e-6))}

variants = {'as meta-trained': (cfg, theta), 'hidden η × 0.1': (cfg, hidden_eta_times(0.1)),
            'hidden η × 0.01': (cfg, hidden_eta_times(0.01)), 'hidden η = 0 (output layer plastic only)': (cfg, hidden_eta_times(0.0)),
            'Hebb, hidden η = 0': (override(cfg, **{'plasticity.rule': 'hebb'}), hidden_eta_times(0.0))}
lines = [f"# FLP's plastic hidden layer on long streams ({run})", '',
         f"Test accuracy, OML's protocol (15 drawings per class, tested on the last 5), mean ± 95% CI over 20 runs; chance 1/N.", '',
         '| variant (at test time) | 10 classes, class-incremental | 10, iid | 50 classes, class-incremental | 50, iid |', '|---|---|---|---|---|']
t0 = time.time()
for name, (c, t) in variants.items():
    cells = []
    for n in (10, 50):
        for order in ('continual', 'iid'):
            e = evaluate_classes(Learner(name, c, t), test, n, 15, order, 20, seed, stream_pool=15, test_per_class=5)
            cells.append('{:.3f} ± {:.3f}'.format(*mean_ci(e.test)))
    lines.append(f"| {name} | " + ' | '.join(cells) + ' |'); print(lines[-1], flush=True)

def activity(h: torch.Tensor) -> tuple[float, float]:
    "Mean pairwise cosine similarity of the rows of each `h` `(M, n, units)`, and the fraction of active units."
    unit = torch.nn.functional.normalize(h, dim=-1)
    return (unit @ unit.transpose(1, 2)).mean().item(), (h > 0).float().mean().item()

lines += ['', "The hidden layer before and after a class-incremental stream (10 streams; test images' hidden activities):", '',
          '| classes in the stream | cosine before | cosine after | active units before | active after | ‖ΔW‖ / ‖W(0)‖ of the hidden layer |',
          '|---|---|---|---|---|---|']
for n in (10, 50):
    learner = with_outputs(flp, n)
    layers = build_layers(learner.cfg.net)                                      # N output units
    task = TaskConfig('omniglot', n_tasks=n, steps_per_task=15, batch=1, query_per_task=5, order='continual', image_size=cfg.task.image_size)
    episode = class_episode(test, task, 10, n, torch.Generator().manual_seed(seed), None, torch.float32, 15)
    with torch.no_grad():
        h, h_query = frozen_features(learner.theta, episode.x, layers), frozen_features(learner.theta, episode.x_query, layers)
        start = initial_fast(learner.theta, layers, 10)
        end = run_steps(learner.theta, start, h, episode.y, layers, learner.cfg)
        before = plastic_forward(learner.theta, start, h_query, layers)[hidden]
        after = plastic_forward(learner.theta, end, h_query, layers)[hidden]
        moved = ((end[f'W{hidden}'] - start[f'W{hidden}']).norm() / start[f'W{hidden}'].norm()).item()
    (cos0, on0), (cos1, on1) = activity(before), activity(after)
    lines.append(f"| {n} | {cos0:.3f} | {cos1:.3f} | {on0:.2f} | {on1:.2f} | {moved:.2f} |"); print(lines[-1], flush=True)
lines += ['', f"({time.time() - t0:.0f} s, one thread; `python {run}/diagnosis/hidden_plasticity.py {run}`)"]
out = Path(__file__).with_name('hidden_plasticity.md')
out.write_text('\n'.join(lines) + '\n')
print('\n'.join(lines))
