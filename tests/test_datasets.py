"""The image data layer: Omniglot from the shared small splits, the tensor cache, downloads and every bad input's error."""
import os, pickle, re, shutil, time, urllib.request, zipfile
from pathlib import Path
import pytest, torch
import feedback_plasticity.datasets as datasets
from feedback_plasticity.datasets import (DatasetError, ImageClasses, OMNIGLOT_SMALL, download_file, file_md5, miniimagenet,
                                          omniglot, read_omniglot_part, write_miniimagenet_fixture, write_omniglot_fixture)

from conftest import SHARED_OMNIGLOT
needs_shared = pytest.mark.skipif(SHARED_OMNIGLOT is None, reason="no small Omniglot splits found (set FLP_SMALL_OMNIGLOT)")

@pytest.fixture(autouse=True)
def offline_and_private(tmp_path, monkeypatch):
    "No test touches the network or the home folder: only file:// URLs open, and FLP_DATA points into tmp_path."
    real_urlopen = urllib.request.urlopen
    def urlopen(url, *args, **kwargs):
        if not str(getattr(url, 'full_url', url)).startswith('file:'): raise AssertionError(f"a test tried to reach {url}")
        return real_urlopen(url, *args, **kwargs)
    monkeypatch.setattr(urllib.request, 'urlopen', urlopen)
    monkeypatch.setenv('FLP_DATA', str(tmp_path / 'flp_data'))

@pytest.fixture(scope='module')
def shared_cache(tmp_path_factory):
    "One cache folder for the tests that only read the shared data, so each size is decoded once per module."
    return tmp_path_factory.mktemp('omniglot_cache')

# ---------------------------------------------------------------- Omniglot from the shared small splits

@needs_shared
@pytest.mark.parametrize('size', [28, 84])
def test_omniglot_small_splits(size, shared_cache):
    train = omniglot('train', SHARED_OMNIGLOT, size=size, cache_dir=shared_cache)
    test = omniglot('test', SHARED_OMNIGLOT, size=size, cache_dir=shared_cache)
    everything = omniglot('all', SHARED_OMNIGLOT, size=size, cache_dir=shared_cache)
    assert train.images.shape == (157, 20, 1, size, size) and train.images.dtype == torch.uint8
    assert test.images.shape == (85, 20, 1, size, size)
    assert len(everything) == 242 and len(set(everything.groups)) == 8            # Greek and Latin kept once
    assert sorted(set(test.groups)) == ['Latin', 'Sanskrit', 'Tagalog']
    assert not set(train.groups) & set(test.groups)                                # no alphabet in both
    assert len(set(everything.names)) == 242 and sorted(train.names + test.names) == sorted(everything.names)
    x = train.float_images([0, 5], [0, 19])                                        # (2, 2, 1, size, size)
    assert x.shape == (2, 2, 1, size, size) and x.min() == 0 and x.max() == 1

@needs_shared
def test_duplicated_characters_of_the_small_splits_are_identical():
    "Greek and Latin are in both small splits, as the same files byte for byte: keeping one copy loses nothing."
    with zipfile.ZipFile(SHARED_OMNIGLOT / f'{OMNIGLOT_SMALL[0]}.zip') as one, zipfile.ZipFile(SHARED_OMNIGLOT / f'{OMNIGLOT_SMALL[1]}.zip') as two:
        drawings = [{n.split('/', 1)[1] for n in a.namelist() if n.endswith('.png')} for a in (one, two)]
        both = drawings[0] & drawings[1]
        assert len(both) == 1000 and {n.split('/')[0] for n in both} == {'Greek', 'Latin'}
        assert len({n.rsplit('/', 1)[0] for n in both}) == 50
        for name in both: assert one.read(f'{OMNIGLOT_SMALL[0]}/{name}') == two.read(f'{OMNIGLOT_SMALL[1]}/{name}')

