# The DeepLabV2 used for the CNN results of DAFormer/HRDA/MIC ("dlv2red" in their
# experiments.py): ASPP with dilations 6 and 12 only, following AdaptSegNet's code
# (a return inside its loop over the dilations), which DACS/ProDA and others copied.
_base_ = ['./deeplabv2_r101.py']
model = dict(decode_head=dict(dilations=(6, 12)))
