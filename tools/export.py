"""Export a UDA training checkpoint (DAFormer/HRDA/MIC, with or without DiDA) to a
plain mmseg segmentor: checkpoint + config that mmseg's ``init_model`` / ``tools/test.py``
load without this project's training components.

What is kept: the student segmentor h o g (a DiDA DiffusionEncoder is replaced by its
inner g). What is dropped: DiDA's g', time MLP, FiLMs and h', the EMA teacher, the
ImageNet feature-distance model, every plug-in. The exported network has exactly the
baseline's parameter names and count; ``--verify`` checks that, and that its
predictions equal the training model's clean-path predictions on a random image.

``--onnx`` also writes ``<name>.onnx``: the deployed network with its input
normalisation, for images of any height and width (ONNX opset 18, through torch's
``torch.export``-based exporter), checked against onnxruntime on a few images; the
parameter counts and file sizes before and after stripping are printed. It needs the
optional packages onnx, onnxscript and onnxruntime (requirements.txt).

Usage::

    python tools/export.py CONFIG CHECKPOINT [--out-dir DIR] [--name NAME] [--verify]
        [--onnx] [--opset 18]
"""
import argparse
import logging
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Sequence, Tuple

import torch
from mmengine.config import Config, ConfigDict  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from torch import Tensor, nn

import mmseg_dida  # noqa: F401  (compat + registration)
from mmseg_dida.apis.launch import UserError, load_config  # noqa: E402
from mmseg_dida.deploy import (  # noqa: E402
    deploy_config,
    deploy_segmentor,
    save_deployable,
    training_segmentor,
)
from mmseg_dida.deploy.model_loading import (  # noqa: E402
    build_model_from_checkpoint,
    strip_pretrained_init,
)
from mmseg_dida.deploy.state_mapping import (  # noqa: E402
    CheckpointMismatchError,
    CheckpointReadError,
)
from mmseg_dida.utils.console import silence_third_party_deprecations  # noqa: E402


def build_training_model(cfg: Config, checkpoint: str, strict: bool = True):
    model, report = build_model_from_checkpoint(cfg, checkpoint, strict=strict)
    if report.meta:
        model.dataset_meta = report.meta.get('dataset_meta')
    return model.eval()


@torch.no_grad()
def verify(model, cfg: Config, ckpt_path: str, size=(64, 128)) -> dict:
    """Build the plain segmentor from the exported config, load it strictly, and
    compare parameter names/count and clean-path logits with the training model."""
    plain_cfg = deploy_config(cfg)
    model_cfg = ConfigDict(plain_cfg.model)
    strip_pretrained_init(model_cfg)
    plain = MODELS.build(model_cfg)
    state = torch.load(ckpt_path, map_location='cpu')['state_dict']
    plain.load_state_dict(state, strict=True)
    plain.eval()
    student = training_segmentor(model)
    baseline = MODELS.build(model_cfg)  # the baseline architecture, fresh
    names = [n for n, _ in plain.named_parameters()]
    same_names = names == [n for n, _ in baseline.named_parameters()]
    count = sum(p.numel() for p in plain.parameters())
    torch.manual_seed(0)
    x = torch.randn(1, 3, *size)
    metas = [dict(img_shape=size, ori_shape=size, pad_shape=size)]
    diff = (plain.encode_decode(x, metas) - student.encode_decode(x, metas)).abs().max()
    return dict(same_names_as_baseline=same_names, num_params=count,
                baseline_num_params=sum(p.numel() for p in baseline.parameters()),
                max_abs_logit_diff=diff.item())


# ------------------------------------------------------------------------ ONNX
#: The ONNX opset the exported graph targets (torch's exporter's default for
#: torch >= 2.9; onnxruntime >= 1.14 runs it).
ONNX_OPSET = 18
#: The exporter traces this input shape; height and width stay symbolic.
ONNX_EXAMPLE_SIZE = (64, 96)
#: Images of these sizes (h, w) are compared with onnxruntime (one not a multiple
#: of 32).
ONNX_PARITY_SIZES = ((64, 96), (128, 256), (100, 150))


