from .uda_segmentor import EncoderDecoderUDA, TrainForward, UDASegmentor, as_uda_segmentor  # noqa: F401