@needs_shared
def test_extracted_folders_read_like_the_zips(tmp_path, shared_cache):
    part = OMNIGLOT_SMALL[0]
    with zipfile.ZipFile(SHARED_OMNIGLOT / f'{part}.zip') as archive: archive.extractall(tmp_path / 'extracted')
    from_folder = omniglot('all', tmp_path / 'extracted', size=28, cache_dir=tmp_path / 'cache')          # a folder of parts
    from_part = omniglot('all', tmp_path / 'extracted' / part, size=28, cache_dir=tmp_path / 'cache')     # one extracted part
    from_zip = omniglot('all', SHARED_OMNIGLOT / f'{part}.zip', size=28, cache_dir=shared_cache)          # one zip
    assert len(from_zip) == 136 and from_folder.names == from_part.names == from_zip.names
    assert torch.equal(from_folder.images, from_zip.images) and torch.equal(from_part.images, from_zip.images)

# ---------------------------------------------------------------- the cache

@needs_shared
def test_cache_is_reused_faster_and_equal(tmp_path, monkeypatch):
    start = time.perf_counter(); first = omniglot('train', SHARED_OMNIGLOT, size=28, cache_dir=tmp_path)
    decode_time = time.perf_counter() - start
    assert sorted(os.listdir(tmp_path)) == [f'{p}-28px.pt' for p in OMNIGLOT_SMALL]   # one file per (source, size)
    def no_decoding(*args, **kwargs): raise AssertionError("decoded again instead of using the cache")
    monkeypatch.setattr(datasets, 'read_omniglot_part', no_decoding)
    start = time.perf_counter(); second = omniglot('train', SHARED_OMNIGLOT, size=28, cache_dir=tmp_path)
    load_time = time.perf_counter() - start
    assert torch.equal(first.images, second.images) and first.names == second.names and first.groups == second.groups
    assert load_time < decode_time / 3 and load_time < 2, (decode_time, load_time)

class CodeOnLoad:
    def __reduce__(self): return (print, ('this would run on load',))

@pytest.mark.filterwarnings('ignore:Detected pickle protocol')  # torch's remark on the damaged files themselves
@pytest.mark.parametrize('damage', ['truncated', 'garbage', 'empty', 'wrong content', 'pickled code'])
def test_damaged_cache_is_rebuilt(tmp_path, damage):
    source = write_omniglot_fixture(tmp_path / 'images_evaluation.zip', {'Alpha': 2, 'Beta': 1})
    good = omniglot('all', source, size=28, cache_dir=tmp_path / 'cache')
    cache = tmp_path / 'cache' / 'images_evaluation-28px.pt'
    if damage == 'truncated': cache.write_bytes(cache.read_bytes()[:1000])
    elif damage == 'garbage': cache.write_bytes(b'\x80\x04 not a tensor file')
    elif damage == 'empty': cache.write_bytes(b'')
    elif damage == 'wrong content': torch.save({'format': datasets.CACHE_FORMAT, 'images': torch.zeros(3)}, cache)
    else:
        with open(cache, 'wb') as f: pickle.dump({'format': CodeOnLoad()}, f)
    with pytest.warns(UserWarning, match='damaged'):
        again = omniglot('all', source, size=28, cache_dir=tmp_path / 'cache')
    assert torch.equal(again.images, good.images) and again.names == good.names
    def no_decoding(*args, **kwargs): raise AssertionError("decoded again instead of using the rebuilt cache")
    datasets_read, datasets.read_omniglot_part = datasets.read_omniglot_part, no_decoding
    try: assert torch.equal(omniglot('all', source, size=28, cache_dir=tmp_path / 'cache').images, good.images)
    finally: datasets.read_omniglot_part = datasets_read

def test_changed_source_rebuilds_the_cache(tmp_path):
    root = tmp_path / 'data'
    write_omniglot_fixture(root / 'images_evaluation.zip', {'Alpha': 2}, seed=0)
    first = omniglot('all', root, size=28, cache_dir=tmp_path / 'cache')
    write_omniglot_fixture(root / 'images_evaluation.zip', {'Alpha': 3}, seed=1)   # same name, new contents
    second = omniglot('all', root, size=28, cache_dir=tmp_path / 'cache')
    assert len(first) == 2 and len(second) == 3

def test_unwritable_cache_still_returns_the_data(tmp_path):
    write_omniglot_fixture(tmp_path / 'images_evaluation.zip', {'Alpha': 1})
    (tmp_path / 'not_a_folder').write_text('a file where the cache folder should be')
    with pytest.warns(UserWarning, match='could not write the image cache'):
        data = omniglot('all', tmp_path / 'images_evaluation.zip', size=28, cache_dir=tmp_path / 'not_a_folder')
    assert data.images.shape == (1, 20, 1, 28, 28)

