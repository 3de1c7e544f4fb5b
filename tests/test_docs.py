"""What the README and docs/ say about the code is what the code does: every path and
link they name exists, every flag of a command they show is in that tool's --help,
and every figure or convention they state that the code prints or defines (the ONNX
input, the export's parameter counts, the stop line, the data check's error line, the
shipped weights' digest, the DiDA switches the screens name) is recomputed or looked up
here."""
import glob
import hashlib
import json
import os
import os.path as osp
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from tests.helpers.tools import load_tool

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DOCS = [osp.join(REPO, 'README.md')] + sorted(glob.glob(osp.join(REPO, 'docs', '*.md')))
DIDA = osp.join(REPO, 'configs/dida/daformer_mit_tiny_procedural_dida.py')
#: paths the docs name as what a command they show writes
WRITTEN_BY_COMMANDS = {'configs/custom/mine_data.py',
                       'configs/custom/daformer_mit_tiny_mine.py'}


def _read(path):
    with open(path) as f:
        return f.read()


def _code_blocks(text, lang=None):
    blocks = re.findall(r'```(\w*)\n(.*?)```', text, flags=re.S)
    return [body for kind, body in blocks if lang is None or kind == lang]


def test_readme_is_a_front_door():
    text = _read(DOCS[0])
    assert len(text.splitlines()) <= 250
    first = _code_blocks(text)[0]
    commands = [ln for ln in first.splitlines() if ln.strip() and
                not ln.strip().startswith('#')]
    assert len(commands) == 2
    assert commands[1].endswith('-m pytest -q -n 2')  # what .ci/run runs


@pytest.mark.parametrize('doc', DOCS, ids=lambda p: osp.relpath(p, REPO))
def test_every_link_and_named_path_exists(doc):
    text = _read(doc)
    base = osp.dirname(doc)
    for target in re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', text):
        if '://' not in target:
            assert osp.exists(osp.join(base, target)), f'{doc}: link {target}'
    prefixes = ('configs/', 'tools/', 'mmseg_dida/', 'tests/', 'docs/', 'pretrained/')
    for path in re.findall(r'`([\w./-]+)`', text):
        if path.startswith(prefixes) and not re.search(r'[<>{}*]|\.\.\.', path) \
                and path not in WRITTEN_BY_COMMANDS:
            assert osp.exists(osp.join(REPO, path)), f'{doc}: names {path}'


def _tool_flags():
    """(tool path, flag) of every ``python tools/X.py ... --flag`` shown in a shell
    block of the docs."""
    pairs = set()
    for doc in DOCS:
        for block in _code_blocks(_read(doc), 'shell'):
            block = block.replace('\\\n', ' ')
            for line in block.splitlines():
                m = re.search(r'python\S* (tools/[\w/]+\.py)(.*)', line)
                if m:
                    for flag in re.findall(r'(?<![\w-])(--[a-z][\w-]*)', m.group(2)):
                        pairs.add((m.group(1), flag))
    return pairs


HELP_SCRIPT = """
import contextlib, io, json, runpy, sys
out = {}
for tool in sys.argv[1:]:
    buf = io.StringIO()
    sys.argv = [tool, '--help']
    with contextlib.redirect_stdout(buf):
        try:
            runpy.run_path(tool, run_name='__main__')
        except SystemExit:
            pass
    out[tool] = buf.getvalue()
print('HELP' + json.dumps(out))
"""


def test_every_flag_shown_is_in_its_tools_help():
    pairs = _tool_flags()
    tools = sorted({t for t, _ in pairs})
    assert 'tools/train.py' in tools and 'tools/export.py' in tools
    env = dict(os.environ, OMP_NUM_THREADS='1')
    # every tool's --help in one interpreter (mmseg_dida imported once)
    res = subprocess.run([sys.executable, '-c', HELP_SCRIPT] + tools,
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith('HELP')]
    assert line, res.stderr[-2000:]
    helps = json.loads(line[-1][4:])
    assert all(helps[t].startswith('usage:') for t in tools), helps
    missing = [(t, f) for t, f in sorted(pairs) if f not in helps[t]]
    assert not missing, missing


