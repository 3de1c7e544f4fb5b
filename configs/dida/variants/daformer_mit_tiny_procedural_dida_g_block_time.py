# Variant (issue 28, reading 1): the full method with g conditioned on t as well, the
# paper's ablation ticking "g_time" in its full row: a time FiLM inside every Mix-FFN
# of g after its depthwise convolution (the authors' earlier code), on degraded passes
# only; g' and its FiLM as in the default.
_base_ = ['../daformer_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'g_block_time': True}])