# ---------------------------------------------------------------- downloads and damaged zips

def test_download_file_checks_the_checksum(tmp_path):
    source = write_omniglot_fixture(tmp_path / 'server' / 'images_background.zip')
    url = source.as_uri()
    assert download_file(url, tmp_path / 'a' / 'x.zip', file_md5(source)).read_bytes() == source.read_bytes()
    with pytest.raises(DatasetError, match=r"MD5 is [0-9a-f]{32}, not the expected 68d2efa1b9178cc56df9314c21c6e718.*download it by hand to"):
        download_file(url, tmp_path / 'b' / 'x.zip', '68d2efa1b9178cc56df9314c21c6e718')
    with pytest.raises(DatasetError, match="could not download"):
        download_file((tmp_path / 'server' / 'missing.zip').as_uri(), tmp_path / 'b' / 'y.zip')
    assert os.listdir(tmp_path / 'b') == []                                        # nothing half-written left behind

def test_managed_folder_downloads_then_refuses_a_damaged_zip(tmp_path, monkeypatch):
    server = tmp_path / 'server'
    write_omniglot_fixture(server / 'images_background.zip', {'Alpha': 2, 'Beta': 1}, seed=1)
    write_omniglot_fixture(server / 'images_evaluation.zip', {'Gamma': 2}, seed=2)
    monkeypatch.setattr(datasets, 'OMNIGLOT_URL', server.as_uri() + '/')
    monkeypatch.setattr(datasets, 'OMNIGLOT_MD5', {p: file_md5(server / f'{p}.zip') for p in datasets.OMNIGLOT_MD5})
    folder = tmp_path / 'flp_data' / 'omniglot'
    with pytest.raises(DatasetError, match="call with download=True"): omniglot('train', download=False)
    train = omniglot('train', size=28)                                             # the paper's split: background
    assert train.names == ['Alpha/character01', 'Alpha/character02', 'Beta/character01']
    assert omniglot('test', size=28).names == ['Gamma/character01', 'Gamma/character02']
    (folder / 'images_evaluation.zip').write_bytes((folder / 'images_evaluation.zip').read_bytes()[:500])  # damaged
    with pytest.raises(DatasetError, match=r"images_evaluation.zip is damaged or incomplete .*delete it and retry"):
        omniglot('test', size=28)
    (folder / 'images_evaluation.zip').unlink()                                   # what the message says to do
    assert omniglot('test', size=28).names == ['Gamma/character01', 'Gamma/character02']

def test_wrong_checksum_from_the_server_is_an_error(tmp_path, monkeypatch):
    server = tmp_path / 'server'
    for part in datasets.OMNIGLOT_MD5: write_omniglot_fixture(server / f'{part}.zip')
    monkeypatch.setattr(datasets, 'OMNIGLOT_URL', server.as_uri() + '/')           # the official checksums stay
    with pytest.raises(DatasetError, match="not the expected 68d2efa1b9178cc56df9314c21c6e718"): omniglot('train')
    assert not (tmp_path / 'flp_data' / 'omniglot' / 'images_background.zip').exists()

