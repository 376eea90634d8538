"""Write a stand-in for the two small Omniglot background splits, for a checkout with no shared copy beside it.

The tests and the notebooks read `images_background_small1.zip` and `images_background_small2.zip` (found by
`feedback_plasticity.datasets.small_omniglot`). Where they are absent, `.ci/run` writes this stand-in and points
`FLP_SMALL_OMNIGLOT` at it: the same alphabets, character counts, 20 drawings per character and file layout as the
real splits, with Greek and Latin byte-identical in both zips as there, but synthetic characters. Each character is a
fixed random pattern of strokes, and each of its drawings is that pattern shifted by up to 3 pixels with 1% of its
pixels flipped, so that characters can be told apart and learned, as real ones can.

Usage: python tools/small_omniglot_standin.py OUT_DIR
"""
import io, sys, zipfile
from pathlib import Path
import numpy as np
from PIL import Image

SPLITS = {'images_background_small1': {'Balinese': 24, 'Early_Aramaic': 22, 'Greek': 24, 'Korean': 40, 'Latin': 26},
          'images_background_small2': {'Greek': 24, 'Japanese_(katakana)': 47, 'Latin': 26, 'Sanskrit': 42, 'Tagalog': 17}}
SIDE, DRAWINGS = 105, 20

def drawings(alphabet: str, character: int) -> list[bytes]:
    "The PNGs of one character's drawings; the same bytes for the same (alphabet, character) in any split."
    rng = np.random.default_rng([sum(map(ord, alphabet)), character])
    pattern = np.kron(rng.random((15, 15)) < 0.08, np.ones((7, 7), bool))         # (105, 105) True = ink
    pngs = []
    for _ in range(DRAWINGS):
        ink = np.roll(pattern, tuple(rng.integers(-3, 4, 2)), (0, 1)) ^ (rng.random((SIDE, SIDE)) < 0.01)
        buffer = io.BytesIO(); Image.fromarray(~ink).convert('1').save(buffer, 'PNG')
        pngs.append(buffer.getvalue())
    return pngs

def main(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    for part, alphabets in SPLITS.items():
        with zipfile.ZipFile(out / f'{part}.zip', 'w') as archive:
            for alphabet, n_characters in alphabets.items():
                for c in range(1, n_characters + 1):
                    for d, png in enumerate(drawings(alphabet, c), 1):
                        archive.writestr(f"{part}/{alphabet}/character{c:02d}/{c:04d}_{d:02d}.png", png)
    print(f"wrote a stand-in for the small Omniglot splits to {out}")

if __name__ == '__main__':
    main(Path(sys.argv[1]))
