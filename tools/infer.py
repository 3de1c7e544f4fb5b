"""Segment images, a folder or a video with a trained or exported model.

    python tools/infer.py CONFIG CHECKPOINT INPUT --out DIR [--device DEV]
        [--batch-size N] [--opacity A] [--labels] [--non-strict]
        [--cfg-options k=v ...]

CONFIG/CHECKPOINT: either an exported plain segmentor (``deploy_config.py`` +
``deploy.pth`` from tools/export.py or DiDAHook) or a training run (a UDA config such
as DAFormer(+DiDA) and its ``iter_*.pth``): then the student is used, with DiDA's
parts stripped, exactly as tools/export.py deploys it.

INPUT: an image, a folder (its images, sub-folders included) or a video file.

Writes, for images, ``DIR/masks/<name>.png`` (the prediction in the palette of the
config's test dataset, Cityscapes' when it names none), ``DIR/overlays/<name>.png``
(the mask blended onto the image) and with ``--labels`` ``DIR/labels/<name>.png``
(class ids, 255 = none); for a video, ``DIR/<stem>_mask.mp4`` and
``DIR/<stem>_overlay.mp4`` at the input's frame rate. Every file is written to a
temporary name and renamed when complete. A progress bar (images or frames) runs on
the console.
"""
import argparse
import copy
import os
import os.path as osp
import sys
from typing import Iterator, List, Optional, Tuple

import cv2
import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.dataset import Compose
from torch import nn
from tqdm import tqdm

import mmseg_dida  # noqa: F401  (compat + registration)
from mmseg_dida.apis.launch import UserError, load_config
from mmseg_dida.deploy import deploy_config, deploy_segmentor
from mmseg_dida.deploy.model_loading import build_model_from_checkpoint
from mmseg_dida.deploy.state_mapping import CheckpointMismatchError, CheckpointReadError
from mmseg_dida.utils.console import silence_third_party_deprecations
from mmseg_dida.utils.visualization import dataset_palette, label_palette

IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
VIDEO_EXTS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v')


class InferError(Exception):
    """A mistake in what the user gave; printed as one line."""


# ------------------------------------------------------------------ the model
def load_segmentor(config: str, checkpoint: str, device: str,
                   cfg_options: Optional[dict] = None,
                   strict: bool = True) -> Tuple[nn.Module, Config]:
    """The plain segmentor to run and its plain config, from an exported model or a
    training run (UDA config: the deployed student, :func:`deploy_segmentor`).

    Weights are loaded by the project's strict loader
    (:func:`mmseg_dida.deploy.model_loading.load_model_weights`): a checkpoint that does
    not fill every tensor of the model is refused with one line unless
    ``strict=False``; a UDA training checkpoint on its plain (deploy) config and a
    deploy checkpoint on its training config are mapped.
    """
    try:  # the same reading as train/test: a missing _base_ or bad option is a line
        cfg = load_config(config, cfg_options)
    except UserError as e:
        raise InferError(f'{config}: {e}') from None
    try:
        model, report = build_model_from_checkpoint(cfg, checkpoint, strict=strict)
    except (CheckpointReadError, CheckpointMismatchError) as e:
        raise InferError(f'{config}: {e}') from None
    segmentor = deploy_segmentor(model)
    meta = report.meta if isinstance(report.meta, dict) else {}
    segmentor.dataset_meta = meta.get('dataset_meta')
    plain_cfg = deploy_config(cfg) if 'segmentor' in cfg.model else cfg
    return segmentor.to(device).eval(), plain_cfg


def build_pipeline(cfg: Config) -> Compose:
    """The config's test pipeline for images given as arrays (labels not loaded)."""
    steps = copy.deepcopy(cfg.get('test_pipeline', None)) or [
        dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]
    steps = [s for s in steps if s.get('type') != 'LoadAnnotations']
    if steps[0].get('type') == 'LoadImageFromFile':
        steps[0] = dict(type='LoadImageFromNDArray')
    return Compose(steps)


