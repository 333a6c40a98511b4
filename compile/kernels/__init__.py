"""Fused TIR kernels: fusion and MAC counting, schedule rules, tuning records, code generation."""
