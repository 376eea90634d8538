"""Is the Omniglot difference between graph and eager meta-steps cuDNN's non-determinism? Eager vs eager, and graph vs eager with deterministic cuDNN.

Usage: python benchmarks/gpu_graph_determinism.py   (prints three relative differences of theta after 5 meta-steps)
"""
import importlib.util, sys, torch
spec = importlib.util.spec_from_file_location('gms', __file__.replace('gpu_graph_determinism.py', 'gpu_meta_step.py'))
gms = importlib.util.module_from_spec(spec); spec.loader.exec_module(gms)

def rel(a, b): return max(((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-30)).item() for k in b)

def compare(graph_a: bool, graph_b: bool) -> float:
    return rel(gms.run('paper_omniglot', 'autograd', 8, 5, graph_a)['theta'], gms.run('paper_omniglot', 'autograd', 8, 5, graph_b)['theta'])

print('eager vs eager (default cuDNN):', compare(False, False), flush=True)
torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
torch.use_deterministic_algorithms(True, warn_only=True)
print('eager vs eager (deterministic):', compare(False, False), flush=True)
print('graph vs eager (deterministic):', compare(True, False), flush=True)
