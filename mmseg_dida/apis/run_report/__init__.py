"""Reading finished training runs and reporting them (tools/multi_seed.py).

* :mod:`.logs` -- a run's logged scalars (``vis_data/scalars.json``), its final
  validation metrics and per-class IoU (logged keys ``IoU.<class>``, or the per-class
  table of the log text);
* :mod:`.aggregate` -- mean +- std over seeds, Markdown and CSV tables;
* :mod:`.curves` -- training curves (loss terms, pseudo-label confidence, mIoU) as PNG.

Shared by the tools (mmseg_dida.apis): not used by the runtime packages.
"""