class OnnxSegmentor(nn.Module):
    """What the ONNX graph computes: the deployed segmentor's whole-image inference
    with its input normalisation folded in.

    Input ``image``: (N, 3, H, W) float32 in the channel order and value range the
    config's pipeline loads (BGR 0..255 from OpenCV for mmseg's ``LoadImageFrom*``).
    Outputs ``logits`` (N, C, H, W) and ``labels`` (N, H, W) int64 (argmax).
    Sliding-window inference (``test_cfg.mode='slide'``) is not part of the graph:
    a caller tiles large images itself.
    """

    def __init__(self, segmentor: nn.Module):
        super().__init__()
        self.segmentor = segmentor
        pre = segmentor.data_preprocessor
        self.bgr_to_rgb = bool(getattr(pre, 'channel_conversion', False))
        mean = getattr(pre, 'mean', None)
        std = getattr(pre, 'std', None)
        if mean is None:
            mean, std = torch.zeros(3, 1, 1), torch.ones(3, 1, 1)
        self.register_buffer('mean', mean.detach().float().reshape(1, 3, 1, 1))
        self.register_buffer('std', std.detach().float().reshape(1, 3, 1, 1))

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor]:
        x = image.flip(1) if self.bgr_to_rgb else image
        x = (x - self.mean) / self.std
        size = tuple(x.shape[-2:])
        # One meta for the batch (mmseg's heads resize to metas[0]); a list of N
        # would fix the batch size in the graph.
        logits = self.segmentor.encode_decode(
            x, [dict(img_shape=size, ori_shape=size, pad_shape=size)])
        return logits, logits.argmax(dim=1)


def require_onnx() -> None:
    """Exit with one line when the optional ONNX packages are missing."""
    missing = []
    for name in ('onnx', 'onnxscript', 'onnxruntime'):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UserError(f"--onnx needs the package(s) {', '.join(missing)}: "
                        'pip install ' + ' '.join(
                            f'{m}=={_pinned(m)}' if _pinned(m) else m for m in missing))


def _pinned(name: str) -> str:
    """The version requirements.txt pins for ``name`` ('' when none)."""
    req = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'requirements.txt')
    if osp.isfile(req):
        for line in open(req):
            pkg, _, version = line.split('#')[0].strip().partition('==')
            if pkg.lower() == name.lower():
                return version
    return ''


def export_onnx(segmentor: nn.Module, path: str, opset: int = ONNX_OPSET) -> str:
    """Write ``segmentor`` (eval mode, CPU) as an ONNX graph with symbolic batch,
    height and width to ``path`` (through a temporary file, so that ``path`` is
    complete or absent). Returns ``path``."""
    import onnx
    wrapper = OnnxSegmentor(segmentor).eval().cpu()
    h, w = ONNX_EXAMPLE_SIZE
    example = torch.rand(2, 3, h, w) * 255  # batch 2: batch 1 would be specialised
    dims = {0: torch.export.Dim('batch', max=1024),
            2: torch.export.Dim('height', min=32, max=8192),
            3: torch.export.Dim('width', min=32, max=8192)}
    tmp = f'{path}.tmp{os.getpid()}.onnx'
    # onnxscript's optimiser logs a warning per Split it does not fold: noise here
    quiet = logging.getLogger('onnxscript')
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                wrapper, (example, ), dynamo=True, opset_version=opset,
                input_names=['image'], output_names=['logits', 'labels'],
                dynamic_shapes={'image': dims}, verbose=False)
        program.save(tmp, external_data=False)
        model = onnx.load(tmp)
        onnx.checker.check_model(model)
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        quiet.setLevel(level)
        if osp.exists(tmp):
            os.remove(tmp)
    return path


def onnx_opset(path: str) -> int:
    import onnx
    model = onnx.load(path, load_external_data=False)
    return max(o.version for o in model.opset_import if o.domain in ('', 'ai.onnx'))


@torch.no_grad()
def onnx_parity(segmentor: nn.Module, path: str,
                sizes: Sequence[Tuple[int, int]] = ONNX_PARITY_SIZES,
                batch: int = 1, seed: int = 0) -> Dict[str, float]:
    """Run the ONNX graph in onnxruntime (CPU) and ``segmentor`` in PyTorch on random
    images of each size; return the max abs logit difference over all of them and
    the fraction of pixels whose argmax label agrees."""
    import numpy as np
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    wrapper = OnnxSegmentor(segmentor).eval().cpu()
    gen = torch.Generator().manual_seed(seed)
    diff, agree, total = 0.0, 0, 0
    for h, w in sizes:
        image = torch.randint(0, 256, (batch, 3, h, w), generator=gen).float()
        ref_logits, ref_labels = wrapper(image)
        logits, labels = session.run(['logits', 'labels'], {'image': image.numpy()})
        if logits.shape != tuple(ref_logits.shape):
            raise RuntimeError(f'ONNX logits have shape {logits.shape} for an image of '
                               f'{h}x{w}, PyTorch {tuple(ref_logits.shape)}')
        diff = max(diff, float(np.abs(logits - ref_logits.numpy()).max()))
        agree += int((labels == ref_labels.numpy()).sum())
        total += labels.size
    return dict(max_abs_logit_diff=diff, label_agreement=agree / total)


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def size_report(rows: List[Tuple[str, int, str]]) -> str:
    """A small table: (what, parameter count, file) -> count and file size in MB."""
    lines = [f"{'':28s} {'parameters':>12s} {'file MB':>9s}  file"]
    for what, count, path in rows:
        size = f'{osp.getsize(path) / 2**20:9.2f}' if path and osp.isfile(path) else (
            f"{'-':>9s}")
        lines.append(f'{what:28s} {count:12,d} {size}  {path or "-"}')
    return '\n'.join(lines)


