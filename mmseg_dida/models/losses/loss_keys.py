"""Which entries of a loss dict are losses.

An entry whose key contains ``'loss'`` is a loss: it is back-propagated and counted in
the step's total ``loss``. Every other entry (accuracies, the pseudo-label confidence,
DiDA's sampled t) is only logged. This is mmengine's rule
(``BaseModel.parse_losses``), written once here for the UDA step
(:class:`~mmseg_dida.models.uda.DACS`), the student contract
(:func:`~mmseg_dida.models.segmentors.uda_segmentor.sum_losses`) and the plug-ins.
"""

__all__ = ['is_loss_key']


def is_loss_key(key: str) -> bool:
    """Whether the loss-dict entry ``key`` is back-propagated (it contains 'loss')."""
    return 'loss' in key
