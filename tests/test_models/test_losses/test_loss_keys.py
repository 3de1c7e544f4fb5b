"""One rule for what a loss is: a key containing 'loss', as mmengine's parse_losses."""
import torch
from mmengine.model import BaseModel

from mmseg_dida.models.losses.loss_keys import is_loss_key
from mmseg_dida.models.segmentors.uda_segmentor import sum_losses


def test_loss_keys_are_those_mmengine_back_propagates():
    losses = {'decode.loss_ce': torch.tensor(1.0), 'decode.acc_seg': torch.tensor(90.0),
              'aux_loss_a': torch.tensor(0.25), 'loss_dic_src': torch.tensor(2.0),
              'pseudo_weight': torch.tensor(0.5), 'dida_t': torch.tensor(300.0)}
    assert [k for k in losses if is_loss_key(k)] == ['decode.loss_ce', 'aux_loss_a',
                                                     'loss_dic_src']
    total, _ = BaseModel.parse_losses(None, losses)  # mmengine, unbound
    assert total.item() == 3.25
    assert sum_losses(losses).item() == 3.25
