# Variant: the authors' earlier code's segmentation path for degraded images: h's level
# embeddings, a time FiLM per level, a fusion layer of its own (h's classifier shared).
_base_ = ['../daformer_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'seg_path': 'time_conditioned'}])
