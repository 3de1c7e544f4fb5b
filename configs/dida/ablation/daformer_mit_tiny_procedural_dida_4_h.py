# Ablation row "+ h'" on the procedural benchmark: a separate reconstruction head h',
# time FiLM on g, no g' (paper: 69.9). The full method (+ g', paper 70.3) is
# ../daformer_mit_tiny_procedural_dida.py.
_base_ = ['../daformer_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'mode': 'g_time', 'recon': 'full'}])
