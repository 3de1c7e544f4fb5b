# Variant (issue 28, reading 3): h''s prediction layer starts at zero, so L_R sends no
# gradient burst into g and g' at the start (at step 0 its gradient into g was 9-14x
# L_S's with the default init).
_base_ = ['../daformer_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'recon_init': 'zero'}])
