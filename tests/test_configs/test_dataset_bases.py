"""The UDA dataset _base_ configs describe each dataset once (gta.py, synthia.py,
cityscapes.py, acdc.py, darkzurich.py: type, data root, split folders and pipelines at
DAFormer's 512-px and HRDA/MIC's high-resolution setting), the loaders once
(uda_loaders.py), and each uda_<source>_to_<target>_<crop>.py only composes them: its
resolved datasets and loaders are exactly the bases' dicts, so a copy edited in one
place fails here."""
import glob
import os.path as osp
import re

import pytest
from mmengine.config import Config

CFG_DIR = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
                   'configs', '_base_', 'datasets')
DATASETS = ('gta', 'synthia', 'cityscapes', 'acdc', 'darkzurich')
PAIR = re.compile(r'uda_([a-z]+?)(HR)?_to_([a-z]+?)(HR)?_(512x512|1024x1024)$')
PAIRS = sorted(n for n in (osp.splitext(osp.basename(p))[0]
                           for p in glob.glob(osp.join(CFG_DIR, 'uda_*.py')))
               if PAIR.match(n))
# Files that describe other data: the procedural benchmark (in Cityscapes' layout, so
# with the CityscapesDataset type) and the user's own.
OTHER_DATA = ('procedural_256x128', 'uda_procedural_256x128', 'uda_procedural_hr_512x256',
              'uda_custom_template')
# Pipelines shared by datasets of one camera (drive1080p.py: ACDC's and Dark Zurich's
# 1920x1080 frames), inherited by those datasets' files; their names start with the
# file's name, and no pair holds two datasets of one shared file.
SHARED = {'drive1080p': ('acdc', 'darkzurich')}


def load(name):
    return Config.fromfile(osp.join(CFG_DIR, name + '.py')).to_dict()


def without(d, key):
    return {k: v for k, v in d.items() if k != key}


def test_every_dataset_base_file_is_paired():
    names = {osp.splitext(osp.basename(p))[0]
             for p in glob.glob(osp.join(CFG_DIR, '*.py'))}
    assert names == (set(DATASETS) | set(PAIRS) | set(OTHER_DATA) | set(SHARED)
                     | {'uda_loaders'})
    assert len(PAIRS) == 8
    used = {PAIR.match(n).group(g) for n in PAIRS for g in (1, 3)}
    assert used == set(DATASETS)
    for users in SHARED.values():
        for n in PAIRS:
            assert sum(PAIR.match(n).group(g) in users for g in (1, 3)) <= 1, n


@pytest.mark.parametrize('shared', sorted(SHARED))
def test_shared_pipeline_names_are_its_own(shared):
    cfg = load(shared)
    assert cfg and all(k.startswith(shared + '_') for k in cfg), sorted(cfg)
    for name in SHARED[shared]:
        assert set(cfg) <= set(load(name))  # inherited by each of its datasets


@pytest.mark.parametrize('name', DATASETS)
def test_dataset_base_names_are_its_own(name):
    """mmengine refuses two bases of one config that set the same name: a pair can
    inherit from its source's and its target's files because every name there starts
    with the dataset's. The high-resolution form differs only in its pipeline."""
    cfg = load(name)
    for shared, users in SHARED.items():
        if name in users:
            cfg = {k: v for k, v in cfg.items() if not k.startswith(shared + '_')}
    assert all(k == name or k.startswith(name + '_') for k in cfg), sorted(cfg)
    for key in cfg:
        if key.endswith('_hr'):
            low = cfg[key[:-len('_hr')]]
            assert without(cfg[key], 'pipeline') == without(low, 'pipeline')
            assert cfg[key]['pipeline'] != low['pipeline']
        elif isinstance(cfg[key], dict) and 'data_prefix' in cfg[key]:
            assert {k: cfg[key][k] for k in ('type', 'data_root')} == cfg[name]


@pytest.mark.parametrize('name', PAIRS)
def test_pair_resolves_to_its_bases(name):
    src, src_hr, tgt, tgt_hr, crop = PAIR.match(name).groups()
    hr = crop == '1024x1024'
    assert bool(src_hr) == bool(tgt_hr) == hr
    suffix = '_hr' if hr else ''
    cfg, source, target, loaders = load(name), load(src), load(tgt), load('uda_loaders')

    train = cfg['train_dataloader']['dataset']
    assert train == dict(loaders['train_dataloader']['dataset'],
                         source=source[f'{src}_source{suffix}'],
                         target=target[f'{tgt}_target{suffix}'])
    assert cfg['val_dataloader']['dataset'] == target[f'{tgt}_val{suffix}']
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert without(cfg[key], 'dataset') == without(loaders[key], 'dataset'), key
    assert cfg['test_dataloader'] == cfg['val_dataloader']
    evaluator = source['synthia_evaluator'] if src == 'synthia' else loaders['val_evaluator']
    assert cfg['val_evaluator'] == cfg['test_evaluator'] == evaluator
    assert (cfg['val_cfg'], cfg['test_cfg']) == (loaders['val_cfg'], loaders['test_cfg'])

    # The top-level names tools read are the loaders' own, and the crop is the
    # pipelines' crop.
    assert cfg['source_train'] == train['source']
    assert cfg['target_train'] == train['target']
    assert cfg['target_val'] == cfg['val_dataloader']['dataset']
    assert cfg['source_train_pipeline'] == train['source']['pipeline']
    assert cfg['target_train_pipeline'] == train['target']['pipeline']
    assert cfg['test_pipeline'] == cfg['target_val']['pipeline']
    crops = [t['crop_size'] for side in ('source', 'target')
             for t in train[side]['pipeline'] if t['type'] == 'RandomCrop']
    assert crops == [cfg['crop_size']] * 2 == [(1024, 1024) if hr else (512, 512)] * 2


@pytest.mark.parametrize('name', DATASETS)
def test_dataset_type_and_root_are_written_in_one_file(name):
    texts = {osp.basename(p): open(p).read() for p in glob.glob(osp.join(CFG_DIR, '*.py'))
             if osp.splitext(osp.basename(p))[0] not in OTHER_DATA}
    described = load(name)[name]
    assert sorted(described) == ['data_root', 'type']
    for value in described.values():
        quoted = re.compile(r'''['"]''' + re.escape(value) + r'''['"]''')
        holders = [f for f, text in texts.items() if quoted.search(text)]
        assert holders == [name + '.py'], (value, holders)
        assert len(quoted.findall(texts[name + '.py'])) == 1, value
