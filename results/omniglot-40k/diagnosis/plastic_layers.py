"""Which plastic layer carries (or breaks) a classification learner's lifetime: knock-outs and hidden collapse at each milestone.

For every learner and milestone snapshot of a `flp curve omniglot` run folder: test accuracy (20 runs, mean ± 95% CI) on
5-way 5-shot and 10-class class-incremental streams with every layer plastic, with the hidden layers' plasticity knocked
out at test time (their η set to 0), and with the output layer's knocked out; and, after one 5-way 5-shot stream, the mean
cosine between the hidden activities of different images (1.0: the hidden layer maps every image to the same activity,
the collapse) and each plastic layer's change over the stream relative to its initial weights.
Writes `plastic_layers.json` and `plastic_layers.md` beside this script (as `../../omniglot-quick/diagnosis/hidden_plasticity.py`
does for one meta-trained FLP). One thread; about 3 minutes on a 2-core CPU.

Usage, from the repository root: `python results/omniglot-40k/diagnosis/plastic_layers.py results/omniglot-40k [--steps 1000 40000] [--runs 20]`
"""
from __future__ import annotations
import argparse, json
from pathlib import Path
import torch
from feedback_plasticity.core import load_checkpoint, TaskConfig
from feedback_plasticity.curves import _experiment, snapshots
from feedback_plasticity.experiments import learner_config, LEARNER_NAMES
from feedback_plasticity.continual import Learner, evaluate_classes, mean_ci, with_outputs, frozen_features
from feedback_plasticity.feedback import build_layers, initial_fast, plastic_forward, parse_name
from feedback_plasticity.lifetime import engine_for
from feedback_plasticity.tasks import task_classes, class_episode

def knocked_out(learner: Learner, which: str) -> Learner:
    "`learner` with the plasticity of its hidden layers or of its output layer ('hidden', 'output') set to 0; 'none' keeps it."
    L = build_layers(learner.cfg.net)[-1].index
    off = lambda k: parse_name(k)[0] == 'eta' and (which == 'hidden') == (parse_name(k)[1] != L) and which != 'none'
    return Learner(f'{learner.name} ({which} knocked out)', learner.cfg, {k: torch.zeros_like(v) if off(k) else v for k, v in learner.theta.items()})

def stream_geometry(learner: Learner, classes, seed: int, runs: int) -> dict:
    "After one 5-way 5-shot class-incremental stream: mean cosine between the hidden activities of its images, and each plastic layer's relative change."
    learner = with_outputs(learner, 5)
    cfg, theta, layers = learner.cfg, learner.theta, build_layers(learner.cfg.net)
    task = TaskConfig(cfg.task.name, n_tasks=5, steps_per_task=5, batch=1, query_per_task=5, order='continual', image_size=cfg.task.image_size)
    episode = class_episode(classes, task, runs, 5, torch.Generator().manual_seed(seed), 'cpu', torch.float32, 15)
    with torch.no_grad():
        h = frozen_features(theta, episode.x, layers)                                      # (M, T, 1, n)
        start = initial_fast(theta, layers, runs)
        fast = engine_for(cfg, graph=False).run(theta, {k: v.clone() for k, v in start.items()}, h, episode.y, layers, cfg)
        def mean_cosine(weights):
            "Mean cosine between the hidden activities of different images of the stream, with plastic weights `weights`."
            hidden = torch.nn.functional.normalize(plastic_forward(theta, weights, h.flatten(1, 2), layers)[layers[-2].index], dim=-1)   # (M, T, n)
            T = hidden.shape[1]
            off_diagonal = (hidden @ hidden.transpose(1, 2)).sum((1, 2)) - hidden.norm(dim=-1).pow(2).sum(1)   # (M,)
            return (off_diagonal / (T * (T - 1))).mean().item()
        return {'hidden_cosine_before': mean_cosine(start), 'hidden_cosine': mean_cosine(fast),
                'relative_change': {k: ((fast[k] - start[k]).norm() / start[k].norm()).item() if start[k].norm() > 0 else None for k in fast}}   # None: from W(0) = 0

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('run_dir', type=Path)
    parser.add_argument('--steps', type=int, nargs='+', default=None, help='milestones to measure (default: every snapshot)')
    parser.add_argument('--runs', type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    exp, spec = _experiment(args.run_dir)
    test, seed = task_classes(exp.config.task, 'test'), exp.config.seed + 12345
    rows = []
    for learner_id in spec['learners']:
        cfg = learner_config(exp, learner_id)
        if cfg.plasticity.rule == 'sgd': continue                                       # OML: its plasticity is SGD, not η
        for step, path in snapshots(args.run_dir, learner_id).items():
            if args.steps and step not in args.steps: continue
            learner = Learner(LEARNER_NAMES[learner_id], cfg, load_checkpoint(path)['theta'])
            row = {'learner': learner.name, 'step': step, **stream_geometry(learner, test, seed, args.runs)}
            for which in ('none', 'hidden', 'output'):
                ko = knocked_out(learner, which)
                for n, shots, key in ((5, 5, '5-way 5-shot'), (10, 15, '10 classes')):
                    m, ci = mean_ci(evaluate_classes(ko, test, n, shots, 'continual', n_runs=args.runs, seed=seed).test)
                    row[f'{key}, {which} knocked out'] = [m, ci]
            rows.append(row); print(json.dumps(row), flush=True)
    (Path(__file__).parent / 'plastic_layers.json').write_text(json.dumps(rows, indent=1))
    cell = lambda v: f'{v[0]:.3f} ± {v[1]:.3f}'
    lines = ['Test accuracy with each layer\'s plasticity knocked out at test time (class-incremental, mean ± 95% CI over '
             f'{args.runs} runs), and, on one 5-way 5-shot stream, the mean cosine between different images\' hidden activities '
             'before and after it (1: collapse) and each plastic layer\'s change relative to its initial weights (`python results/omniglot-40k/diagnosis/plastic_layers.py '
             f'{args.run_dir}`):', '',
             '| learner | meta-steps | 5-way: all plastic | hidden off | output off | 10 classes: all plastic | hidden off | output off | hidden cosine before → after | relative change |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f"| {r['learner']} | {r['step']} | " + ' | '.join(cell(r[f'{k}, {w} knocked out']) for k in ('5-way 5-shot', '10 classes') for w in ('none', 'hidden', 'output'))
                     + f" | {r['hidden_cosine_before']:.3f} → {r['hidden_cosine']:.3f} | " + ', '.join(f'{k} ' + (f'{v:.2f}' if v is not None else 'from 0') for k, v in r['relative_change'].items()) + ' |')
    (Path(__file__).parent / 'plastic_layers.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))

if __name__ == '__main__': main()
