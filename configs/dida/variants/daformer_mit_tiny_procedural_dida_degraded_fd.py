# Variant: a feature distance on the degraded source pass (the authors' earlier code
# pulls degraded features to the ImageNet model's features of the clean image; this
# random-init benchmark has no ImageNet model, so the reference is the student's own
# features of the clean image, without gradient).
_base_ = ['../daformer_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'degraded_fd_weight': 0.005,
                       'degraded_fd_reference': 'clean'}])