#: the least share of pixels on which onnxruntime's labels must equal PyTorch's (a
#: tie between two logits may round either way; anything more is a wrong graph)
ONNX_MIN_LABEL_AGREEMENT = 0.999


def onnx_stage(model: nn.Module, out_dir: str, name: str, opset: int
               ) -> Tuple[Dict[str, float], str]:
    """--onnx: export the deployed network and check it against onnxruntime;
    returns the parity numbers and the file's path."""
    segmentor = deploy_segmentor(model).eval().cpu()
    path = osp.join(out_dir, f'{name}.onnx')
    with _stage('exporting ONNX'):
        export_onnx(segmentor, path, opset)
    print(f'onnx: {path} (opset {onnx_opset(path)}, dynamic batch/height/width; '
          'input: image (N, 3, H, W) float32, the raw image as the test pipeline '
          "loads it (mmseg's LoadImageFromFile: BGR, values 0..255), normalised "
          'inside the graph; outputs: logits, labels)')
    with _stage('checking ONNX against onnxruntime'):
        parity = onnx_parity(segmentor, path)
    sizes = ', '.join(f'{h}x{w}' for h, w in ONNX_PARITY_SIZES)
    print(f"onnxruntime parity on {len(ONNX_PARITY_SIZES)} random images ({sizes}): "
          f"max_abs_logit_diff={parity['max_abs_logit_diff']:.3g} "
          f"label_agreement={parity['label_agreement']:.6f}")
    return parity, path


class _stage:
    """Prints '<what> ...' and, when done, the elapsed time (the export's progress
    on the console: each stage takes seconds to minutes)."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        self.start = time.time()
        print(f'{self.what} ...', flush=True)

    def __exit__(self, *exc):
        if exc[0] is None:
            print(f'{self.what}: done in {time.time() - self.start:.1f} s', flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description='Export a deployable mmseg segmentor.')
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--out-dir', default=None,
                   help='default: the checkpoint folder')
    p.add_argument('--name', default='deploy')
    p.add_argument('--verify', action='store_true')
    p.add_argument('--onnx', action='store_true',
                   help='also write <name>.onnx and check it with onnxruntime')
    p.add_argument('--opset', type=int, default=ONNX_OPSET,
                   help=f'ONNX opset (default {ONNX_OPSET})')
    p.add_argument('--non-strict', action='store_true',
                   help='export although the checkpoint does not fill every tensor '
                   'of the model')
    args = p.parse_args(argv)
    silence_third_party_deprecations()
    try:
        if args.onnx:
            require_onnx()
        cfg = load_config(args.config)
        with _stage('loading the training checkpoint'):
            model = build_training_model(cfg, args.checkpoint,
                                         strict=not args.non_strict)
    except (UserError, CheckpointReadError, CheckpointMismatchError) as e:
        # a mistake in what was given: one line, exit 2 as tools/test.py and infer.py
        print(f'error: {args.config}: {e}', file=sys.stderr)
        return 2
    out_dir = args.out_dir or osp.dirname(osp.abspath(args.checkpoint))
    os.makedirs(out_dir, exist_ok=True)
    ckpt_path, cfg_path = save_deployable(model, cfg, out_dir, args.name)
    print(f'checkpoint: {ckpt_path}\nconfig: {cfg_path}')
    if args.verify:
        report = verify(model, cfg, ckpt_path)
        print(' '.join(f'{k}={v}' for k, v in report.items()))
        ok = (report['same_names_as_baseline'] and report['max_abs_logit_diff'] == 0
              and report['num_params'] == report['baseline_num_params'])
        if not ok:  # nothing that failed its check stays behind
            for path in (ckpt_path, cfg_path):
                if path and osp.exists(path):
                    os.remove(path)
            print('export verification FAILED (the exported files were removed)',
                  file=sys.stderr)
            return 1
        print('export verification passed')
    deployed = num_params(deploy_segmentor(model))
    rows = [('training model (all parts)', num_params(model), args.checkpoint),
            ('deployed segmentor', deployed, ckpt_path)]
    if args.onnx:
        parity, onnx_path = onnx_stage(model, out_dir, args.name, args.opset)
        if parity['label_agreement'] < ONNX_MIN_LABEL_AGREEMENT:
            os.remove(onnx_path)
            print(f"ONNX check FAILED: label agreement {parity['label_agreement']:.6f} "
                  f'< {ONNX_MIN_LABEL_AGREEMENT} (the ONNX file was removed)',
                  file=sys.stderr)
            return 1
        rows.append(('deployed segmentor, ONNX', deployed, onnx_path))
    print(size_report(rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
