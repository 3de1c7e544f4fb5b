
from .daformer_head import DAFormerHead  # noqa: F401
from .dlv2_head import DLV2Head  # noqa: F401
from .hrda_head import HRDAHead, MultiResFeatures, fuse_scales  # noqa: F401
from .recon_head import ReconHead  # noqa: F401
from .time_seg_path import TimeConditionedSegPath  # noqa: F401
from .weighted_loss import SegWeightLossMixin, WeightedSegformerHead  # noqa: F401
