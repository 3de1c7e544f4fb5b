
from .degradation import Degradation  # noqa: F401
from .feature_distance import downscale_label_ratio, masked_feat_dist  # noqa: F401
from .mixing import class_mix, get_class_masks  # noqa: F401
from .norm_buffers import norm_buffers, preserved_norm_buffers  # noqa: F401
from .strong_transforms import StrongAugmentation  # noqa: F401
from .weight_loading import CheckedPretrained, load_pretrained_checked  # noqa: F401
