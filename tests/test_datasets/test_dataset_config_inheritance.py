"""Each size variant of a UDA dataset _base_ config (HRDA/MIC's 1024x1024 crops)
inherits from its dataset pair's 512-px config and resolves to exactly the dict it had
as a file of its own (dataset_configs_before_inheritance.txt, written before the
change; a deliberate change of these configs rewrites it). Since the pairs compose
per-dataset bases (gta.py, cityscapes.py, ...), they also carry those bases' names
(``gta_source``, ``cityscapes_val_hr``, ...): every name the file had resolves to the
same value, and the names added are the bases' own."""
import ast
import os.path as osp
from pprint import pformat

import pytest
from mmengine.config import Config

HERE = osp.dirname(osp.abspath(__file__))
CFG_DIR = osp.join(osp.dirname(osp.dirname(HERE)), 'configs', '_base_', 'datasets')
VARIANTS = {
    'uda_gtaHR_to_cityscapesHR_1024x1024': 'uda_gta_to_cityscapes_512x512',
    'uda_synthiaHR_to_cityscapesHR_1024x1024': 'uda_synthia_to_cityscapes_512x512',
    'uda_cityscapesHR_to_acdcHR_1024x1024': 'uda_cityscapes_to_acdc_512x512',
    'uda_cityscapesHR_to_darkzurichHR_1024x1024': 'uda_cityscapes_to_darkzurich_512x512',
}

# The per-dataset base files (configs/_base_/datasets/<dataset>.py), whose names all
# start with the dataset's.
DATASET_BASES = ('gta', 'synthia', 'cityscapes', 'acdc', 'darkzurich', 'drive1080p')


def _before():
    with open(osp.join(HERE, 'dataset_configs_before_inheritance.txt')) as f:
        text = ''.join(line for line in f if not line.startswith('#'))
    return ast.literal_eval(text)


BEFORE = _before()


@pytest.mark.parametrize('name', sorted(BEFORE))
def test_config_resolves_to_the_same_dict(name):
    now = Config.fromfile(osp.join(CFG_DIR, name + '.py')).to_dict()
    added = set(now) - set(BEFORE[name])
    assert not set(BEFORE[name]) - set(now)
    assert all(k.split('_')[0] in DATASET_BASES for k in added), sorted(added)
    now = {k: v for k, v in now.items() if k in BEFORE[name]}
    assert now == BEFORE[name]
    # == takes 1 for 1.0 (and True for 1): the sorted reprs tell them apart
    assert pformat(now, sort_dicts=True) == pformat(BEFORE[name], sort_dicts=True)


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_size_variant_inherits_from_its_pair(variant):
    assert set(VARIANTS) | set(VARIANTS.values()) == set(BEFORE)
    with open(osp.join(CFG_DIR, variant + '.py')) as f:
        tree = ast.parse(f.read())
    base = [ast.literal_eval(node.value) for node in tree.body
            if isinstance(node, ast.Assign) and node.targets[0].id == '_base_']
    assert base == [[f'./{VARIANTS[variant]}.py']]
