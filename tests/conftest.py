import os, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault('MPLBACKEND', 'Agg')

@pytest.fixture
def root() -> Path:
    return ROOT

def _small_omniglot():
    "The shared small Omniglot splits (`feedback_plasticity.datasets.small_omniglot`), or None where this machine has none."
    from feedback_plasticity.datasets import small_omniglot, DatasetError
    try: return small_omniglot()
    except DatasetError: return None

SHARED_OMNIGLOT = _small_omniglot()   # tests that need it skip when it is None
