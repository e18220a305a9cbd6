"""Ready-made problems, importable as ``ebm_ppl.models.<name>``."""
