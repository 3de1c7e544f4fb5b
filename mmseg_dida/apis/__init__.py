"""What the entry points share (tools/train.py, test.py, export.py and the benchmark
and analysis tools), kept out of the runtime packages: config loading and the
one-line errors (:mod:`.launch`, :mod:`.config_errors`), running the procedural
benchmark's methods (:mod:`.benchmark`), tables (:mod:`.report`) and FLOP counts
(:mod:`.flops`). Nothing under ``mmseg_dida.models``, ``engine``, ``datasets`` or
``deploy`` imports it."""
