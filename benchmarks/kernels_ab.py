"""Compare two versions of the fused kernels' C++ source on the paper sine lifetime, interleaved in one process.

This machine's speed drifts by 10-20% within an hour, so a change to the kernels is judged by runs of both versions taken
in turn in one process, not by two benchmark runs made minutes apart. Each round runs one lifetime (forward and
meta-gradient backward, `compute.engine=fused`) on each version; the first round is a warm-up.

Usage: `python benchmarks/kernels_ab.py old.cpp new.cpp [--rounds 4] [--lifetimes 1]`. A source file is a version of
the kernels' C++, `feedback_plasticity/csrc/plastic_layer.cpp` (`feedback_plasticity.kernels.KERNEL_SOURCE` is its text);
keep the current one with `cp feedback_plasticity/csrc/plastic_layer.cpp old.cpp` before editing it.
"""
import argparse, time
import torch

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('sources', nargs=2, help='two C++ sources of the kernels')
    parser.add_argument('--rounds', type=int, default=4, help='timed rounds (each runs both versions once)')
    parser.add_argument('--lifetimes', type=int, default=1, help='lifetimes per meta-step (M)')
    parser.add_argument('--threads', type=int, default=2, help='torch (and kernel) threads')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import feedback_plasticity.kernels as K
    from feedback_plasticity.core import preset
    from feedback_plasticity.feedback import init_theta
    from feedback_plasticity.lifetime import lifetime, random_episode
    libraries = [K.load_library(K.build_kernels(open(path).read())) for path in args.sources]
    cfg = preset('paper_sine'); cfg.compute.engine = 'fused'
    g = torch.Generator().manual_seed(0)
    theta, task = init_theta(cfg, g), cfg.task
    episode = random_episode(cfg, args.lifetimes, task.n_tasks * task.steps_per_task, task.batch, task.n_tasks * task.query_per_task, g)
    seconds = [[], []]
    for round_ in range(args.rounds + 1):
        for i, library in enumerate(libraries):
            K._LIBRARY['lib'] = library
            start = time.perf_counter()
            lifetime(theta, episode, cfg).query_loss.sum().backward()
            if round_: seconds[i].append((time.perf_counter() - start) / args.lifetimes)
    for path, times in zip(args.sources, seconds):
        print(f"{path}: seconds per lifetime {' '.join(f'{t:.3f}' for t in times)}; min {min(times):.3f}")
    print(f"second / first (min): {min(seconds[1]) / min(seconds[0]):.3f}")

if __name__ == '__main__':
    main()
