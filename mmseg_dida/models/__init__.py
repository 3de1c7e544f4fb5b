from . import backbones, decode_heads, losses, segmentors, uda, utils  # noqa: F401
