from .hrda_encoder_decoder import HRDAEncoderDecoder, random_crop_box, slide_boxes  # noqa: F401
from .uda_segmentor import EncoderDecoderUDA, TrainForward, UDASegmentor, as_uda_segmentor  # noqa: F401