def test_onnx_input_is_the_raw_image_the_docs_say():
    """docs: the ONNX graph takes the raw image as the test pipeline loads it (BGR,
    0..255). Its torch twin (what the graph computes) on such an image predicts what
    tools/infer.py predicts for the image file; on the normalised image it does not."""
    text = ' '.join(_read(osp.join(REPO, 'docs/testing_export_inference.md')).split())
    assert 'raw image as the test pipeline loads it: BGR, values 0..255' in text
    readme = ' '.join(_read(osp.join(REPO, 'README.md')).split())
    assert 'an ONNX graph that takes the raw image as the test pipeline loads it' in readme
    for name, doc in (('README.md', readme), ('docs/testing_export_inference.md', text)):
        # no sentence about the ONNX input may call it normalised
        for sentence in re.split(r'(?<=[.;:])\s', doc):
            if 'ONNX' in sentence:
                assert not re.search(r'normali[sz]ed (image|input)', sentence), (
                    name, sentence)
    export_tool = load_tool('tools/export.py')
    infer_tool = load_tool('tools/infer.py')
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from mmseg_dida.deploy import deploy_config, deploy_segmentor
    init_default_scope('mmseg')
    torch.manual_seed(0)
    cfg = Config.fromfile(DIDA)
    model = MODELS.build(cfg.model)
    model.init_weights()
    segmentor = deploy_segmentor(model).eval()
    rng = np.random.default_rng(0)
    image = (rng.random((64, 128, 3)) * 255).astype(np.uint8)  # BGR, as cv2 reads
    image[:, :64] = (40, 180, 90)  # some structure
    labels = infer_tool.predict(segmentor, infer_tool.build_pipeline(deploy_config(cfg)),
                                [image])[0]
    onnx_twin = export_tool.OnnxSegmentor(segmentor).eval()
    raw = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        _, from_raw = onnx_twin(raw)
        pre = segmentor.data_preprocessor
        normalised = (raw.flip(1) - pre.mean.view(1, 3, 1, 1)) / pre.std.view(1, 3, 1, 1)
        _, from_normalised = onnx_twin(normalised)
    assert (from_raw[0].numpy() == labels).mean() == 1.0
    assert (from_normalised[0].numpy() == labels).mean() < 0.99


def test_export_parameter_counts_the_docs_print():
    text = _read(osp.join(REPO, 'docs/testing_export_inference.md'))
    export_tool = load_tool('tools/export.py')
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from mmseg_dida.deploy import deploy_segmentor
    init_default_scope('mmseg')
    model = MODELS.build(Config.fromfile(DIDA).model)
    total = export_tool.num_params(model)
    deployed = export_tool.num_params(deploy_segmentor(model))
    table = export_tool.size_report([('training model (all parts)', total, 'a.pth'),
                                     ('deployed segmentor', deployed, 'b.pth')])
    header = table.splitlines()[0].strip()
    assert header in text
    assert re.search(rf'training model \(all parts\)\s+{total:,}\s', text), total
    assert re.search(rf'deployed segmentor\s+{deployed:,}\s', text), deployed


def test_stop_line_and_exit_status_are_the_ones_documented():
    from mmseg_dida.engine.resume import STOP_EXIT_STATUS, stop_message
    text = _read(osp.join(REPO, 'docs/reliability.md'))
    line = 'configs/x.py: ' + stop_message('SIGTERM', 1234, 40000,
                                           'work_dirs/x/iter_1234.pth')
    assert line in text
    assert f'**exit status {STOP_EXIT_STATUS}**' in text


