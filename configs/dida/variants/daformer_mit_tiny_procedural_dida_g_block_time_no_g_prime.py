# Variant (issue 28, reading 1): g conditioned on t inside its Mix-FFN blocks as the
# only time conditioning, no g' (the authors' earlier code's form); h' and L_R kept.
_base_ = ['../daformer_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'mode': 'none', 'g_block_time': True}])