@needs_shared
def test_damaged_zips_are_errors(tmp_path):
    garbage = tmp_path / 'garbage'; garbage.mkdir()
    (garbage / 'images_background_small1.zip').write_bytes(b'PK\x03\x04 nothing else')
    with pytest.raises(DatasetError, match="images_background_small1.zip is not a readable zip .*delete it"):
        omniglot('all', garbage, cache_dir=tmp_path / 'cache')
    data = (SHARED_OMNIGLOT / 'images_background_small1.zip').read_bytes()
    truncated = tmp_path / 'truncated'; truncated.mkdir()
    (truncated / 'images_background_small1.zip').write_bytes(data[:len(data) // 2])
    with pytest.raises(DatasetError, match="not a readable zip"):
        omniglot('all', truncated, cache_dir=tmp_path / 'cache')
    flipped = tmp_path / 'flipped'; flipped.mkdir()
    with zipfile.ZipFile(SHARED_OMNIGLOT / 'images_background_small1.zip') as archive: info = archive.infolist()[10]  # a drawing
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    (flipped / 'images_background_small1.zip').write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    with pytest.raises(DatasetError, match=rf"images_background_small1.zip is damaged \({info.filename}"):
        omniglot('all', flipped, cache_dir=tmp_path / 'cache')

# ---------------------------------------------------------------- wrong layouts

def test_wrong_layouts_are_errors(tmp_path):
    (tmp_path / 'unrelated').mkdir(); (tmp_path / 'unrelated' / 'notes.txt').write_text('hi')
    with pytest.raises(DatasetError, match=r"expected some of images_background.zip.*found notes.txt"):
        omniglot('all', tmp_path / 'unrelated')
    with pytest.raises(DatasetError, match="no Omniglot data at"): omniglot('all', tmp_path / 'nowhere')
    renamed_zip = write_omniglot_fixture(tmp_path / 'characters.zip')
    with pytest.raises(DatasetError, match="is not an Omniglot zip"): omniglot('all', renamed_zip)
    for folder, member in [('flat', 'images_evaluation/0001_01.png'), ('other_root', 'omniglot/Greek/character01/0001_01.png')]:
        (tmp_path / folder).mkdir()
        with zipfile.ZipFile(tmp_path / folder / 'images_evaluation.zip', 'w') as z: z.writestr(member, b'')
        with pytest.raises(DatasetError, match=re.escape(f"expected images_evaluation/<Alphabet>/<character>/*.png, found {member}")):
            omniglot('all', tmp_path / folder, cache_dir=tmp_path / 'cache')
    short = write_omniglot_fixture(tmp_path / 'short' / 'images_evaluation.zip', {'Alpha': 1}, drawings=19)
    with pytest.raises(DatasetError, match="Alpha/character01 has 19 drawings"): omniglot('all', short, cache_dir=tmp_path / 'cache')
    with pytest.raises(ValueError, match="positive int"): omniglot('all', short, size=0)

# ---------------------------------------------------------------- Mini-ImageNet

@pytest.fixture
def mini_root(tmp_path):
    return write_miniimagenet_fixture(tmp_path / 'mini', classes_per_split=(4, 2, 2), per_class=6, size=24)

def test_miniimagenet_fixture_round_trip(mini_root, tmp_path):
    assert sorted(os.listdir(mini_root)) == ['images', 'test.csv', 'train.csv', 'val.csv']
    assert (mini_root / 'train.csv').read_text().splitlines()[:2] == ['filename,label', 'n0000000000000000.jpg,n00000000']
    splits = {s: miniimagenet(mini_root, s, size=32, cache_dir=tmp_path / 'cache') for s in ('train', 'val', 'test')}
    assert [d.images.shape for d in splits.values()] == [(4, 6, 3, 32, 32), (2, 6, 3, 32, 32), (2, 6, 3, 32, 32)]
    assert splits['test'].names == splits['test'].groups == ['n00000006', 'n00000007']
    x = splits['train'].float_images(range(4))                                     # (4, 6, 3, 32, 32)
    expected = (splits['train'].images.float() / 255 - torch.tensor(datasets.IMAGENET_MEAN)[:, None, None]) / torch.tensor(datasets.IMAGENET_STD)[:, None, None]
    assert torch.allclose(x, expected, atol=1e-6)
    colour = x.mean((-1, -2))                                                       # (4, 6, 3)
    assert torch.equal(torch.cdist(colour.reshape(24, 3), colour.mean(1)).argmin(-1), torch.arange(4).repeat_interleave(6))
    again = miniimagenet(mini_root, 'train', size=32, cache_dir=tmp_path / 'cache')
    assert torch.equal(again.images, splits['train'].images)
    assert len(os.listdir(tmp_path / 'cache')) == 3                                 # one file per (split, size)
    assert miniimagenet(mini_root, 'train', size=32, per_class=4, cache_dir=tmp_path / 'cache').images.shape == (4, 4, 3, 32, 32)

def test_miniimagenet_uneven_classes_keep_the_smallest_count(mini_root, tmp_path):
    rows = (mini_root / 'train.csv').read_text().splitlines()
    (mini_root / 'train.csv').write_text('\n'.join(rows[:-2]) + '\n')                # the last class loses 2 images
    data = miniimagenet(mini_root, 'train', size=16, cache_dir=tmp_path / 'cache')
    assert data.images.shape == (4, 4, 3, 16, 16)
    with pytest.raises(DatasetError, match=r"1 of 4 classes have fewer images than the 5 required \(min_per_class=5\): n00000003 has 4"):
        miniimagenet(mini_root, 'train', size=16, min_per_class=5, cache_dir=tmp_path / 'cache')
    with pytest.raises(DatasetError, match=r"the 6 required \(per_class=6\): n00000003 has 4"):
        miniimagenet(mini_root, 'train', size=16, per_class=6, cache_dir=tmp_path / 'cache')

@pytest.mark.parametrize('text, message', [
    ('', 'is empty'),
    ('filename,label\n', 'lists no images'),
    ('file,label\nn0000000400000000.jpg,n00000004\n', "expected the header 'filename,label', found 'file,label'"),
    ('filename,label,extra\n', "found 'filename,label,extra'"),
    ('filename,label\nn0000000400000000.jpg\n', "line 2: expected 'filename,label', found 'n0000000400000000.jpg'"),
    ('filename,label\nn0000000400000000.jpg,n00000004,x\n', 'line 2'),
    ('filename,label\nn0000000400000000.jpg,\n', 'line 2'),
])
def test_miniimagenet_malformed_csv(mini_root, tmp_path, text, message):
    (mini_root / 'val.csv').write_text(text)
    with pytest.raises(DatasetError, match=r'val\.csv.*' + re.escape(message)):
        miniimagenet(mini_root, 'val', size=16, cache_dir=tmp_path / 'cache')

def test_miniimagenet_binary_csv(mini_root, tmp_path):
    (mini_root / 'val.csv').write_bytes(b'\xff\xfe\x00\x81 not text')
    with pytest.raises(DatasetError, match='not a readable CSV'): miniimagenet(mini_root, 'val', cache_dir=tmp_path / 'cache')

def test_miniimagenet_missing_pieces(mini_root, tmp_path):
    cache = tmp_path / 'cache'
    with pytest.raises(DatasetError, match='no Mini-ImageNet folder at'): miniimagenet(tmp_path / 'nowhere', cache_dir=cache)
    (mini_root / 'test.csv').unlink()
    with pytest.raises(DatasetError, match=r'missing .*test\.csv'): miniimagenet(mini_root, 'test', cache_dir=cache)
    (mini_root / 'images' / 'n0000000500000003.jpg').unlink()
    with pytest.raises(DatasetError, match=r'val\.csv lists 1 images missing from .*images, e\.g\. n0000000500000003\.jpg'):
        miniimagenet(mini_root, 'val', cache_dir=cache)
    shutil.rmtree(mini_root / 'images')
    with pytest.raises(DatasetError, match=r'has no images/ folder.*found train\.csv, val\.csv'): miniimagenet(mini_root, cache_dir=cache)
    with pytest.raises(ValueError, match="choose one of train, val, test"): miniimagenet(mini_root, 'validation')

@pytest.mark.parametrize('damage', ['not an image', 'truncated'])
def test_miniimagenet_unreadable_image_is_named(mini_root, tmp_path, damage):
    image = mini_root / 'images' / 'n0000000100000002.jpg'
    image.write_bytes(b'not a jpeg' if damage == 'not an image' else image.read_bytes()[:200])
    with pytest.raises(DatasetError, match=r'cannot read the image .*n0000000100000002\.jpg'):
        miniimagenet(mini_root, 'train', size=16, cache_dir=tmp_path / 'cache')
    assert not (tmp_path / 'cache').exists() or not os.listdir(tmp_path / 'cache')  # nothing cached from a failed decode

def test_image_classes_checks_its_fields():
    with pytest.raises(ValueError, match='uint8'): ImageClasses(torch.zeros(1, 1, 1, 2, 2), ['a'], ['a'])
    with pytest.raises(ValueError, match='3 entries for 1 channels'):
        ImageClasses(torch.zeros(1, 1, 1, 2, 2, dtype=torch.uint8), ['a'], ['a'], (0.5, 0.5, 0.5), (1, 1, 1))