def test_the_data_check_error_line_is_the_one_documented(tmp_path):
    """docs/own_data.md shows the one line --check-data prints for a label id outside
    the class table; the same check on a file with that id prints that line."""
    from mmengine.config import Config

    from mmseg_dida.datasets.transforms.checks import DataError, dataset_nodes, scan_dataset
    text = _read(osp.join(REPO, 'docs/own_data.md'))
    m = re.search(r'error: (configs/custom/\S+): label (\S+): (label id\(s\) \[3\] .*)',
                  text)
    assert m, 'the documented error line'
    config, _, message = m.groups()
    cfg = Config.fromfile(osp.join(REPO, config))
    node = dict(next(n for p, n in dataset_nodes(cfg) if p == 'val_dataloader.dataset'))
    root = tmp_path / 'target'
    img_dir = root / node['data_prefix']['img_path'] / 'city'
    ann_dir = root / node['data_prefix']['seg_map_path'] / 'city'
    img_dir.mkdir(parents=True)
    ann_dir.mkdir(parents=True)
    cv2.imwrite(str(img_dir / f"a{node['img_suffix']}"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(ann_dir / f"a{node['seg_map_suffix']}"), np.full((8, 8), 3, np.uint8))
    node['data_root'] = str(root)
    with pytest.raises(DataError) as err:
        scan_dataset(node, 'val', progress=False)
    assert str(err.value).endswith(message), (str(err.value), message)


def test_shipped_weights_are_what_pretrained_readme_says():
    text = _read(osp.join(REPO, 'pretrained', 'README.md'))
    for path in glob.glob(osp.join(REPO, 'pretrained', '*.pth')):
        with open(path, 'rb') as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        assert digest in text and f'{osp.getsize(path):,} bytes' in text, path


def test_the_main_job_excerpt_is_the_default_commands_output():
    """README: "What the main job prints" is the real output of the first command in
    its default regime and methods (a changed default needs a new excerpt)."""
    from mmseg_dida.apis.benchmark import DEFAULT_REGIME, MAIN_METHODS
    text = _read(osp.join(REPO, 'README.md'))
    section = text.split('## What the main job prints', 1)[1].split('\n## ', 1)[0]
    assert '[benchmark] data: ' in section and '[benchmark] done in' in section
    title = re.search(r'Procedural benchmark, gap full, regime (\w+) ', section)
    assert title and title.group(1) == DEFAULT_REGIME, section[:500]
    rows = re.findall(r'^\| (\S+)\s+\| [\d.]+\s+\| [\d.]+\s+\| [\d.]+\s+\|$', section,
                      re.M)
    assert rows == list(MAIN_METHODS), rows


def test_the_results_table_is_the_same_in_readme_and_results_md():
    """The regime x preset x method table is shown twice (README's overview and
    docs/results.md beside the order checks); both copies carry the same numbers."""
    def table(path):
        lines = _read(path).splitlines()
        start = lines.index('| method | scratch, full | scratch, fog | pretrained, full '
                            '| pretrained, fog |')
        end = next(i for i in range(start, len(lines)) if not lines[i].startswith('|'))
        return lines[start:end]
    readme = table(osp.join(REPO, 'README.md'))
    assert len(readme) == 9 and readme == table(osp.join(REPO, 'docs', 'results.md'))


def test_every_screened_dida_option_is_a_switch_off_by_default():
    """docs/results.md's table of issue 28's screens names each option as the
    `--cfg-options model.plugins.0.<key>=<value>` it ran with: every key is an argument
    of DiDA (or, as `degradation.<key>`, of its Degradation), and every value differs
    from that argument's default (a row that named the default would not be a screen)."""
    import inspect

    from mmseg_dida.models.uda.dida import DiDA
    from mmseg_dida.models.utils.degradation import Degradation

    text = _read(osp.join(REPO, 'docs', 'results.md'))
    start = text.index('| option | seed 1 | seed 2 |')
    rows = text[start:].split('\n\n', 1)[0].splitlines()[3:]  # header, rule, default
    assert len(rows) >= 7, rows
    params = {'': inspect.signature(DiDA).parameters,
              'degradation.': inspect.signature(Degradation).parameters}
    for row in rows:
        options = re.match(r'\| `([^`]+)`', row)
        assert options, row
        for option in options.group(1).split():
            key, value = option.split('=')
            prefix = 'degradation.' if key.startswith('degradation.') else ''
            name = key[len(prefix):]
            assert name in params[prefix], f'{key} (docs/results.md) is not an option'
            assert str(params[prefix][name].default) != value, (
                f'{option} (docs/results.md) is the default, not a screened switch')
