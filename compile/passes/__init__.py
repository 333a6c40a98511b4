"""Relax rewrites, one a file, applied in the order `compile.pipeline.RELAX_REWRITES` lists."""