@torch.no_grad()
def predict(segmentor: nn.Module, pipeline: Compose,
            images: List[np.ndarray]) -> List[np.ndarray]:
    """Class ids (H, W) uint8 of each BGR image (one batch; equal sizes)."""
    data = dict(inputs=[], data_samples=[])
    for img in images:
        item = pipeline(dict(img=img))
        data['inputs'].append(item['inputs'])
        data['data_samples'].append(item['data_samples'])
    results = segmentor.test_step(data)
    return [r.pred_sem_seg.data[0].cpu().numpy().astype(np.uint8) for r in results]


# ------------------------------------------------------------------- pictures
def colourise(labels: np.ndarray, palette: Optional[np.ndarray] = None) -> np.ndarray:
    """Class ids (H, W) -> BGR colour image (H, W, 3) for OpenCV, in ``palette``
    ((256, 3) RGB; default the Cityscapes palette of
    :func:`mmseg_dida.utils.visualization.label_palette`)."""
    return (label_palette() if palette is None else palette)[labels][..., ::-1].copy()


def overlay(image: np.ndarray, mask: np.ndarray, opacity: float) -> np.ndarray:
    return cv2.addWeighted(image, 1.0 - opacity, mask, opacity, 0.0)


def _write_image(path: str, image: np.ndarray) -> None:
    """Complete or absent: a temporary file in the same folder, fsync, rename."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    root, ext = osp.splitext(path)
    tmp = f'{root}.tmp{os.getpid()}{ext}'
    try:
        if not cv2.imwrite(tmp, image):
            raise OSError(f'could not write {path}')
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


# ----------------------------------------------------------------------- inputs
def list_images(path: str) -> List[str]:
    """The images of ``path`` (a file or a folder, recursively), sorted."""
    if osp.isfile(path):
        return [path]
    found = []
    for root, _, files in os.walk(path):
        found += [osp.join(root, f) for f in files if f.lower().endswith(IMAGE_EXTS)]
    return sorted(found)


def batches(items: Iterator[Tuple[str, np.ndarray]], size: int
            ) -> Iterator[List[Tuple[str, np.ndarray]]]:
    """Consecutive items of equal image size, at most ``size`` per batch."""
    batch: List[Tuple[str, np.ndarray]] = []
    for item in items:
        if batch and (len(batch) == size or item[1].shape != batch[0][1].shape):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def run_images(segmentor, pipeline, paths: List[str], root: str, out: str,
               batch_size: int, opacity: float, save_labels: bool,
               palette: Optional[np.ndarray] = None) -> int:

    def read():
        for p in paths:
            img = cv2.imread(p, cv2.IMREAD_COLOR)
            if img is None:
                raise InferError(f"'{p}' is not a readable image")
            yield p, img

    bar = tqdm(total=len(paths), unit='img', desc='infer', dynamic_ncols=True)
    for batch in batches(read(), batch_size):
        labels = predict(segmentor, pipeline, [img for _, img in batch])
        for (p, img), lab in zip(batch, labels):
            rel = osp.splitext(osp.relpath(p, root) if root else osp.basename(p))[0]
            mask = colourise(lab, palette)
            _write_image(osp.join(out, 'masks', rel + '.png'), mask)
            _write_image(osp.join(out, 'overlays', rel + '.png'),
                         overlay(img, mask, opacity))
            if save_labels:
                _write_image(osp.join(out, 'labels', rel + '.png'), lab)
        bar.update(len(batch))
    bar.close()
    return len(paths)


def run_video(segmentor, pipeline, path: str, out: str, batch_size: int,
              opacity: float, palette: Optional[np.ndarray] = None) -> int:
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise InferError(f"'{path}' is not a readable video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    stem = osp.splitext(osp.basename(path))[0]
    os.makedirs(out, exist_ok=True)
    final = {k: osp.join(out, f'{stem}_{k}.mp4') for k in ('mask', 'overlay')}
    tmp = {k: osp.join(out, f'{stem}_{k}.tmp{os.getpid()}.mp4') for k in final}
    writers = {}

    def frames():
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield str(i), frame
            i += 1

    count = 0
    bar = tqdm(total=total, unit='frame', desc='infer', dynamic_ncols=True)
    try:
        for batch in batches(frames(), batch_size):
            labels = predict(segmentor, pipeline, [f for _, f in batch])
            for (_, frame), lab in zip(batch, labels):
                if not writers:
                    h, w = frame.shape[:2]
                    fourcc = cv2.VideoWriter_fourcc(*'mp4v')
                    writers = {k: cv2.VideoWriter(tmp[k], fourcc, fps, (w, h))
                               for k in tmp}
                    if not all(wr.isOpened() for wr in writers.values()):
                        raise InferError(f'OpenCV cannot write mp4 video to {out}')
                mask = colourise(lab, palette)
                writers['mask'].write(mask)
                writers['overlay'].write(overlay(frame, mask, opacity))
                count += 1
            bar.update(len(batch))
        bar.close()
        for wr in writers.values():
            wr.release()
        if not count:
            raise InferError(f"'{path}' has no frames")
        for k in final:
            with open(tmp[k], 'rb+') as f:
                os.fsync(f.fileno())
            os.replace(tmp[k], final[k])
    finally:
        cap.release()
        for wr in writers.values():
            wr.release()
        for p in tmp.values():
            if osp.exists(p):
                os.remove(p)
    return count


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Segment an image, a folder of images or a video.')
    p.add_argument('config', help='plain (deploy_config.py) or training config')
    p.add_argument('checkpoint', help='deploy.pth or a training checkpoint')
    p.add_argument('input', help='an image, a folder or a video file')
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--device', default='cuda:0' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--batch-size', type=int, default=1)
    p.add_argument('--opacity', type=float, default=0.5,
                   help='weight of the mask in the overlay (0..1)')
    p.add_argument('--labels', action='store_true',
                   help='also write the class ids as PNG (DIR/labels)')
    p.add_argument('--non-strict', action='store_true',
                   help='run although the checkpoint does not fill every tensor of '
                   'the model')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    silence_third_party_deprecations()
    try:
        if args.batch_size < 1:
            raise InferError(f'--batch-size must be >= 1, got {args.batch_size}')
        if not 0.0 <= args.opacity <= 1.0:
            raise InferError(f'--opacity must be in [0, 1], got {args.opacity}')
        src = args.input
        is_video = osp.isfile(src) and src.lower().endswith(VIDEO_EXTS)
        if not osp.exists(src):
            raise InferError(f"input '{src}' does not exist")
        if osp.isfile(src) and not is_video and not src.lower().endswith(IMAGE_EXTS):
            raise InferError(f"input '{src}' is neither an image "
                             f'({", ".join(IMAGE_EXTS)}) nor a video '
                             f'({", ".join(VIDEO_EXTS)})')
        paths = [] if is_video else list_images(src)
        if not is_video and not paths:
            raise InferError(f"no images ({', '.join(IMAGE_EXTS)}) in '{src}'")
        segmentor, cfg = load_segmentor(args.config, args.checkpoint, args.device,
                                        args.cfg_options,
                                        strict=not args.non_strict)
        pipeline = build_pipeline(cfg)
        palette = dataset_palette(cfg)
        if is_video:
            n = run_video(segmentor, pipeline, src, args.out, args.batch_size,
                          args.opacity, palette)
            print(f'{n} frames segmented: {args.out}')
        else:
            root = src if osp.isdir(src) else ''
            n = run_images(segmentor, pipeline, paths, root, args.out,
                           args.batch_size, args.opacity, args.labels, palette)
            print(f'{n} images segmented: {args.out}/masks, {args.out}/overlays')
    except InferError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
