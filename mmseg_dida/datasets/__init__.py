from . import transforms  # noqa: F401
from .acdc import ACDCDataset  # noqa: F401
from .custom import CustomSegDataset  # noqa: F401
from .dark_zurich import CheckedDarkZurichDataset  # noqa: F401
from .gta import GTADataset  # noqa: F401
from .synthia import SynthiaDataset  # noqa: F401
from .uda_dataset import UDADataset  # noqa: F401
